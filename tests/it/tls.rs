//! Connections as libpq makes them, against servers with TLS as they ship: a self-signed
//! certificate (Debian's default), a CA-signed one with the host name only in its CN,
//! client certificates (`hostssl ... cert`); and service files and several hosts.
//! Certificates are made with `openssl` here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cluster::{self, Cluster, TSDBADMIN, TSDBADMIN_PASSWORD, percent_encode};
use crate::{Run, scratch_dir};

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn private(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// Hands `files` of `dir` to the `postgres` OS user (the server reads them).
fn give_to_postgres(dir: &Path, files: &[&str]) {
    for f in files {
        let chown = Command::new("chown")
            .arg("postgres")
            .arg(dir.join(f))
            .status()
            .unwrap();
        assert!(chown.success());
    }
}

/// A directory the `postgres` OS user can read.
fn cert_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    private(dir.path(), 0o755);
    dir
}

/// A self-signed server certificate like Debian's snakeoil one (`openssl req -x509`
/// marks it as a CA), for 127.0.0.1: `<name>.crt`, `<name>.key`.
fn self_signed(dir: &Path, name: &str) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ],
        dir,
    );
}

/// A certificate authority: `ca.crt`, `ca.key`.
fn authority(dir: &Path) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=tsxfer test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
        dir,
    );
}

/// `<name>.crt` for `cn`, signed by the authority, with `ext` (extension lines);
/// its key `<name>.key`.
fn signed(dir: &Path, name: &str, cn: &str, ext: &str) {
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
        dir,
    );
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ],
        dir,
    );
}

/// A cluster serving TLS with `cert`/`key` of `dir`, where TCP connections must use TLS
/// (`hba` is the TCP line's method and options).
fn tls_cluster(
    name: &str,
    dir: &Path,
    cert: &str,
    key: &str,
    extra: &[&str],
    hba: &str,
) -> Cluster {
    give_to_postgres(dir, &[cert, key]);
    private(&dir.join(key), 0o600);
    let mut settings = vec![
        "ssl = on".to_string(),
        format!("ssl_cert_file = '{}'", dir.join(cert).display()),
        format!("ssl_key_file = '{}'", dir.join(key).display()),
    ];
    settings.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = settings.iter().map(String::as_str).collect();
    let c = Cluster::start_with(name, &refs);
    std::fs::write(
        c.data_dir.join("pg_hba.conf"),
        format!(
            "local all postgres trust\n\
             local all all scram-sha-256\n\
             hostssl all all 127.0.0.1/32 {hba}\n"
        ),
    )
    .unwrap();
    c.psql("postgres", "SELECT pg_catalog.pg_reload_conf()");
    c
}

/// Runs `tsxfer` with `args` in a clean environment: no PG* variables, `HOME` set to
/// `home`, temporary files under `tmp`, and `env` added.
fn tsxfer_in(args: &[&str], home: &Path, tmp: &Path, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsxfer"));
    cmd.args(args).current_dir(scratch_dir());
    for (k, _) in std::env::vars() {
        if k.starts_with("PG") || k == "SOURCE" || k == "TARGET" {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", home).env("TMPDIR", tmp);
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("running tsxfer");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A person's home: empty, or with `~/.postgresql/<name>` files copied from `dir`.
fn home_with(dir: &Path, files: &[(&str, &str)]) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    if !files.is_empty() {
        let pg = home.path().join(".postgresql");
        std::fs::create_dir(&pg).unwrap();
        for (from, to) in files {
            std::fs::copy(dir.join(from), pg.join(to)).unwrap();
            private(&pg.join(to), 0o600);
        }
    }
    home
}

fn warnings_about_verification(run: &Run) -> usize {
    run.stderr.matches("not verified").count()
}

fn uri(host: &str, port: u16, db: &str, query: &str) -> String {
    format!(
        "postgresql://{}:{}@{host}:{port}/{db}?{query}",
        percent_encode(TSDBADMIN),
        percent_encode(TSDBADMIN_PASSWORD)
    )
}

#[test]
fn a_self_signed_server_certificate_as_libpq_takes_it() {
    let (src, _) = cluster::clusters();
    let certs = cert_dir();
    self_signed(certs.path(), "server");
    self_signed(certs.path(), "other");
    let tgt = tls_cluster(
        "tls-self-signed",
        certs.path(),
        "server.crt",
        "server.key",
        &[],
        "scram-sha-256",
    );
    src.create_database("tls_ss_src");
    src.psql(
        "tls_ss_src",
        "CREATE TABLE t (id int PRIMARY KEY, v text); \
         INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 1000) g",
    );
    tgt.create_cloud_like_database("tls_ss_tgt");
    let source = src.superuser_conninfo("tls_ss_src");
    let tmp = tempfile::tempdir().unwrap();
    let empty_home = home_with(certs.path(), &[]);
    let crt = certs.path().join("server.crt");
    let other = certs.path().join("other.crt");
    let target = |q: &str| uri("127.0.0.1", tgt.port, "tls_ss_tgt", q);
    let plan = |target: &str, home: &Path| {
        tsxfer_in(
            &["plan", "--source", &source, "--target", target],
            home,
            tmp.path(),
            &[],
        )
    };

    // libpq's default (prefer) and require: encrypted, not verified, and said once.
    for (query, mode) in [("", "prefer"), ("sslmode=require", "require")] {
        let run = plan(&target(query), empty_home.path());
        assert_eq!(run.code, 0, "sslmode={mode}: {run:?}");
        assert_eq!(warnings_about_verification(&run), 1, "{run:?}");
        assert!(run.stderr.contains(&format!("sslmode={mode}")), "{run:?}");
        assert!(run.stderr.contains("sslrootcert"), "{run:?}");
        assert!(!run.all().contains(TSDBADMIN_PASSWORD), "{run:?}");
    }
    // The certificate itself as the root: pinned, verified, host name included.
    for mode in ["verify-full", "verify-ca"] {
        let run = plan(
            &target(&format!("sslmode={mode}&sslrootcert={}", crt.display())),
            empty_home.path(),
        );
        assert_eq!(run.code, 0, "sslmode={mode}: {run:?}");
        assert_eq!(warnings_about_verification(&run), 0, "{run:?}");
    }
    // Verification asked with no root file at all: a usage error naming the remedies.
    let run = plan(&target("sslmode=verify-full"), empty_home.path());
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("root.crt"), "{run:?}");
    assert!(run.stderr.contains("sslrootcert=system"), "{run:?}");
    // Another certificate as the root: refused, and said why and what fixes it.
    let run = plan(
        &target(&format!(
            "sslmode=verify-full&sslrootcert={}",
            other.display()
        )),
        empty_home.path(),
    );
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("self-signed"), "{run:?}");
    assert!(run.stderr.contains("sslmode=require"), "{run:?}");
    // libpq's rule: with ~/.postgresql/root.crt present, require checks the chain.
    let wrong_root = home_with(certs.path(), &[("other.crt", "root.crt")]);
    let run = plan(&target("sslmode=require"), wrong_root.path());
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("root.crt"), "{run:?}");
    // prefer, with that root file: TLS is refused, so libpq (and tsxfer) try without,
    // which this server does not take; both reasons are said.
    let run = plan(&target(""), wrong_root.path());
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("with TLS: TLS refused"), "{run:?}");
    assert!(run.stderr.contains("without:"), "{run:?}");
    let right_root = home_with(certs.path(), &[("server.crt", "root.crt")]);
    let run = plan(&target("sslmode=require"), right_root.path());
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(warnings_about_verification(&run), 0, "{run:?}");
    // allow: tried without TLS first, which this server refuses (hostssl), then with.
    let run = plan(&target("sslmode=allow"), empty_home.path());
    assert_eq!(run.code, 0, "{run:?}");
    let run = plan(&target("sslmode=disable"), empty_home.path());
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("no encryption"), "{run:?}");

    // A whole run, pinned and verified: pg_dump and pg_restore get the same settings and
    // the password through a private password file that is gone afterwards.
    let migrate = tsxfer_in(
        &[
            "--source",
            &source,
            "--target",
            &target(&format!(
                "sslmode=verify-full&sslrootcert={}",
                crt.display()
            )),
            "--quiet",
            "--metrics-addr",
            "off",
        ],
        empty_home.path(),
        tmp.path(),
        &[],
    );
    assert_eq!(migrate.code, 0, "{migrate:?}");
    assert_eq!(
        tgt.psql("tls_ss_tgt", "SELECT count(*) FROM t"),
        "1000",
        "{migrate:?}"
    );
    let left: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("tsxfer-libpq-"))
        .collect();
    assert!(left.is_empty(), "private files left behind: {left:?}");
    assert!(!migrate.all().contains(TSDBADMIN_PASSWORD), "{migrate:?}");
    tgt.stop();
}

#[test]
fn a_ca_signed_certificate_with_cn_only_and_client_certificates() {
    let (src, _) = cluster::clusters();
    let certs = cert_dir();
    let dir = certs.path();
    authority(dir);
    signed(dir, "server", "localhost", "basicConstraints=CA:FALSE\n");
    signed(dir, "client", TSDBADMIN, "basicConstraints=CA:FALSE\n");
    give_to_postgres(dir, &["ca.crt"]);
    let tgt = tls_cluster(
        "tls-client-cert",
        dir,
        "server.crt",
        "server.key",
        &[&format!("ssl_ca_file = '{}'", dir.join("ca.crt").display())],
        "cert",
    );
    src.create_database("tls_cc_src");
    src.psql(
        "tls_cc_src",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 500)",
    );
    tgt.create_cloud_like_database("tls_cc_tgt");
    let source = src.superuser_conninfo("tls_cc_src");
    let tmp = tempfile::tempdir().unwrap();
    let home = home_with(dir, &[]);
    let ca = dir.join("ca.crt");
    let client_key = dir.join("client.key");
    private(&client_key, 0o600);
    let target = |host: &str, extra: &str| {
        format!(
            "host={host} port={} user={TSDBADMIN} dbname=tls_cc_tgt sslrootcert={} {extra}",
            tgt.port,
            ca.display()
        )
    };
    let plan = |target: &str, env: &[(&str, &str)]| {
        tsxfer_in(
            &["plan", "--source", &source, "--target", target],
            home.path(),
            tmp.path(),
            env,
        )
    };
    let with_cert = format!(
        "sslcert={} sslkey={}",
        dir.join("client.crt").display(),
        client_key.display()
    );

    // No client certificate: the server refuses, and the message says what is missing.
    let run = plan(&target("localhost", "sslmode=verify-full"), &[]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("sslcert"), "{run:?}");
    // CN only, no subjectAltName: the name is checked against the CN, as libpq does.
    let run = plan(
        &target("localhost", &format!("sslmode=verify-full {with_cert}")),
        &[],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(warnings_about_verification(&run), 0, "{run:?}");
    // Another name for the same server: verify-full refuses, verify-ca does not look.
    let run = plan(
        &target("127.0.0.1", &format!("sslmode=verify-full {with_cert}")),
        &[],
    );
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("not for host \"127.0.0.1\""), "{run:?}");
    assert!(run.stderr.contains("sslmode=verify-ca"), "{run:?}");
    let run = plan(
        &target("127.0.0.1", &format!("sslmode=verify-ca {with_cert}")),
        &[],
    );
    assert_eq!(run.code, 0, "{run:?}");
    // Signed by an authority that is not trusted: said who signed it, and what to give.
    self_signed(dir, "unrelated");
    let run = plan(
        &target(
            "localhost",
            &format!(
                "sslmode=verify-full {with_cert} sslrootcert={}",
                dir.join("unrelated.crt").display()
            ),
        ),
        &[],
    );
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr.contains("issued by \"CN=tsxfer test CA\""),
        "{run:?}"
    );
    assert!(run.stderr.contains("sslrootcert=FILE"), "{run:?}");
    // sslrootcert=system: the system's roots (here SSL_CERT_FILE names the test's CA),
    // verify-full by default, and no weaker mode.
    let system_roots = [("SSL_CERT_FILE", ca.to_str().unwrap())];
    let run = plan(
        &target("localhost", &format!("{with_cert} sslrootcert=system")),
        &system_roots,
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(warnings_about_verification(&run), 0, "{run:?}");
    let run = plan(
        &target(
            "localhost",
            &format!("{with_cert} sslrootcert=system sslmode=require"),
        ),
        &system_roots,
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("verify-full"), "{run:?}");
    // The PGSSLCERT/PGSSLKEY variables, and libpq's default files under ~/.postgresql.
    let run = plan(
        &target("localhost", "sslmode=verify-full"),
        &[
            ("PGSSLCERT", dir.join("client.crt").to_str().unwrap()),
            ("PGSSLKEY", client_key.to_str().unwrap()),
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let defaults = home_with(
        dir,
        &[
            ("client.crt", "postgresql.crt"),
            ("client.key", "postgresql.key"),
            ("ca.crt", "root.crt"),
        ],
    );
    let run = tsxfer_in(
        &[
            "plan",
            "--source",
            &source,
            "--target",
            &format!(
                "host=localhost port={} user={TSDBADMIN} dbname=tls_cc_tgt sslmode=verify-full",
                tgt.port
            ),
        ],
        defaults.path(),
        tmp.path(),
        &[],
    );
    assert_eq!(run.code, 0, "{run:?}");
    // A key others can read is refused, as libpq refuses it.
    private(&client_key, 0o644);
    let run = plan(
        &target("localhost", &format!("sslmode=verify-full {with_cert}")),
        &[],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("read by others"), "{run:?}");
    private(&client_key, 0o600);
    // An encrypted key: its passphrase is sslpassword; without it, said plainly.
    openssl(
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            "client.key",
            "-out",
            "client.enc.key",
            "-passout",
            "pass:key secret",
        ],
        dir,
    );
    private(&dir.join("client.enc.key"), 0o600);
    let encrypted = format!(
        "sslcert={} sslkey={}",
        dir.join("client.crt").display(),
        dir.join("client.enc.key").display()
    );
    let run = plan(
        &target("localhost", &format!("sslmode=verify-full {encrypted}")),
        &[],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("sslpassword"), "{run:?}");
    // A whole run with the encrypted key: pg_dump and pg_restore connect with it too.
    let migrate = tsxfer_in(
        &[
            "--source",
            &source,
            "--target",
            &target(
                "localhost",
                &format!("sslmode=verify-full {encrypted} sslpassword='key secret'"),
            ),
            "--quiet",
            "--metrics-addr",
            "off",
        ],
        home.path(),
        tmp.path(),
        &[],
    );
    assert_eq!(migrate.code, 0, "{migrate:?}");
    assert_eq!(tgt.psql("tls_cc_tgt", "SELECT count(*) FROM t"), "500");
    assert!(!migrate.all().contains("key secret"), "{migrate:?}");
    tgt.stop();
}

#[test]
fn service_files_and_several_hosts() {
    let (src, tgt) = cluster::clusters();
    src.create_database("conn_svc_src");
    src.psql(
        "conn_svc_src",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 300)",
    );
    tgt.create_cloud_like_database("conn_svc_tgt");
    tgt.create_cloud_like_database("conn_hosts_tgt");
    let source = src.superuser_conninfo("conn_svc_src");
    let tmp = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let service_file = files.path().join("services.conf");
    std::fs::write(
        &service_file,
        format!(
            "# a comment\n[other]\nport=1\n\n[tsxfer_target]\nhost={}\nport={}\nuser={TSDBADMIN}\n\
             dbname=conn_svc_tgt\npassword={}\n",
            tgt.socket_dir.display(),
            tgt.port,
            TSDBADMIN_PASSWORD
        ),
    )
    .unwrap();
    let service_env = [("PGSERVICEFILE", service_file.to_str().unwrap())];
    let plan = |target: &str, env: &[(&str, &str)]| {
        tsxfer_in(
            &["plan", "--source", &source, "--target", target],
            home.path(),
            tmp.path(),
            env,
        )
    };
    let run = plan("service=tsxfer_target", &service_env);
    assert_eq!(run.code, 0, "{run:?}");
    // PGSERVICE names it; the connection string's own keywords win over the file's.
    let run = plan(
        "dbname=no_such_db",
        &[service_env[0], ("PGSERVICE", "tsxfer_target")],
    );
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("no_such_db"), "{run:?}");
    // PGSYSCONFDIR/pg_service.conf when the user's file does not define the service.
    std::fs::copy(&service_file, files.path().join("pg_service.conf")).unwrap();
    let run = plan(
        "service=tsxfer_target",
        &[
            ("PGSERVICEFILE", "/nonexistent/services.conf"),
            ("PGSYSCONFDIR", files.path().to_str().unwrap()),
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let run = plan("service=nowhere", &service_env);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("\"nowhere\""), "{run:?}");
    // The whole run through the service: pg_dump/pg_restore connect the same way.
    let migrate = tsxfer_in(
        &[
            "--source",
            &source,
            "--target",
            "service=tsxfer_target",
            "--quiet",
            "--metrics-addr",
            "off",
        ],
        home.path(),
        tmp.path(),
        &service_env,
    );
    assert_eq!(migrate.code, 0, "{migrate:?}");
    assert_eq!(tgt.psql("conn_svc_tgt", "SELECT count(*) FROM t"), "300");

    // Two hosts, the first of which is down: the second is used, by every part of a run.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let two_hosts = format!(
        "postgresql://{}:{}@127.0.0.1:{down},127.0.0.1:{}/conn_hosts_tgt?connect_timeout=5",
        percent_encode(TSDBADMIN),
        percent_encode(TSDBADMIN_PASSWORD),
        tgt.port
    );
    let migrate = tsxfer_in(
        &[
            "--source",
            &source,
            "--target",
            &two_hosts,
            "--quiet",
            "--metrics-addr",
            "off",
        ],
        home.path(),
        tmp.path(),
        &[],
    );
    assert_eq!(migrate.code, 0, "{migrate:?}");
    assert_eq!(tgt.psql("conn_hosts_tgt", "SELECT count(*) FROM t"), "300");
    // Both down: each host's failure is said.
    let run = plan(
        &format!("host=127.0.0.1,127.0.0.1 port={down},{down} user=u dbname=d"),
        &[],
    );
    assert_ne!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stderr.matches(&format!("port {down}:")).count(),
        2,
        "{run:?}"
    );
    // The target is written to: a read-only pick is refused before anything is tried.
    let run = plan(&format!("{two_hosts}&target_session_attrs=read-only"), &[]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("read-write"), "{run:?}");
    // libpq keywords tsxfer does not support are named, with the reason.
    let run = plan(&format!("{two_hosts}&sslcrl=/x.crl"), &[]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("sslcrl"), "{run:?}");
    let run = plan(&format!("{two_hosts}&gssencmode=require"), &[]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("GSSAPI"), "{run:?}");
    // gssencmode=prefer is taken: the connection is made, and the plan then says that the
    // target (filled above) is not empty, as the run would.
    let run = plan(&format!("{two_hosts}&gssencmode=prefer"), &[]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stdout.contains("is not empty"), "{run:?}");
}

/// Polls `sql` on `c` (as superuser in `db`) until it returns a non-empty value; gives up
/// after `limit` (a hang guard, not a timing requirement).
fn wait_for(c: &Cluster, db: &str, sql: &str, limit: Duration) -> Option<String> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let v = c.psql(db, sql);
        if !v.is_empty() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

fn signal(pid: &str, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// A stopped backend, continued whatever happens to the test: one left stopped can hold a
/// lock every new session of its cluster waits for, and then each later test on that
/// cluster fails too.
struct Stopped(String);

impl Stopped {
    fn new(pid: &str) -> Stopped {
        signal(pid, "-STOP");
        Stopped(pid.to_string())
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0]).status();
    }
}

#[test]
fn a_target_that_goes_silent_mid_copy_is_noticed() {
    let (src, tgt) = cluster::clusters();
    src.create_database("silent_src");
    src.psql(
        "silent_src",
        "CREATE TABLE big (id int PRIMARY KEY, v text); \
         INSERT INTO big SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, 200000) g",
    );
    tgt.create_cloud_like_database("silent_tgt");
    let source = src.superuser_conninfo("silent_src");
    // The stream to the target is a TCP connection whose peer stops reading (its backend
    // is stopped, the kernel still answers): only tcp_user_timeout ends the wait.
    let target = format!(
        "{}?tcp_user_timeout=3000&keepalives_idle=2&keepalives_interval=1&keepalives_count=3",
        tgt.tcp_uri(TSDBADMIN, TSDBADMIN_PASSWORD, "silent_tgt")
    );
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tsxfer"))
        .args([
            "--source",
            &source,
            "--target",
            &target,
            "--jobs",
            "1",
            "--quiet",
            "--metrics-addr",
            "off",
        ])
        .current_dir(scratch_dir())
        .env_remove("PGPASSWORD")
        .stdout(std::fs::File::create(out.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(out.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let copying = "SELECT pid FROM pg_catalog.pg_stat_activity WHERE datname = 'silent_tgt' \
                   AND query LIKE 'COPY%big%FROM STDIN%' AND state = 'active' LIMIT 1";
    let pid = wait_for(tgt, "postgres", copying, Duration::from_secs(300))
        .expect("the COPY into the target never started");
    let stopped = Stopped::new(&pid);
    // Noticed: tsxfer gives the stream up and, on a new connection, records the failure,
    // which waits for the stopped backend's lock on the unit.
    let noticed = wait_for(
        tgt,
        "postgres",
        &format!(
            "SELECT pid FROM pg_catalog.pg_stat_activity WHERE datname = 'silent_tgt' \
             AND pid <> {pid} AND wait_event_type = 'Lock' AND query LIKE 'UPDATE tsxfer.unit%' \
             LIMIT 1"
        ),
        Duration::from_secs(300),
    );
    tgt.psql(
        "postgres",
        &format!("SELECT pg_catalog.pg_terminate_backend({pid})"),
    );
    drop(stopped);
    let status = {
        let start = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if start.elapsed() > Duration::from_secs(600) {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let stderr = std::fs::read_to_string(out.path().join("stderr")).unwrap();
    assert!(
        noticed.is_some(),
        "the stopped target was not noticed; tsxfer said: {stderr}"
    );
    let status = status.expect("tsxfer did not finish after the backend was ended");
    assert!(status.success(), "{status:?}: {stderr}");
    assert_eq!(tgt.psql("silent_tgt", "SELECT count(*) FROM big"), "200000");
}
