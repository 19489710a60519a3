//! Throwaway PostgreSQL + TimescaleDB clusters for the integration tests.
//!
//! Every test process gets its own temporary root directory (under
//! `$TSXFER_IT_TMPDIR`, or the system temp dir, in `tsxfer-it/`). Clusters are
//! created there with `initdb` (run as the `postgres` OS user when we are
//! root, because initdb refuses to run as root), listen on a free TCP port on
//! 127.0.0.1 and on a unix socket inside their own directory, and are stopped
//! and removed when the process exits, also when tests failed (an `atexit`
//! handler does it: the test harness never drops statics). Leftovers of
//! earlier runs that were killed before they could clean up are removed the
//! next time a cluster is started.
//!
//! Only `std` (and `tempfile`) is used.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, Once, OnceLock};

/// The admin role of a cloud-like target database.
pub const TSDBADMIN: &str = "tsdbadmin";
/// Its password: it has characters that need quoting in key=value conninfo
/// strings and percent-encoding in URIs.
pub const TSDBADMIN_PASSWORD: &str = "s3cr!t-Pa55 w@rd'";

/// The TimescaleDB schemas a cloud-like admin role gets to use.
const TIMESCALEDB_SCHEMAS: &[&str] = &[
    "_timescaledb_catalog",
    "_timescaledb_config",
    "_timescaledb_internal",
    "_timescaledb_functions",
    "_timescaledb_cache",
    "_timescaledb_debug",
];

const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const START_ATTEMPTS: usize = 5;

/// A running throwaway cluster.
pub struct Cluster {
    pub name: String,
    pub port: u16,
    pub socket_dir: PathBuf,
    pub data_dir: PathBuf,
    /// The server log (pg_ctl -l).
    pub log_file: PathBuf,
    /// `SHOW timescaledb.license`: "apache" or "timescale".
    pub license: String,
    /// Serializes creation of the tsdbadmin role.
    admin_role: Mutex<bool>,
}

/// The source and target clusters shared by all tests of this process.
pub fn clusters() -> &'static (Cluster, Cluster) {
    static CLUSTERS: OnceLock<(Cluster, Cluster)> = OnceLock::new();
    CLUSTERS.get_or_init(|| {
        // initdb + start take a few seconds each: do both at once.
        std::thread::scope(|s| {
            let source = s.spawn(|| Cluster::start("source"));
            let target = s.spawn(|| Cluster::start("target"));
            let source = source
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            let target = target
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            // Roles belong to the whole cluster, and every run carries the source's: the
            // fixtures' roles are made before any test starts, so that none appears on
            // the source while another test's migration is under way (its comparison
            // would then miss them on its target).
            source.psql_file("postgres", &crate::fixture("roles.sql"));
            (source, target)
        })
    })
}

/// Whether the installed TimescaleDB is the full ("timescale" licensed) build,
/// with compression and continuous aggregates. An Apache-only build says
/// "apache".
pub fn full_timescaledb(c: &Cluster) -> bool {
    c.license == "timescale"
}

impl Cluster {
    /// Creates and starts a new cluster named `name` (the name only labels its
    /// directory and messages; it need not be unique). Panics on failure, with
    /// the output of the failing command or the server log.
    pub fn start(name: &str) -> Cluster {
        Cluster::start_with(name, &[])
    }

    /// As [`Cluster::start`], with extra `postgresql.conf` lines (later lines win).
    pub fn start_with(name: &str, settings: &[&str]) -> Cluster {
        let root = process_root();
        let dir = unique_subdir(root, name);
        let data_dir = dir.join("data");
        let socket_dir = dir.join("s");
        let log_file = dir.join("server.log");
        fs::create_dir_all(&socket_dir)
            .unwrap_or_else(|e| panic!("cluster {name}: create {}: {e}", socket_dir.display()));
        give_to_postgres(&dir);
        give_to_postgres(&socket_dir);

        let out = pg_command("initdb")
            .arg("-D")
            .arg(&data_dir)
            .args([
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                "--no-instructions",
            ])
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("cluster {name}: cannot run initdb: {e}"));
        check_output(&format!("cluster {name}: initdb"), &out);

        let mut conf = String::from("\n# --- tsxfer test harness ---\n");
        let _ = writeln!(conf, "listen_addresses = '127.0.0.1'");
        let _ = writeln!(
            conf,
            "unix_socket_directories = '{}'",
            conf_quote(&socket_dir.to_string_lossy())
        );
        for line in [
            "shared_preload_libraries = 'timescaledb'",
            "timescaledb.telemetry_level = off",
            // No background jobs: a job that ran on either side would change what the
            // tests compare (and 2.19's jobs fail with "cannot drop portal" here).
            "timescaledb.max_background_workers = 0",
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
            "max_connections = 100",
            "password_encryption = 'scram-sha-256'",
            // max_locks_per_transaction stays at its default (64) on purpose:
            // migrating many chunks must cope with it.
            "logging_collector = off",
            "log_line_prefix = '%m [%p] %q%u@%d '",
        ] {
            let _ = writeln!(conf, "{line}");
        }
        for line in settings {
            let _ = writeln!(conf, "{line}");
        }
        append_file(&data_dir.join("postgresql.conf"), &conf);
        fs::write(
            data_dir.join("pg_hba.conf"),
            "# tsxfer test harness\n\
             local all postgres trust\n\
             local all all scram-sha-256\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap_or_else(|e| panic!("cluster {name}: write pg_hba.conf: {e}"));

        register_for_exit(&data_dir);

        let mut last_error = String::new();
        let mut port = 0;
        for attempt in 1..=START_ATTEMPTS {
            port = free_port();
            // The last `port` line of postgresql.conf wins.
            append_file(
                &data_dir.join("postgresql.conf"),
                &format!("port = {port}\n"),
            );
            let out = pg_command("pg_ctl")
                .arg("-D")
                .arg(&data_dir)
                .arg("-l")
                .arg(&log_file)
                .args(["-w", "-t", "120", "start"])
                .current_dir(&dir)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("cluster {name}: cannot run pg_ctl: {e}"));
            if out.status.success() {
                last_error.clear();
                break;
            }
            let log = fs::read_to_string(&log_file).unwrap_or_default();
            last_error = format!(
                "pg_ctl start (attempt {attempt}, port {port}) failed: {}\n{}\n--- server log ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                tail(&log, 40)
            );
            let port_clash = log.contains("could not bind") || log.contains("already in use");
            if !port_clash {
                break;
            }
        }
        if !last_error.is_empty() {
            panic!("cluster {name}: {last_error}");
        }

        let mut cluster = Cluster {
            name: name.to_string(),
            port,
            socket_dir,
            data_dir,
            log_file,
            license: String::new(),
            admin_role: Mutex::new(false),
        };
        cluster.license = cluster.read_license();
        cluster
    }

    /// key=value conninfo for the superuser `postgres`, over the unix socket.
    pub fn superuser_conninfo(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={}",
            conninfo_quote(&self.socket_dir.to_string_lossy()),
            self.port,
            conninfo_quote(db)
        )
    }

    /// key=value conninfo for `user` with `password`, over the unix socket.
    pub fn conninfo(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host={} port={} user={} password={} dbname={}",
            conninfo_quote(&self.socket_dir.to_string_lossy()),
            self.port,
            conninfo_quote(user),
            conninfo_quote(password),
            conninfo_quote(db)
        )
    }

    /// `postgresql://user:password@127.0.0.1:port/db`, percent-encoded, over TCP.
    pub fn tcp_uri(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgresql://{}:{}@127.0.0.1:{}/{}",
            percent_encode(user),
            percent_encode(password),
            self.port,
            percent_encode(db)
        )
    }

    /// Runs `sql` (any number of statements) as the superuser in `db` and
    /// returns psql's unaligned, tuples-only output, trimmed. Panics with
    /// psql's stderr when a statement fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql).unwrap_or_else(|e| {
            panic!(
                "cluster {}: psql in {db} failed:\n{e}\n--- SQL ---\n{sql}",
                self.name
            )
        })
    }

    /// Like [`Cluster::psql`], but returns psql's stderr as the error instead
    /// of panicking.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        run_psql(&self.superuser_conninfo(db), None, sql)
    }

    /// Runs `sql` as `user` (password authentication over the unix socket).
    pub fn psql_as(&self, user: &str, password: &str, db: &str, sql: &str) -> String {
        self.try_psql_as(user, password, db, sql)
            .unwrap_or_else(|e| {
                panic!(
                    "cluster {}: psql as {user} in {db} failed:\n{e}\n--- SQL ---\n{sql}",
                    self.name
                )
            })
    }

    /// Like [`Cluster::psql_as`], returning psql's stderr as the error.
    pub fn try_psql_as(
        &self,
        user: &str,
        password: &str,
        db: &str,
        sql: &str,
    ) -> Result<String, String> {
        let conninfo = format!(
            "host={} port={} user={} dbname={}",
            conninfo_quote(&self.socket_dir.to_string_lossy()),
            self.port,
            conninfo_quote(user),
            conninfo_quote(db)
        );
        run_psql(&conninfo, Some(password), sql)
    }

    /// Runs an SQL file as the superuser in `db`; panics on the first error.
    pub fn psql_file(&self, db: &str, path: &Path) {
        let out = psql_command(&self.superuser_conninfo(db), None)
            .arg("-f")
            .arg(path)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
        if !out.status.success() {
            panic!(
                "cluster {}: psql -f {} in {db} failed ({}):\n{}",
                self.name,
                path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Creates a plain database owned by `postgres`.
    pub fn create_database(&self, db: &str) {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(db)),
        );
    }

    /// Creates a database like a managed cloud service hands out: owned by the
    /// non-superuser role `tsdbadmin` (LOGIN CREATEROLE), with the timescaledb
    /// extension created by the superuser, `timescaledb_pre_restore()` and
    /// `timescaledb_post_restore()` callable by tsdbadmin (only), and
    /// tsdbadmin allowed to use the TimescaleDB internal schemas.
    pub fn create_cloud_like_database(&self, db: &str) {
        self.ensure_tsdbadmin();
        let admin = quote_ident(TSDBADMIN);
        self.psql(
            "postgres",
            &format!(
                "CREATE DATABASE {} OWNER {admin} TEMPLATE template0",
                quote_ident(db)
            ),
        );
        self.psql(db, "CREATE EXTENSION IF NOT EXISTS timescaledb");

        let mut sql = String::from("BEGIN;\n");
        for f in ["timescaledb_pre_restore", "timescaledb_post_restore"] {
            let _ = write!(
                sql,
                "ALTER FUNCTION public.{f}() SECURITY DEFINER;\n\
                 REVOKE EXECUTE ON FUNCTION public.{f}() FROM PUBLIC;\n\
                 GRANT EXECUTE ON FUNCTION public.{f}() TO {admin};\n"
            );
        }
        let schemas = TIMESCALEDB_SCHEMAS
            .iter()
            .map(|s| quote_literal(s))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            sql,
            "DO $tsxfer$\n\
             DECLARE s text;\n\
             BEGIN\n\
               FOREACH s IN ARRAY ARRAY[{schemas}]::text[] LOOP\n\
                 IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s) THEN\n\
                   EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO {admin}', s);\n\
                   EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA %I TO {admin}', s);\n\
                   EXECUTE format('GRANT ALL ON ALL SEQUENCES IN SCHEMA %I TO {admin}', s);\n\
                 END IF;\n\
               END LOOP;\n\
               FOREACH s IN ARRAY ARRAY['_timescaledb_functions', '_timescaledb_internal']::text[] LOOP\n\
                 IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s) THEN\n\
                   EXECUTE format('GRANT EXECUTE ON ALL ROUTINES IN SCHEMA %I TO {admin}', s);\n\
                 END IF;\n\
               END LOOP;\n\
             END\n\
             $tsxfer$;\n\
             COMMIT;\n"
        );
        self.psql(db, &sql);
    }

    /// Stops the cluster (fast shutdown). Its directory is removed at process
    /// exit. Stopping a stopped cluster does nothing.
    pub fn stop(&self) {
        if !self.data_dir.join("postmaster.pid").exists() {
            return;
        }
        let out = pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-w", "-t", "120", "-m", "fast", "stop"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run pg_ctl: {e}"));
        if !out.status.success() && self.data_dir.join("postmaster.pid").exists() {
            panic!(
                "cluster {}: pg_ctl stop failed ({}): {}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Starts a cluster [`Cluster::stop`] stopped, on the same port; waits until it
    /// takes connections.
    pub fn start_again(&self) {
        let out = pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file)
            .args(["-w", "-t", "120", "start"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run pg_ctl: {e}"));
        check_output(&format!("cluster {}: pg_ctl start", self.name), &out);
    }

    fn ensure_tsdbadmin(&self) {
        let mut done = self.admin_role.lock().unwrap_or_else(|e| e.into_inner());
        if *done {
            return;
        }
        let admin = quote_ident(TSDBADMIN);
        self.psql(
            "postgres",
            &format!(
                "DO $tsxfer$\n\
                 BEGIN\n\
                   IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {name}) THEN\n\
                     CREATE ROLE {admin};\n\
                   END IF;\n\
                 END\n\
                 $tsxfer$;\n\
                 SET password_encryption = 'scram-sha-256';\n\
                 ALTER ROLE {admin} LOGIN CREATEROLE NOSUPERUSER PASSWORD {password};\n",
                name = quote_literal(TSDBADMIN),
                password = quote_literal(TSDBADMIN_PASSWORD),
            ),
        );
        *done = true;
    }

    fn read_license(&self) -> String {
        // The GUC is defined by the versioned library, which is loaded when a
        // database with the extension is used: ask in a scratch database.
        let probe = format!("tsxfer_license_probe_{}", self.port);
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(&probe)),
        );
        let license = self.psql(
            &probe,
            "CREATE EXTENSION IF NOT EXISTS timescaledb;\nSHOW timescaledb.license;",
        );
        self.psql(
            "postgres",
            &format!("DROP DATABASE {} WITH (FORCE)", quote_ident(&probe)),
        );
        match license.as_str() {
            "apache" | "timescale" => license,
            other => panic!(
                "cluster {}: unexpected timescaledb.license {other:?}",
                self.name
            ),
        }
    }
}

// --- process-wide state -------------------------------------------------------

#[allow(unsafe_code)]
unsafe extern "C" {
    fn atexit(cb: extern "C" fn()) -> i32;
    fn geteuid() -> u32;
}

/// Data directories of the clusters started by this process.
static STARTED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static SUBDIR_COUNTER: Mutex<u32> = Mutex::new(0);

#[allow(unsafe_code)]
fn register_for_exit(data_dir: &Path) {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: atexit only stores the function pointer; the handler is a
        // plain function that never unwinds.
        let rc = unsafe { atexit(stop_all_at_exit) };
        assert_eq!(rc, 0, "atexit failed");
    });
    STARTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(data_dir.to_path_buf());
}

extern "C" fn stop_all_at_exit() {
    // Must not unwind into C.
    let _ = std::panic::catch_unwind(|| {
        let dirs = std::mem::take(&mut *STARTED.lock().unwrap_or_else(|e| e.into_inner()));
        for data_dir in &dirs {
            stop_immediate(data_dir);
        }
        if let Some(root) = PROCESS_ROOT.get() {
            let _ = fs::remove_dir_all(root);
        }
    });
}

fn stop_immediate(data_dir: &Path) {
    if data_dir.join("postmaster.pid").exists() {
        let _ = pg_command("pg_ctl")
            .arg("-D")
            .arg(data_dir)
            .args(["-w", "-t", "60", "-m", "immediate", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

static PROCESS_ROOT: OnceLock<PathBuf> = OnceLock::new();

/// The per-process directory holding all clusters of this process.
fn process_root() -> &'static Path {
    PROCESS_ROOT.get_or_init(|| {
        let base = std::env::var_os("TSXFER_IT_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join("tsxfer-it");
        fs::create_dir_all(&base).unwrap_or_else(|e| panic!("create {}: {e}", base.display()));
        // Shared by every user's test runs, like /tmp itself.
        let _ = fs::set_permissions(&base, fs::Permissions::from_mode(0o1777));
        clean_leftovers(&base);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-", std::process::id()))
            .tempdir_in(&base)
            .unwrap_or_else(|e| panic!("create a temp dir in {}: {e}", base.display()))
            .keep();
        // The postgres OS user must be able to reach its cluster directories.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
        fs::write(
            dir.join("owner"),
            owner_stamp(std::process::id()).unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("write owner file in {}: {e}", dir.display()));
        dir
    })
}

/// "<pid> <start time>" of a live process, which tells a live owner from a
/// dead one whose pid was reused.
fn owner_stamp(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3;
    // the start time is field 22.
    let after = &stat[stat.rfind(')')? + 1..];
    let start = after.split_whitespace().nth(19)?;
    Some(format!("{pid} {start}"))
}

/// Stops and removes the clusters of earlier test processes that are gone.
fn clean_leftovers(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.is_dir() {
            continue;
        }
        let Ok(stamp) = fs::read_to_string(dir.join("owner")) else {
            continue;
        };
        let stamp = stamp.trim();
        let alive = stamp
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .and_then(owner_stamp)
            .is_some_and(|now| now == stamp);
        if alive {
            continue;
        }
        if let Ok(clusters) = fs::read_dir(&dir) {
            for c in clusters.flatten() {
                let data_dir = c.path().join("data");
                if data_dir.is_dir() {
                    stop_immediate(&data_dir);
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

fn unique_subdir(root: &Path, name: &str) -> PathBuf {
    let mut n = SUBDIR_COUNTER.lock().unwrap_or_else(|e| e.into_inner());
    *n += 1;
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(20)
        .collect();
    root.join(format!("{clean}-{}", *n))
}

// --- helpers --------------------------------------------------------------------

#[allow(unsafe_code)]
fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { geteuid() == 0 }
}

pub fn pg_bin() -> PathBuf {
    std::env::var_os("TSXFER_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PG_BIN))
}

/// A PostgreSQL server program, run as the `postgres` OS user when we are root.
fn pg_command(program: &str) -> Command {
    let path = pg_bin().join(program);
    let mut cmd = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args([OsStr::new("-u"), OsStr::new("postgres"), OsStr::new("--")])
            .arg(path);
        c
    } else {
        Command::new(path)
    };
    cmd.env("LC_ALL", "C.UTF-8");
    cmd
}

/// Hands a directory we created to the `postgres` OS user (when we are root).
fn give_to_postgres(dir: &Path) {
    if !running_as_root() {
        return;
    }
    let (uid, gid) = postgres_ids();
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", dir.display()));
}

fn postgres_ids() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| {
        let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
        passwd
            .lines()
            .find_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                (f.len() > 3 && f[0] == "postgres").then(|| (f[2].parse().ok(), f[3].parse().ok()))
            })
            .and_then(|(u, g)| Some((u?, g?)))
            .expect("no `postgres` OS user in /etc/passwd (is postgresql-15 installed?)")
    })
}

fn psql_command(conninfo: &str, password: Option<&str>) -> Command {
    let mut cmd = Command::new(pg_bin().join("psql"));
    cmd.args(["-X", "-v", "ON_ERROR_STOP=1", "-At", "-q", "-d"])
        .arg(conninfo)
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS")
        .env("PGCONNECT_TIMEOUT", "30")
        .env("LC_ALL", "C.UTF-8");
    if let Some(pw) = password {
        cmd.env("PGPASSWORD", pw);
    }
    cmd
}

fn run_psql(conninfo: &str, password: Option<&str>, sql: &str) -> Result<String, String> {
    let mut child = psql_command(conninfo, password)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    // Write stdin from another thread so a big output cannot deadlock us.
    let mut stdin = child.stdin.take().expect("psql stdin");
    let input = sql.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for psql: {e}"))?;
    let _ = writer.join();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "psql exited with {}:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn check_output(what: &str, out: &Output) {
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn append_file(path: &Path, text: &str) {
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A value in postgresql.conf: single quotes doubled.
fn conf_quote(s: &str) -> String {
    s.replace('\'', "''")
}

/// A value in a libpq key=value connection string.
pub fn conninfo_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| !c.is_whitespace() && c != '\'' && c != '\\');
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// An SQL identifier, always double-quoted.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// An SQL string literal (standard_conforming_strings is on).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

// --- self-test of the harness ------------------------------------------------------

/// The cloud-like target really lets its non-superuser admin do what a
/// restore of TimescaleDB needs.
#[test]
fn harness_cloud_like_target_lets_tsdbadmin_restore() {
    let (source, target) = clusters();
    assert!(source.port != target.port);
    assert!(matches!(source.license.as_str(), "apache" | "timescale"));
    assert_eq!(source.psql("postgres", "SELECT 1"), "1");

    let db = "harness_cloud_like";
    target.create_cloud_like_database(db);
    let as_admin = |sql: &str| target.psql_as(TSDBADMIN, TSDBADMIN_PASSWORD, db, sql);

    assert_eq!(
        as_admin("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"),
        "tsdbadmin|f"
    );
    assert_eq!(
        target.psql(
            "postgres",
            &format!(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = {}",
                quote_literal(db)
            )
        ),
        TSDBADMIN
    );
    // What pg_restore of a TimescaleDB database does, as tsdbadmin.
    as_admin(
        "SELECT public.timescaledb_pre_restore();\n\
         INSERT INTO _timescaledb_catalog.metadata (key, value, include_in_telemetry)\n\
           VALUES ('tsxfer_harness_check', 'x', false);\n\
         SELECT pg_catalog.setval('_timescaledb_catalog.hypertable_id_seq', 1, false);\n\
         DELETE FROM _timescaledb_catalog.metadata WHERE key = 'tsxfer_harness_check';\n\
         SELECT public.timescaledb_post_restore();",
    );
    // A fresh session sees restoring off again, and hypertables work.
    assert_eq!(as_admin("SHOW timescaledb.restoring"), "off");
    as_admin(
        "CREATE TABLE m (t timestamptz NOT NULL, v int);\n\
         SELECT create_hypertable('m', by_range('t', INTERVAL '1 day'));\n\
         INSERT INTO m SELECT '2024-01-01'::timestamptz + i * INTERVAL '1 hour', i FROM generate_series(0, 71) i;",
    );
    assert_eq!(
        as_admin("SELECT count(*) FROM show_chunks('m')"),
        "3",
        "3 days in 1-day chunks"
    );
    // Nobody else may call the restore functions.
    target.psql(
        "postgres",
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'harness_nobody') THEN \
         CREATE ROLE harness_nobody LOGIN PASSWORD 'nobody'; END IF; END $$",
    );
    let err = target
        .try_psql_as(
            "harness_nobody",
            "nobody",
            db,
            "SELECT public.timescaledb_pre_restore()",
        )
        .expect_err("a role other than tsdbadmin ran timescaledb_pre_restore()");
    assert!(err.contains("permission denied"), "{err}");

    // The URI and key=value forms both authenticate.
    for conninfo in [
        target.tcp_uri(TSDBADMIN, TSDBADMIN_PASSWORD, db),
        target.conninfo(TSDBADMIN, TSDBADMIN_PASSWORD, db),
    ] {
        let out = Command::new(pg_bin().join("psql"))
            .args(["-X", "-At", "-c", "SELECT current_user", "-d"])
            .arg(&conninfo)
            .env_remove("PGPASSWORD")
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "{conninfo}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), TSDBADMIN);
    }
    target.psql(
        "postgres",
        &format!("DROP DATABASE {} WITH (FORCE)", quote_ident(db)),
    );
}

/// pgbouncer (session pooling) on a free TCP port of 127.0.0.1, in front of `cluster`,
/// letting `TSDBADMIN` in without a password and logging in to the server with its own.
/// With `ignore_options`, it drops the `options` startup parameter instead of refusing
/// it. Stopped when dropped.
pub struct Pooler {
    pub port: u16,
    child: std::process::Child,
}

impl Pooler {
    pub fn in_front_of(cluster: &Cluster, ignore_options: bool) -> Pooler {
        let dir = unique_subdir(process_root(), "pgbouncer");
        fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let users = dir.join("users.txt");
        fs::write(
            &users,
            format!(
                "\"{TSDBADMIN}\" \"{}\"\n",
                TSDBADMIN_PASSWORD.replace('"', "\"\"")
            ),
        )
        .unwrap();
        let ini = dir.join("pgbouncer.ini");
        fs::write(
            &ini,
            format!(
                "[databases]\n* = host={} port={}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {}\npool_mode = session\nlogfile = {}\n{}",
                cluster.socket_dir.display(),
                cluster.port,
                users.display(),
                dir.join("pgbouncer.log").display(),
                if ignore_options {
                    "ignore_startup_parameters = options\n"
                } else {
                    ""
                }
            ),
        )
        .unwrap();
        for f in [&dir, &users, &ini] {
            give_to_postgres(f);
        }
        // pgbouncer refuses to run as root.
        let mut cmd = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "pgbouncer"]);
            c
        } else {
            Command::new("pgbouncer")
        };
        let child = cmd
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting pgbouncer (scripts/setup.sh installs it)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "pgbouncer did not listen on {port} within 30 s (log: {})",
                dir.join("pgbouncer.log").display()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Pooler { port, child }
    }

    /// A connection string to `db` through the pooler, as `TSDBADMIN`.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={TSDBADMIN} dbname={db} password={}",
            self.port,
            conninfo_quote(TSDBADMIN_PASSWORD)
        )
    }
}

impl Drop for Pooler {
    fn drop(&mut self) {
        // runuser passes SIGTERM on to pgbouncer.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
