//! Faults a run must outlive, injected for real: a target that goes down for several
//! backoff rounds mid-data and mid-post-data, a connection limit met at reconnect, Ctrl-C
//! as a terminal sends it (to the whole process group) in each phase, verify included, and
//! servers and a tsxfer environment that speak German.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::{self, Cluster};
use crate::compare::compare_databases;
use crate::resume::finish;
use crate::{Run, conninfos, tsxfer};

/// Whether this machine has a German locale (`locale-gen de_DE.UTF-8`).
fn german_available() -> bool {
    Command::new("locale")
        .arg("-a")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.eq_ignore_ascii_case("de_DE.utf8") || l == "de_DE.UTF-8")
        })
        .unwrap_or(false)
}

/// A target cluster of the test's own (the test stops and starts it), whose server speaks
/// German when the machine has the locale.
fn own_target(name: &str) -> Cluster {
    if german_available() {
        Cluster::start_with(name, &["lc_messages = 'de_DE.UTF-8'"])
    } else {
        eprintln!(
            "SKIPPED: {name}: the target's messages stay English: no de_DE.UTF-8 locale here (uncomment it in /etc/locale.gen and run locale-gen)"
        );
        Cluster::start(name)
    }
}

/// The environment of a German user (pg_dump and pg_restore inherit it).
const GERMAN: &[(&str, &str)] = &[("LANG", "de_DE.UTF-8"), ("LC_ALL", "de_DE.UTF-8")];

/// A source that keeps a run a few seconds in its data pass (one bigger table, many small
/// ones) and in its post-data pass (indexes on the bigger table), with what a rerun of an
/// interrupted post-data meets again: primary and foreign keys, a check constraint added
/// later, triggers, a policy, a rule, a hypertable with an index.
fn load_source(src: &Cluster, db: &str) {
    src.create_database(db);
    src.psql(
        db,
        "CREATE EXTENSION timescaledb;
         CREATE TABLE m (t timestamptz NOT NULL, v int);
         SELECT create_hypertable('m', 't', chunk_time_interval => interval '1 day');
         INSERT INTO m SELECT timestamptz '2024-01-01' + i * interval '1 hour', i FROM generate_series(1, 1000) i;
         CREATE INDEX m_v ON m (v);
         CREATE TABLE parent (id int PRIMARY KEY);
         INSERT INTO parent SELECT generate_series(1, 1000);
         CREATE TABLE big (id int PRIMARY KEY, a int NOT NULL, b text, filler text);
         INSERT INTO big SELECT i, i % 1000 + 1, md5(i::text), repeat(md5(i::text), 2) FROM generate_series(1, 100000) i;
         CREATE INDEX big_a ON big (a);
         CREATE INDEX big_b ON big (b);
         CREATE INDEX big_ab ON big (a, b);
         CREATE INDEX big_filler ON big (filler);
         ALTER TABLE big ADD CONSTRAINT big_parent FOREIGN KEY (a) REFERENCES parent (id);
         ALTER TABLE big ADD CONSTRAINT big_a_positive CHECK (a > 0) NOT VALID;
         CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
         CREATE TRIGGER big_touch BEFORE UPDATE ON big FOR EACH ROW EXECUTE FUNCTION touch();
         ALTER TABLE big ENABLE ROW LEVEL SECURITY;
         CREATE POLICY big_all ON big USING (true);
         CREATE RULE parent_keep AS ON DELETE TO parent DO INSTEAD NOTHING;
         DO $$ BEGIN FOR i IN 1..20 LOOP
           EXECUTE format('CREATE TABLE small_%s AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 10000) g', i);
           EXECUTE format('CREATE INDEX ON small_%s (v)', i);
         END LOOP; END $$;",
    );
}

/// Starts tsxfer in a process group of its own, as a terminal starts a foreground job,
/// with `env` added to its environment.
fn spawn(args: &[&str], env: &[(&str, &str)]) -> Child {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsxfer"));
    cmd.args(args)
        .args(["--metrics-addr", "off"])
        .current_dir(crate::scratch_dir())
        .env_remove("SOURCE")
        .env_remove("TARGET")
        .env_remove("PGPASSWORD")
        .envs(env.iter().copied())
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("starting tsxfer")
}

/// What a terminal does on Ctrl-C: SIGINT to every process of the foreground group.
fn ctrl_c(child: &Child) {
    let sent = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Polls `sql` on `c` (as the superuser) until it returns `t`; panics after two minutes.
fn wait_until(c: &Cluster, db: &str, sql: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while c.try_psql(db, sql).ok().as_deref() != Some("t") {
        assert!(Instant::now() < deadline, "{what} did not happen in time");
        std::thread::sleep(Duration::from_millis(10));
    }
}

const UNITS_DONE_2: &str = "SELECT to_regclass('tsxfer.unit') IS NOT NULL AND (SELECT count(*) >= 2 FROM tsxfer.unit WHERE status = 'done')";
/// pg_restore is at work on the post-data (the data pass is recorded as done).
const POST_DATA_BUSY: &str = "SELECT to_regclass('tsxfer.run') IS NOT NULL AND EXISTS (SELECT 1 FROM tsxfer.run WHERE phase = 'data') AND EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'tsxfer pg_restore' AND datname = current_database())";

fn assert_same(src: &Cluster, src_db: &str, tgt: &Cluster, tgt_db: &str) {
    let diffs = compare_databases(src, src_db, tgt, tgt_db);
    assert!(
        diffs.is_empty(),
        "source and target differ:\n{}",
        diffs.join("\n")
    );
    assert_eq!(
        tgt.psql(tgt_db, "SELECT current_setting('timescaledb.restoring')"),
        "off",
        "the target stayed in restoring mode"
    );
}

/// Stops `tgt` once `sql` says the run got where the test wants it, keeps it down for
/// three seconds (longer than the first backoff rounds), and starts it again.
fn outage(tgt: &Cluster, db: &str, sql: &str, what: &str) {
    wait_until(tgt, db, sql, what);
    tgt.stop();
    std::thread::sleep(Duration::from_secs(3));
    tgt.start_again();
}

/// Takes the target down in `phase` (once `when` says it is there); the run must say
/// `retried` (how it went on) and finish with an equal target.
fn target_down_in(phase: &str, when: &str, retried: &str) {
    let (src, _) = cluster::clusters();
    let name = format!("fault_down_{}", phase.replace('-', "_"));
    let tgt = own_target(&name);
    let (src_db, tgt_db) = (format!("{name}_src"), format!("{name}_tgt"));
    load_source(src, &src_db);
    tgt.create_cloud_like_database(&tgt_db);
    let (source, target) = conninfos(src, &src_db, &tgt, &tgt_db);
    let child = spawn(
        &[
            "--source",
            &source,
            "--target",
            &target,
            "--jobs",
            "2",
            "--buffer-size",
            "8KiB",
        ],
        GERMAN,
    );
    outage(&tgt, &tgt_db, when, phase);
    let run = finish(child);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains(retried), "{run:?}");
    assert_same(src, &src_db, &tgt, &tgt_db);
    tgt.stop();
}

#[test]
fn a_target_down_for_seconds_mid_data_is_waited_for_and_the_run_finishes_equal() {
    target_down_in("data", UNITS_DONE_2, "trying again");
}

#[test]
fn a_target_down_for_seconds_mid_post_data_is_waited_for_and_the_run_finishes_equal() {
    target_down_in("post-data", POST_DATA_BUSY, "post-data phase: ");
}

#[test]
fn a_target_gone_for_good_mid_data_is_exit_4_and_the_last_line_says_how_to_leave_restoring_mode() {
    let (src, _) = cluster::clusters();
    let tgt = own_target("fault_gone");
    load_source(src, "fault_gone_src");
    tgt.create_cloud_like_database("fault_gone_tgt");
    let (source, target) = conninfos(src, "fault_gone_src", &tgt, "fault_gone_tgt");
    let args = [
        "--source",
        source.as_str(),
        "--target",
        target.as_str(),
        "--jobs",
        "2",
        "--buffer-size",
        "8KiB",
        "--retries",
        "1",
    ];
    let child = spawn(&args, &[]);
    wait_until(&tgt, "fault_gone_tgt", UNITS_DONE_2, "the data pass");
    tgt.stop();
    let run = finish(child);
    // Data was written: not exit 3, which says nothing was changed.
    assert_eq!(run.code, 4, "{run:?}");
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("psql \"") && last.ends_with("timescaledb_post_restore();'"),
        "{run:?}"
    );
    assert!(!run.all().contains(cluster::TSDBADMIN_PASSWORD), "{run:?}");

    tgt.start_again();
    let mut rerun = args.to_vec();
    rerun.push("--allow-inconsistent");
    let run = finish(spawn(&rerun, &[]));
    assert_eq!(run.code, 0, "{run:?}");
    assert_same(src, "fault_gone_src", &tgt, "fault_gone_tgt");
    tgt.stop();
}

#[test]
fn a_connection_limit_met_at_reconnect_is_waited_out() {
    let (src, tgt) = cluster::clusters();
    load_source(src, "fault_limit_src");
    tgt.create_cloud_like_database("fault_limit_tgt");
    let (source, target) = conninfos(src, "fault_limit_src", tgt, "fault_limit_tgt");
    let child = spawn(
        &[
            "--source",
            &source,
            "--target",
            &target,
            "--jobs",
            "2",
            "--buffer-size",
            "8KiB",
        ],
        &[],
    );
    wait_until(tgt, "fault_limit_tgt", UNITS_DONE_2, "the data pass");
    // The database takes no new session; the streams lose theirs and must wait.
    tgt.psql(
        "postgres",
        "ALTER DATABASE fault_limit_tgt CONNECTION LIMIT 0;
         SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = 'fault_limit_tgt' AND application_name LIKE 'tsxfer target copy%'",
    );
    std::thread::sleep(Duration::from_secs(3));
    tgt.psql(
        "postgres",
        "ALTER DATABASE fault_limit_tgt CONNECTION LIMIT -1",
    );
    let run = finish(child);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("trying again"), "{run:?}");
    assert_same(src, "fault_limit_src", tgt, "fault_limit_tgt");
}

#[test]
fn more_jobs_than_the_target_takes_are_capped_before_anything_is_written() {
    let (src, tgt) = cluster::clusters();
    src.create_database("fault_cap_src");
    src.psql(
        "fault_cap_src",
        "CREATE EXTENSION timescaledb;
         DO $$ BEGIN FOR i IN 1..6 LOOP
           EXECUTE format('CREATE TABLE t_%s AS SELECT g AS id FROM generate_series(1, 1000) g', i);
         END LOOP; END $$;",
    );
    tgt.create_cloud_like_database("fault_cap_tgt");
    tgt.psql(
        "postgres",
        "ALTER DATABASE fault_cap_tgt CONNECTION LIMIT 4",
    );
    let (source, target) = conninfos(src, "fault_cap_src", tgt, "fault_cap_tgt");
    let run = tsxfer(&["--source", &source, "--target", &target, "--jobs", "40"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.all().contains("--jobs 40 capped to 2"), "{run:?}");
    assert_same(src, "fault_cap_src", tgt, "fault_cap_tgt");

    tgt.create_cloud_like_database("fault_cap_none_tgt");
    tgt.psql(
        "postgres",
        "ALTER DATABASE fault_cap_none_tgt CONNECTION LIMIT 2",
    );
    let (_, target) = conninfos(src, "fault_cap_src", tgt, "fault_cap_none_tgt");
    let run = tsxfer(&["--source", &source, "--target", &target]);
    crate::sources::assert_refused(&run, 3, "too few for one copy stream");
    assert_eq!(
        tgt.psql(
            "fault_cap_none_tgt",
            "SELECT to_regnamespace('tsxfer') IS NULL"
        ),
        "t",
        "a refused run wrote to the target"
    );
}

/// The command a stopped run's last words ask for: `args`, with `--allow-inconsistent`
/// when they name it. Every stop must say to run the same command again.
fn as_told<'a>(args: &[&'a str], stopped: &Run) -> Vec<&'a str> {
    assert!(
        stopped.stderr.contains("run the same command again"),
        "{stopped:?}"
    );
    let mut again = args.to_vec();
    if stopped.stderr.contains("--allow-inconsistent") {
        again.push("--allow-inconsistent");
    }
    again
}

#[test]
fn ctrl_c_to_the_process_group_in_each_phase_then_a_rerun_completes() {
    let (src, tgt) = cluster::clusters();
    load_source(src, "fault_int_src");
    tgt.create_cloud_like_database("fault_int_tgt");
    let (source, target) = conninfos(src, "fault_int_src", tgt, "fault_int_tgt");
    let args = [
        "--source",
        source.as_str(),
        "--target",
        target.as_str(),
        "--jobs",
        "2",
        "--buffer-size",
        "8KiB",
    ];
    let db = "fault_int_tgt";
    // Once the run state is there (roles or schema): the schema is finished, then the
    // run stops. What comes next is from another snapshot: it must say so.
    let child = spawn(&args, GERMAN);
    wait_until(
        tgt,
        db,
        "SELECT to_regclass('tsxfer.run') IS NOT NULL",
        "the run state",
    );
    ctrl_c(&child);
    let stopped = finish(child);
    assert_eq!(stopped.code, 130, "schema: {stopped:?}");
    let again = as_told(&args, &stopped);
    assert!(again.contains(&"--allow-inconsistent"), "{stopped:?}");

    // In the data pass: units in flight finish.
    let child = spawn(&again, GERMAN);
    wait_until(tgt, db, UNITS_DONE_2, "the data pass");
    ctrl_c(&child);
    let stopped = finish(child);
    assert_eq!(stopped.code, 130, "data: {stopped:?}");
    let again = as_told(&args, &stopped);
    assert!(again.contains(&"--allow-inconsistent"), "{stopped:?}");

    // Twice in the post-data pass: pg_restore is stopped half way. Every unit is copied
    // by then, so the rerun needs no --allow-inconsistent, and is not told to use it.
    let mut rest = spawn(&again, GERMAN);
    wait_until(tgt, db, POST_DATA_BUSY, "the post-data pass");
    ctrl_c(&rest);
    std::thread::sleep(Duration::from_millis(50));
    ctrl_c(&rest);
    let deadline = Instant::now() + Duration::from_secs(60);
    while rest.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "tsxfer did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped = finish(rest);
    assert_eq!(stopped.code, 130, "post-data: {stopped:?}");
    assert!(stopped.stderr.contains("aborted"), "{stopped:?}");
    assert_eq!(
        tgt.psql(db, "SELECT current_setting('timescaledb.restoring')"),
        "off",
        "{stopped:?}"
    );
    let again = as_told(&args, &stopped);
    assert_eq!(again, args, "{stopped:?}");

    rest = spawn(&again, GERMAN);
    let run = finish(rest);
    assert_eq!(run.code, 0, "{run:?}");
    assert_same(src, "fault_int_src", tgt, db);
}

#[test]
fn a_german_target_and_environment_change_no_decision() {
    let (src, _) = cluster::clusters();
    let tgt = own_target("fault_german");
    crate::load_source(src, "fault_de_src", true);
    tgt.create_cloud_like_database("fault_de_tgt");
    let (source, target) = conninfos(src, "fault_de_src", &tgt, "fault_de_tgt");
    // A pattern that matches nothing is a refusal (exit 3), whatever language pg_dump
    // would have said it in.
    let run = finish(spawn(
        &[
            "--source",
            &source,
            "--target",
            &target,
            "-t",
            "tsx_app.nothing_*",
        ],
        GERMAN,
    ));
    crate::sources::assert_refused(&run, 3, "matches nothing");

    // A filtered run: the grants of the objects left out are not refusals to report.
    let run = finish(spawn(
        &["--source", &source, "--target", &target, "-n", "tsx_app"],
        GERMAN,
    ));
    assert_eq!(run.code, 0, "{run:?}");
    let all = run.all();
    let refusals: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("refused by the target"))
        .collect();
    assert!(refusals.is_empty(), "{refusals:#?}\n{run:?}");
    assert_eq!(
        tgt.psql("fault_de_tgt", "SELECT count(*) FROM tsx_app.customers"),
        src.psql("fault_de_src", "SELECT count(*) FROM tsx_app.customers")
    );
    tgt.stop();
}

/// A verify session of the run is at work on the target.
const VERIFYING: &str = "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'tsxfer target verify' AND datname = current_database())";

#[test]
fn ctrl_c_once_in_the_verify_phase_stops_it_at_the_next_read_and_a_rerun_verifies_all() {
    let (src, tgt) = cluster::clusters();
    load_source(src, "fault_vint_src");
    tgt.create_cloud_like_database("fault_vint_tgt");
    let (source, target) = conninfos(src, "fault_vint_src", tgt, "fault_vint_tgt");
    let report = crate::scratch_dir().join("fault_vint.json");
    let report = report.to_str().unwrap();
    // One lane, reading back by content: the big table first, then 60 more units.
    let args = [
        "--source",
        source.as_str(),
        "--target",
        target.as_str(),
        "--jobs",
        "1",
        "--verify",
        "checksum",
        "--report",
        report,
    ];
    let child = spawn(&args, &[]);
    wait_until(tgt, "fault_vint_tgt", VERIFYING, "the verify phase");
    ctrl_c(&child);
    let stopped = finish(child);
    assert_eq!(stopped.code, 130, "{stopped:?}");
    assert!(
        stopped.stderr.contains(
            "stopped on request during verification; run the same command again to resume"
        ),
        "{stopped:?}"
    );
    // The run state stays for the rerun (a finished run drops it).
    assert_eq!(
        tgt.psql(
            "fault_vint_tgt",
            "SELECT to_regclass('tsxfer.run') IS NOT NULL"
        ),
        "t",
        "{stopped:?}"
    );
    assert_eq!(
        tgt.psql(
            "fault_vint_tgt",
            "SELECT current_setting('timescaledb.restoring')"
        ),
        "off"
    );

    let again = as_told(&args, &stopped);
    assert_eq!(again, args, "{stopped:?}");
    let run = finish(spawn(&again, &[]));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("every unit verified by row count and checksum"),
        "{run:?}"
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    let unread = written["units"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["target_rows"].is_null())
        .count();
    assert_eq!(unread, 0, "{run:?}");
    assert_same(src, "fault_vint_src", tgt, "fault_vint_tgt");
}
