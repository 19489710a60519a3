//! Run state: retries, failures that stop a run cleanly, resume after a crash or a
//! Ctrl-C, and several processes sharing one run.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cluster::{self, Cluster};
use crate::compare::{compare_databases, count_rows};
use crate::{Run, conninfos, tsxfer};

/// A source with one big table (copied by one stream for a while) and many small ones, so
/// that a run spends seconds in its data pass with units finishing all the time.
fn load_busy_source(src: &Cluster, db: &str) {
    src.create_database(db);
    src.psql(
        db,
        "CREATE EXTENSION timescaledb;
         CREATE TABLE m (t timestamptz NOT NULL, v int);
         SELECT create_hypertable('m', 't', chunk_time_interval => interval '1 day');
         INSERT INTO m SELECT timestamptz '2024-01-01' + i * interval '1 hour', i FROM generate_series(1, 2000) i;
         CREATE TABLE big (id int PRIMARY KEY, filler text);
         INSERT INTO big SELECT i, repeat(md5(i::text), 8) FROM generate_series(1, 600000) i;
         DO $$ BEGIN FOR i IN 1..30 LOOP
           EXECUTE format('CREATE TABLE small_%s AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g', i);
         END LOOP; END $$;",
    );
}

/// A busy source and a fresh cloud-like target, named after `name`: (source, target)
/// connection strings.
fn busy_pair(name: &str) -> (String, String) {
    let (src, tgt) = cluster::clusters();
    load_busy_source(src, &format!("{name}_src"));
    tgt.create_cloud_like_database(&format!("{name}_tgt"));
    conninfos(src, &format!("{name}_src"), tgt, &format!("{name}_tgt"))
}

/// Starts a migration between `source` and `target` with `jobs` small-buffered streams.
fn spawn_run(source: &str, target: &str, jobs: &str, extra: &[&str]) -> Child {
    let mut args = vec![
        "--source",
        source,
        "--target",
        target,
        "--jobs",
        jobs,
        "--buffer-size",
        "8KiB",
    ];
    args.extend(extra);
    spawn_tsxfer(&args)
}

fn spawn_tsxfer(args: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsxfer"));
    cmd.args(args)
        .args(["--metrics-addr", "off"])
        .current_dir(crate::scratch_dir())
        .env("XDG_STATE_HOME", crate::scratch_dir().join("state"))
        .env_remove("SOURCE")
        .env_remove("TARGET")
        .env_remove("PGPASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("starting tsxfer")
}

/// Waits for a spawned tsxfer and takes what it printed.
pub fn finish(child: Child) -> Run {
    let out = child.wait_with_output().expect("waiting for tsxfer");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Units done so far in the target's run state (0 while there is none yet).
fn units_done(tgt: &Cluster, db: &str) -> i64 {
    tgt.try_psql(db, "SELECT count(*) FROM tsxfer.unit WHERE status = 'done'")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Waits until `done` units are copied, or panics after a minute.
fn wait_for_units(tgt: &Cluster, db: &str, done: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while units_done(tgt, db) < done {
        assert!(
            Instant::now() < deadline,
            "the run copied fewer than {done} units in a minute"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_same(src: &Cluster, src_db: &str, tgt: &Cluster, tgt_db: &str) {
    let diffs = compare_databases(src, src_db, tgt, tgt_db);
    assert!(
        diffs.is_empty(),
        "source and target differ:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn a_target_backend_killed_mid_copy_is_retried_and_the_run_succeeds() {
    let (src, tgt) = cluster::clusters();
    let (source, target) = busy_pair("rs_retry");
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let killed = tgt.psql(
                    "postgres",
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE datname = 'rs_retry_tgt' AND application_name LIKE 'tsxfer target copy%'
                       AND query LIKE 'COPY \"public\".\"big\"%'",
                );
                if killed != "0" {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        })
    };
    let run = tsxfer(&[
        "--source",
        &source,
        "--target",
        &target,
        "--jobs",
        "2",
        "--buffer-size",
        "8KiB",
    ]);
    stop.store(true, Ordering::SeqCst);
    assert!(
        killer.join().unwrap(),
        "the copy of public.big ended before the test could interrupt it: {run:?}"
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("trying again"), "{run:?}");
    assert_same(src, "rs_retry_src", tgt, "rs_retry_tgt");
    assert_eq!(
        tgt.psql("rs_retry_tgt", "SELECT to_regnamespace('tsxfer') IS NULL"),
        "t",
        "the run state outlived a verified run"
    );
}

/// A pair whose first run fails on one unit, leaving its run state behind: a SQL_ASCII
/// source `{name}_src` with a row (`bad`, id 50) whose bytes the UTF-8 target `{name}_tgt`
/// (plain PostgreSQL, cloud-like) refuses, next to `good` (1000 rows). Returns the pair's
/// connection strings after that first run (exit 4).
pub fn pair_with_a_rejected_row(name: &str) -> (String, String) {
    let (src, tgt) = cluster::clusters();
    let (src_db, tgt_db) = (format!("{name}_src"), format!("{name}_tgt"));
    src.psql(
        "postgres",
        &format!(
            "CREATE DATABASE {src_db} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        ),
    );
    src.psql(
        &src_db,
        "CREATE TABLE good (id int PRIMARY KEY, t text);
         INSERT INTO good SELECT i, 'fine ' || i FROM generate_series(1, 1000) i;
         CREATE TABLE bad (id int PRIMARY KEY, t text);
         INSERT INTO bad SELECT i, 'fine ' || i FROM generate_series(1, 100) i;
         UPDATE bad SET t = E'caf\\xe9' WHERE id = 50;",
    );
    tgt.create_cloud_like_database(&tgt_db);
    tgt.psql(&tgt_db, "DROP EXTENSION timescaledb");
    conninfos(src, &src_db, tgt, &tgt_db)
}

#[test]
fn a_row_the_target_rejects_stops_the_run_cleanly_and_a_rerun_after_the_fix_completes() {
    let (src, tgt) = cluster::clusters();
    let (source, target) = pair_with_a_rejected_row("rs_reject");
    let run = tsxfer(&["--source", &source, "--target", &target, "-j", "2"]);
    assert_eq!(run.code, 4, "{run:?}");
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(last.contains("\"public\".\"bad\""), "{run:?}");
    assert!(last.contains("invalid byte sequence"), "{run:?}");
    assert_eq!(tgt.psql("rs_reject_tgt", "SELECT count(*) FROM bad"), "0");
    // `good` committed alone, or shared bad's transaction (small units go several to a
    // transaction) and was rolled back with it: whole or absent, and the run state says
    // which.
    let good = tgt.psql("rs_reject_tgt", "SELECT count(*) FROM good");
    let recorded = tgt.psql(
        "rs_reject_tgt",
        "SELECT status FROM tsxfer.unit WHERE relation = '\"public\".\"good\"'",
    );
    match good.as_str() {
        "1000" => assert_eq!(recorded, "done"),
        "0" => assert_eq!(recorded, "pending"),
        other => panic!("good holds {other} rows of 1000"),
    }

    let status = tsxfer(&["status", "--target", &target]);
    assert_eq!(status.code, 0, "{status:?}");
    assert!(status.stdout.contains("1 failed"), "{status:?}");
    assert!(
        status.stdout.contains("invalid byte sequence"),
        "{status:?}"
    );

    src.psql("rs_reject_src", "UPDATE bad SET t = 'fixed' WHERE id = 50");
    let again = tsxfer(&["--source", &source, "--target", &target, "-j", "2"]);
    assert_eq!(again.code, 3, "resuming without the flag: {again:?}");
    assert!(again.stderr.contains("--allow-inconsistent"), "{again:?}");
    let again = tsxfer(&[
        "--source",
        &source,
        "--target",
        &target,
        "-j",
        "2",
        "--allow-inconsistent",
    ]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(tgt.psql("rs_reject_tgt", "SELECT count(*) FROM bad"), "100");
    assert_eq!(
        tgt.psql("rs_reject_tgt", "SELECT count(*) FROM good"),
        "1000"
    );
    assert_eq!(
        tgt.psql("rs_reject_tgt", "SELECT t FROM bad WHERE id = 50"),
        "fixed"
    );
}

#[test]
fn a_killed_run_resumes_and_copies_every_row_exactly_once() {
    let (src, tgt) = cluster::clusters();
    let (source, target) = busy_pair("rs_kill");
    let mut child = spawn_run(&source, &target, "2", &[]);
    wait_for_units(tgt, "rs_kill_tgt", 3);
    child.kill().expect("SIGKILL");
    let killed = finish(child);
    assert_ne!(killed.code, 0, "{killed:?}");
    let total: i64 = tgt
        .psql("rs_kill_tgt", "SELECT count(*) FROM tsxfer.unit")
        .parse()
        .unwrap();
    let done = units_done(tgt, "rs_kill_tgt");
    assert!(done < total, "the run finished before it was killed");

    // The run's units and schema stay: resuming it with other filters is refused.
    let other = tsxfer(&[
        "--source",
        &source,
        "--target",
        &target,
        "--allow-inconsistent",
        "-T",
        "small_1",
    ]);
    crate::sources::assert_refused(&other, 3, "-T small_1");
    assert_eq!(
        units_done(tgt, "rs_kill_tgt"),
        done,
        "the refused run copied"
    );

    let run = tsxfer(&[
        "--source",
        &source,
        "--target",
        &target,
        "--jobs",
        "2",
        "--allow-inconsistent",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("resumed a run"), "{run:?}");
    assert_same(src, "rs_kill_src", tgt, "rs_kill_tgt");
    assert_eq!(
        count_rows(src, "rs_kill_src", "big"),
        count_rows(tgt, "rs_kill_tgt", "big")
    );
}

#[test]
fn ctrl_c_finishes_units_in_flight_then_stops_and_the_run_resumes() {
    let (src, tgt) = cluster::clusters();
    let (source, target) = busy_pair("rs_int");
    let child = spawn_run(&source, &target, "2", &[]);
    wait_for_units(tgt, "rs_int_tgt", 2);
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let stopped = finish(child);
    assert_eq!(stopped.code, 130, "{stopped:?}");
    assert!(stopped.stderr.contains("to resume"), "{stopped:?}");
    assert_eq!(
        tgt.psql(
            "rs_int_tgt",
            "SELECT current_setting('timescaledb.restoring')"
        ),
        "off"
    );
    // Nothing half-copied: every table holds all its rows or none.
    let partial = tgt.psql(
        "rs_int_tgt",
        "SELECT count(*) FROM tsxfer.unit u
         WHERE u.status = 'pending' AND u.kind = 'table'
           AND (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM ONLY %s', u.relation), false, true, '')))[1]::text::int > 0",
    );
    assert_eq!(partial, "0", "a pending unit has rows on the target");

    let run = tsxfer(&[
        "--source",
        &source,
        "--target",
        &target,
        "--jobs",
        "2",
        "--allow-inconsistent",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_same(src, "rs_int_src", tgt, "rs_int_tgt");
}

#[test]
fn a_second_process_joins_the_run_and_every_unit_is_copied_once() {
    let (src, tgt) = cluster::clusters();
    let (source, target) = busy_pair("rs_two");
    let coordinator = spawn_run(&source, &target, "1", &["--keep-state"]);
    wait_for_units(tgt, "rs_two_tgt", 1);
    let worker = tsxfer(&[
        "worker", "--source", &source, "--target", &target, "--jobs", "1",
    ]);
    let coordinator = finish(coordinator);
    assert_eq!(worker.code, 0, "{worker:?}");
    assert_eq!(coordinator.code, 0, "{coordinator:?}");
    assert!(worker.stdout.contains("copied"), "{worker:?}");
    let by_process = tgt.psql(
        "rs_two_tgt",
        "SELECT string_agg(n::text, ',' ORDER BY who) FROM
           (SELECT split_part(done_by, ' ', 1) AS who, count(*) AS n FROM tsxfer.unit GROUP BY 1) s",
    );
    let counts: Vec<i64> = by_process.split(',').map(|n| n.parse().unwrap()).collect();
    assert_eq!(
        counts.len(),
        2,
        "both processes should have copied units: {by_process}"
    );
    assert_eq!(
        tgt.psql(
            "rs_two_tgt",
            "SELECT count(*) FILTER (WHERE status <> 'done') FROM tsxfer.unit"
        ),
        "0"
    );
    assert_same(src, "rs_two_src", tgt, "rs_two_tgt");
    let clean = tsxfer(&["clean", "--target", &target]);
    assert_eq!(clean.code, 0, "{clean:?}");
    assert_eq!(
        tgt.psql("rs_two_tgt", "SELECT to_regnamespace('tsxfer') IS NULL"),
        "t"
    );
}

#[test]
fn restart_removes_an_earlier_run_and_starts_over() {
    let (src, tgt) = cluster::clusters();
    let (source, target) = busy_pair("rs_restart");
    let mut child = spawn_run(&source, &target, "2", &[]);
    wait_for_units(tgt, "rs_restart_tgt", 2);
    child.kill().expect("SIGKILL");
    finish(child);
    let run = tsxfer(&[
        "--source",
        &source,
        "--target",
        &target,
        "--jobs",
        "2",
        "--restart",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains("resumed a run"), "{run:?}");
    assert_same(src, "rs_restart_src", tgt, "rs_restart_tgt");
}

#[test]
fn a_table_copied_in_parts_resumes_after_a_kill_and_every_row_arrives_once() {
    let (src, tgt) = cluster::clusters();
    let (source, target) = busy_pair("rs_parts");
    let split = ["--split-tables-larger-than", "16MiB", "--keep-state"];
    let parts_done = || {
        tgt.try_psql(
            "rs_parts_tgt",
            "SELECT count(*) FROM tsxfer.unit WHERE status = 'done' AND relation LIKE '%(part %'",
        )
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0)
    };
    let mut child = spawn_run(&source, &target, "3", &split);
    let deadline = Instant::now() + Duration::from_secs(60);
    while parts_done() < 2 {
        assert!(
            Instant::now() < deadline,
            "no two parts of big were copied in a minute"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    let killed = finish(child);
    assert_ne!(killed.code, 0, "{killed:?}");
    let parts: i64 = tgt
        .psql(
            "rs_parts_tgt",
            "SELECT count(*) FROM tsxfer.unit WHERE relation LIKE '\"public\".\"big\" (part %'",
        )
        .parse()
        .unwrap();
    assert!(parts >= 4, "big (about 170 MB) was split in {parts} parts");
    // The parts copied so far hold exactly their own rows: no part was loaded twice or
    // half way, whatever the kill interrupted.
    let held = count_rows(tgt, "rs_parts_tgt", "ONLY public.big");
    let recorded: i64 = tgt
        .psql(
            "rs_parts_tgt",
            "SELECT COALESCE(sum(rows), 0) FROM tsxfer.unit WHERE relation LIKE '\"public\".\"big\" %' AND status = 'done'",
        )
        .parse()
        .unwrap();
    assert_eq!(
        held, recorded,
        "rows of big on the target against its done parts"
    );

    // The same command again (with the first run's split size: what it chose stays).
    let report = crate::scratch_dir().join("rs_parts-report.json");
    let run = tsxfer(&[
        "--source",
        &source,
        "--target",
        &target,
        "--jobs",
        "3",
        "--split-tables-larger-than",
        "16MiB",
        "--allow-inconsistent",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("resumed a run"), "{run:?}");
    assert_same(src, "rs_parts_src", tgt, "rs_parts_tgt");
    assert_eq!(
        count_rows(src, "rs_parts_src", "big"),
        count_rows(tgt, "rs_parts_tgt", "big")
    );
    // The report lists big once, its parts added up and verified as one table.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let big: Vec<&serde_json::Value> = json["units"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["relation"] == "\"public\".\"big\"")
        .collect();
    assert_eq!(big.len(), 1, "{json}");
    assert_eq!(big[0]["parts"].as_i64(), Some(parts), "{}", big[0]);
    assert_eq!(big[0]["rows"].as_i64(), Some(600_000), "{}", big[0]);
    assert_eq!(big[0]["target_rows"].as_i64(), Some(600_000), "{}", big[0]);
    // Verified by count (the default): the rows were not hashed on the way.
    assert!(big[0]["checksum"].is_null(), "{}", big[0]);
    // Parts share their table, so none of them froze it; the analyze phase gave it
    // statistics.
    assert_eq!(
        tgt.psql(
            "rs_parts_tgt",
            "SELECT pg_stat_get_last_analyze_time('public.big'::regclass) IS NOT NULL"
        ),
        "t"
    );
}

#[test]
fn a_shared_transaction_that_fails_part_way_leaves_none_of_its_units_done_and_a_rerun_copies_each_once()
 {
    let (src, tgt) = cluster::clusters();
    let (src_db, tgt_db) = ("rs_batch_src", "rs_batch_tgt");
    // Six small tables share one target transaction (one stream, largest first): the five
    // `good_*` (five pages each) are copied before `bad` (one page), whose one row the
    // UTF-8 target refuses. None has a primary key, so a row copied twice would show.
    src.psql(
        "postgres",
        &format!(
            "CREATE DATABASE {src_db} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        ),
    );
    src.psql(
        src_db,
        "DO $$ BEGIN FOR i IN 1..5 LOOP
           EXECUTE format('CREATE TABLE good_%s AS SELECT g AS id, repeat(''fine '', 10) || g AS t
                           FROM generate_series(1, 500) g', i);
         END LOOP; END $$;
         CREATE TABLE bad (id int, t text);
         INSERT INTO bad SELECT i, 'fine ' || i FROM generate_series(1, 20) i;
         UPDATE bad SET t = E'caf\\xe9' WHERE id = 10;",
    );
    tgt.create_cloud_like_database(tgt_db);
    tgt.psql(tgt_db, "DROP EXTENSION timescaledb");
    let (source, target) = conninfos(src, src_db, tgt, tgt_db);
    let run = tsxfer(&["--source", &source, "--target", &target, "-j", "1"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("\"public\".\"bad\""), "{run:?}");
    assert_eq!(
        tgt.psql(
            tgt_db,
            "SELECT count(*) FILTER (WHERE status = 'done'),
                    count(*) FILTER (WHERE status = 'pending' AND attempts = 0),
                    count(*) FILTER (WHERE status = 'failed' AND relation LIKE '%bad%')
             FROM tsxfer.unit"
        ),
        "0|5|1",
        "the units copied before the failing one in its transaction must not be done"
    );
    for i in 1..=5 {
        assert_eq!(
            tgt.psql(tgt_db, &format!("SELECT count(*) FROM good_{i}")),
            "0",
            "good_{i} was copied in the transaction that failed"
        );
    }

    src.psql(src_db, "UPDATE bad SET t = 'fixed' WHERE id = 10");
    let again = tsxfer(&[
        "--source",
        &source,
        "--target",
        &target,
        "-j",
        "1",
        "--allow-inconsistent",
    ]);
    assert_eq!(again.code, 0, "{again:?}");
    for i in 1..=5 {
        assert_eq!(
            tgt.psql(
                tgt_db,
                &format!("SELECT count(*), count(DISTINCT id) FROM good_{i}")
            ),
            "500|500",
            "good_{i}"
        );
    }
    assert_eq!(
        tgt.psql(tgt_db, "SELECT count(*), count(DISTINCT id) FROM bad"),
        "20|20"
    );
}

/// A post-data pass taken up again makes the chunks' indexes, constraints and triggers the
/// target lacks, and only those: one made twice would fail the run ("already exists").
#[test]
fn a_resumed_post_data_pass_makes_only_the_chunk_objects_the_target_lacks() {
    let (src, tgt) = cluster::clusters();
    src.create_database("res_ddl_src");
    src.psql_file("res_ddl_src", &crate::fixture("chunk_ddl.sql"));
    tgt.create_cloud_like_database("res_ddl_tgt");
    let (source, target) = conninfos(src, "res_ddl_src", tgt, "res_ddl_tgt");
    let run = tsxfer(&["--source", &source, "--target", &target, "--keep-state"]);
    assert_eq!(run.code, 0, "{run:?}");
    // As if the earlier attempt had stopped part way through its post-data: some chunks'
    // objects made, others not.
    let lost =
        "SELECT (SELECT count(*) FROM pg_indexes WHERE indexname LIKE '%readings_by_machine'),
                       (SELECT count(*) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
                        WHERE c.contype = 'f' AND t.relname LIKE '\\_hyper\\_%'),
                       (SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                        WHERE t.tgname = 'counters_touch' AND c.relname LIKE '\\_hyper\\_%')";
    let whole = tgt.psql("res_ddl_tgt", lost);
    tgt.psql(
        "res_ddl_tgt",
        "SET timescaledb.restoring = on;
         DO $d$
         DECLARE r record;
         BEGIN
             FOR r IN SELECT format('%I.%I', schemaname, indexname) AS i FROM pg_indexes
                      WHERE indexname LIKE '%readings_by_machine' AND tablename LIKE '\\_hyper\\_%'
                      ORDER BY indexname LIMIT 3 LOOP
                 EXECUTE 'DROP INDEX ' || r.i;
             END LOOP;
             FOR r IN SELECT c.conname, c.conrelid::regclass AS t FROM pg_constraint c
                      JOIN pg_class t ON t.oid = c.conrelid
                      WHERE c.contype = 'f' AND t.relname LIKE '\\_hyper\\_%' ORDER BY 1 LIMIT 2 LOOP
                 EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.t, r.conname);
             END LOOP;
             FOR r IN SELECT t.tgrelid::regclass AS t FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                      WHERE t.tgname = 'counters_touch' AND c.relname LIKE '\\_hyper\\_%' ORDER BY 1 LIMIT 2 LOOP
                 EXECUTE format('DROP TRIGGER counters_touch ON %s', r.t);
             END LOOP;
         END $d$;
         UPDATE tsxfer.run SET phase = 'data'",
    );
    assert_ne!(tgt.psql("res_ddl_tgt", lost), whole);
    let again = tsxfer(&[
        "--source",
        &source,
        "--target",
        &target,
        "--allow-inconsistent",
    ]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(tgt.psql("res_ddl_tgt", lost), whole);
    let diffs: Vec<String> = compare_databases(src, "res_ddl_src", tgt, "res_ddl_tgt")
        .into_iter()
        .filter(|d| !crate::compare::unavoidable(d))
        .collect();
    assert!(
        diffs.is_empty(),
        "source and target differ:\n{}",
        diffs.join("\n")
    );
}
