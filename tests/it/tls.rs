//! TLS: the server certificate is verified, against `sslrootcert` or the system's roots,
//! host name included, whatever `sslmode` says.

use std::path::Path;
use std::process::Command;

use crate::cluster::{self, Cluster, TSDBADMIN, TSDBADMIN_PASSWORD};
use crate::tsxfer;

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

/// A certificate authority (`ca.crt`) and a server certificate for 127.0.0.1 it signed
/// (`server.crt`, `server.key`), in `dir`, readable by the `postgres` OS user.
fn make_certificates(dir: &Path) {
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
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
        dir,
    );
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
        dir,
    );
    for f in ["server.key", "server.crt"] {
        let chown = Command::new("chown")
            .arg("postgres")
            .arg(dir.join(f))
            .status()
            .unwrap();
        assert!(chown.success());
    }
    std::fs::set_permissions(
        dir.join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
}

#[test]
fn tls_connections_verify_the_server_certificate() {
    let (src, _) = cluster::clusters();
    let certs = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        certs.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    make_certificates(certs.path());
    let crt = certs.path().join("server.crt");
    let key = certs.path().join("server.key");
    let tgt = Cluster::start_with(
        "tls-target",
        &[
            "ssl = on",
            &format!("ssl_cert_file = '{}'", crt.display()),
            &format!("ssl_key_file = '{}'", key.display()),
        ],
    );
    src.create_database("tls_src");
    tgt.create_cloud_like_database("tls_tgt");
    let source = src.superuser_conninfo("tls_src");
    let base = tgt.tcp_uri(TSDBADMIN, TSDBADMIN_PASSWORD, "tls_tgt");
    let plan = |target: &str| tsxfer(&["plan", "--source", &source, "--target", target]);

    let trusted = plan(&format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        certs.path().join("ca.crt").display()
    ));
    assert_eq!(trusted.code, 0, "{trusted:?}");

    // The same server without its certificate among the trusted ones: refused, even with
    // sslmode=require (which libpq would not check).
    for mode in ["require", "verify-full"] {
        let run = plan(&format!("{base}?sslmode={mode}"));
        assert_eq!(run.code, 3, "sslmode={mode}: {run:?}");
        assert!(
            run.stderr.contains("certificate"),
            "sslmode={mode}: {run:?}"
        );
        assert!(!run.all().contains(TSDBADMIN_PASSWORD), "{run:?}");
    }
    // An unreadable root certificate file is a usage error, said plainly.
    let missing = plan(&format!(
        "{base}?sslmode=require&sslrootcert=/nonexistent.crt"
    ));
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(missing.stderr.contains("/nonexistent.crt"), "{missing:?}");
    tgt.stop();
}
