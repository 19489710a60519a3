//! Integration tests: real PostgreSQL 15 + TimescaleDB clusters, the real `tsxfer` binary,
//! and SQL comparisons of source and target.

mod cluster;
mod compare;
mod faults;
mod fidelity;
mod first_contact;
mod migrate;
mod observability;
mod offline;
mod resume;
mod safety;
mod sources;
mod tls;
mod verify;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cluster::{Cluster, TSDBADMIN, TSDBADMIN_PASSWORD};

/// A fixture file under tests/it/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures")
        .join(name)
}

/// The result of one run of the binary, with both streams as text.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `tsxfer` with `args`; no SOURCE/TARGET/PG* from the test's own environment leak in.
/// Commands that copy run without a metrics endpoint unless `args` asks for one: tests
/// run in parallel and would fight over the default port.
pub fn tsxfer(args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsxfer"));
    cmd.args(args)
        .current_dir(scratch_dir())
        .env("XDG_STATE_HOME", scratch_dir().join("state"));
    let serving = args.first().is_some_and(|a| {
        a.starts_with("--") || ["migrate", "worker", "dump", "restore", "verify"].contains(a)
    });
    if serving && !args.contains(&"--metrics-addr") {
        cmd.args(["--metrics-addr", "off"]);
    }
    for var in [
        "SOURCE",
        "TARGET",
        "PGPASSWORD",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
    ] {
        cmd.env_remove(var);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("running tsxfer");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Says that this test left `what` out, loudly: on stderr, and as a line
/// `<test>: <what>` appended to the file `$TSXFER_SKIPPED_FILE` names, which
/// scripts/test.sh counts and lists at the end of the suite.
pub fn skip(what: &str) {
    eprintln!("SKIPPED: {what}");
    let Some(path) = std::env::var_os("TSXFER_SKIPPED_FILE") else {
        return;
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    // One write of one line to a file opened for appending: lines of tests running at
    // once do not mix.
    let line = format!("{test}: {}\n", what.replace('\n', " "));
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    if let Err(e) = written {
        panic!("cannot record the skip in {}: {e}", path.to_string_lossy());
    }
}

/// Where the binary runs in tests, so its default report files land outside the checkout.
pub fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tsxfer-it-work-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("making the tests' working directory");
    dir
}

/// The source conninfo (superuser) and the cloud-like target conninfo (tsdbadmin with its
/// password) for a pair of databases.
pub fn conninfos(src: &Cluster, src_db: &str, tgt: &Cluster, tgt_db: &str) -> (String, String) {
    (
        src.superuser_conninfo(src_db),
        tgt.conninfo(TSDBADMIN, TSDBADMIN_PASSWORD, tgt_db),
    )
}

/// Loads fixtures into a fresh source database: roles, plain objects, and (when asked)
/// TimescaleDB objects, with compressed chunks and a continuous aggregate when the build
/// has them. Returns whether the compression fixture was loaded.
pub fn load_source(src: &Cluster, db: &str, timescale: bool) -> bool {
    src.create_database(db);
    src.psql_file(db, &fixture("roles.sql"));
    src.psql_file(db, &fixture("plain.sql"));
    if !timescale {
        return false;
    }
    src.psql_file(db, &fixture("timescale.sql"));
    if cluster::full_timescaledb(src) {
        src.psql_file(db, &fixture("compression.sql"));
        true
    } else {
        skip(
            "compressed chunks and continuous aggregates not tested: TimescaleDB here is the Apache-only build (license apache)",
        );
        false
    }
}
