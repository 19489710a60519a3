//! End-to-end migrations with the real binary.

use crate::cluster::{self, Cluster, TSDBADMIN_PASSWORD};
use crate::compare::{assert_migrated, compare_databases, count_rows};
use crate::{conninfos, fixture, load_source, tsxfer};

#[test]
fn migrates_a_timescaledb_database_and_everything_in_it() {
    let (src, tgt) = cluster::clusters();
    let compressed = load_source(src, "e2e_ts_src", true);
    // Big enough (1/512 of shared_buffers) to be loaded frozen.
    src.psql(
        "e2e_ts_src",
        "CREATE TABLE public.bulk AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 30000) AS g",
    );
    tgt.create_cloud_like_database("e2e_ts_tgt");
    let (source, target) = conninfos(src, "e2e_ts_src", tgt, "e2e_ts_tgt");
    let report = std::env::temp_dir().join(format!("tsxfer-e2e-{}.json", std::process::id()));
    let run = tsxfer(&[
        "--source",
        &source,
        "--target",
        &target,
        "--jobs",
        "3",
        "--buffer-size",
        "64KiB",
        "--verify",
        "checksum",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("result: success"), "{run:?}");
    assert!(
        !run.all().contains(TSDBADMIN_PASSWORD),
        "the password leaked into the output"
    );

    assert_migrated(src, "e2e_ts_src", tgt, "e2e_ts_tgt");

    // Not left in restoring mode, and hypertables answer through their parents.
    assert_eq!(
        tgt.psql(
            "e2e_ts_tgt",
            "SELECT current_setting('timescaledb.restoring')"
        ),
        "off"
    );
    assert_eq!(
        count_rows(src, "e2e_ts_src", "tsx_ts.metrics"),
        count_rows(tgt, "e2e_ts_tgt", "tsx_ts.metrics")
    );
    if compressed {
        let sql = "SELECT count(*) FROM timescaledb_information.chunks WHERE is_compressed";
        let on_source = src.psql("e2e_ts_src", sql);
        assert_ne!(on_source, "0", "the fixture compressed nothing");
        assert_eq!(on_source, tgt.psql("e2e_ts_tgt", sql));
    }
    // Every table with rows has statistics (most from the ANALYZE right after its copy),
    // and so has the expression index, which only exists after post-data.
    assert_eq!(
        tgt.psql(
            "e2e_ts_tgt",
            "SELECT string_agg(format('%I.%I', n.nspname, c.relname), ', ')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r' AND c.relpages > 0
               AND n.nspname NOT IN ('pg_catalog', 'information_schema',
                                     '_timescaledb_catalog', '_timescaledb_config')
               AND n.nspname NOT LIKE 'pg\\_toast%'
               AND NOT EXISTS (SELECT 1 FROM pg_statistic s WHERE s.starelid = c.oid)"
        ),
        "",
        "tables without statistics"
    );
    assert_ne!(
        tgt.psql(
            "e2e_ts_tgt",
            "SELECT count(*) FROM pg_stats WHERE tablename = 'customers_lower_email_idx'"
        ),
        "0",
        "no statistics for the expression index"
    );
    // Tables big enough were loaded frozen (COPY FREEZE): ANALYZE found all their pages
    // all-visible, so VACUUM has nothing left to do there.
    assert_eq!(
        tgt.psql(
            "e2e_ts_tgt",
            "SELECT relallvisible = relpages AND relpages > 0 FROM pg_class WHERE oid = 'public.bulk'::regclass"
        ),
        "t"
    );
    assert_eq!(
        tgt.psql(
            "e2e_ts_tgt",
            "SELECT string_agg(format('%I.%I %s/%s', n.nspname, c.relname, c.relallvisible, c.relpages), ', ')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r' AND c.relallvisible < c.relpages
               AND pg_table_size(c.oid) >= pg_size_bytes(current_setting('shared_buffers')) / 512
               AND n.nspname NOT IN ('pg_catalog', 'information_schema',
                                     '_timescaledb_catalog', '_timescaledb_config')
               AND n.nspname NOT LIKE 'pg\\_toast%'"
        ),
        "",
        "big tables with pages not all-visible"
    );

    // The JSON report lists every unit with its verified target count.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    std::fs::remove_file(&report).ok();
    assert_eq!(json["success"], true);
    let units = json["units"].as_array().unwrap();
    let tables: i64 = src
        .psql(
            "e2e_ts_src",
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema',
               '_timescaledb_catalog', '_timescaledb_config')
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                               AND d.objid = c.oid AND d.deptype = 'e')",
        )
        .parse()
        .unwrap();
    let table_units = units
        .iter()
        .filter(|u| u["kind"] != "large_objects")
        .count() as i64;
    assert_eq!(table_units, tables);
    for u in units {
        assert_eq!(
            u["rows"].as_i64(),
            u["target_rows"].as_i64(),
            "unit {}",
            u["relation"]
        );
        // Verified by content (--verify checksum), large objects by count.
        if u["kind"] != "large_objects" {
            assert!(u["checksum"].is_string(), "unit {u}");
            assert_eq!(
                u["checksum"], u["target_checksum"],
                "unit {}",
                u["relation"]
            );
        }
    }
    assert!(
        json["rewrites"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("rds_tsx_fake")),
        "the dropped rds role is not listed: {}",
        json["rewrites"]
    );
}

#[test]
fn migrates_a_plain_postgres_database() {
    let (src, tgt) = cluster::clusters();
    load_source(src, "e2e_pg_src", false);
    tgt.create_cloud_like_database("e2e_pg_tgt");
    tgt.psql("e2e_pg_tgt", "DROP EXTENSION timescaledb");
    let (source, target) = conninfos(src, "e2e_pg_src", tgt, "e2e_pg_tgt");
    let run = tsxfer(&["--source", &source, "--target", &target, "-j", "2"]);
    assert_eq!(run.code, 0, "{run:?}");
    let diffs = compare_databases(src, "e2e_pg_src", tgt, "e2e_pg_tgt");
    assert!(
        diffs.is_empty(),
        "source and target differ:\n{}",
        diffs.join("\n")
    );
}

/// The analyze phase's list (sql/target_analyze.sql, read as sets joined by OID so that it
/// stays linear in the chunks): what has no statistics yet, what needs them again
/// (expression indexes, extended statistics), materialized views, then the parents
/// (inheritance, partitioned tables, hypertables); never an extension's own tables.
#[test]
fn the_analyze_list_names_what_needs_statistics_and_parents_last() {
    let (_, tgt) = cluster::clusters();
    tgt.create_database("analyze_list");
    tgt.psql(
        "analyze_list",
        "CREATE EXTENSION timescaledb;
         CREATE TABLE analyzed (id int); INSERT INTO analyzed VALUES (1); ANALYZE analyzed;
         CREATE TABLE fresh (id int); INSERT INTO fresh VALUES (1);
         CREATE TABLE parent (id int); CREATE TABLE child () INHERITS (parent); ANALYZE parent;
         CREATE TABLE parted (id int) PARTITION BY RANGE (id);
         CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
         CREATE TABLE exprs (v text); CREATE INDEX ON exprs (lower(v)); ANALYZE exprs;
         CREATE TABLE extstats (a int, b int);
         CREATE STATISTICS extstats_ab ON a, b FROM extstats; ANALYZE extstats;
         CREATE MATERIALIZED VIEW mv AS SELECT 1 AS x;
         CREATE TABLE ht (time timestamptz NOT NULL, v int);
         SELECT create_hypertable('ht', 'time');
         INSERT INTO ht VALUES ('2024-01-01', 1), ('2024-02-01', 2);
         ANALYZE _timescaledb_internal._hyper_1_1_chunk;",
    );
    let list = tgt.psql(
        "analyze_list",
        include_str!("../../src/sql/target_analyze.sql"),
    );
    let list: Vec<&str> = list.lines().collect();
    assert_eq!(
        list,
        [
            "_timescaledb_internal._hyper_1_2_chunk|f|_timescaledb_internal|_hyper_1_2_chunk",
            "public.child|f|public|child",
            "public.exprs|f|public|exprs",
            "public.extstats|f|public|extstats",
            "public.fresh|f|public|fresh",
            "public.mv|f|public|mv",
            "public.parted_1|f|public|parted_1",
            "public.ht|t|public|ht",
            "public.parent|t|public|parent",
            "public.parted|t|public|parted",
        ]
    );
}

/// Small tables get their statistics whatever `--verify` says: with a verify phase, its
/// lanes analyze what they read back just before counting it; without one, the analyze
/// phase does it all. Names that need quoting included. The result line says what was
/// checked (under `--verify off` it once said "every unit verified").
#[test]
fn every_small_table_gets_statistics_with_and_without_a_verify_phase() {
    let (src, tgt) = cluster::clusters();
    src.create_database("e2e_stats_src");
    src.psql(
        "e2e_stats_src",
        "CREATE EXTENSION timescaledb;
         CREATE TABLE readings (time timestamptz NOT NULL, v int);
         SELECT create_hypertable('readings', 'time', chunk_time_interval => interval '1 hour');
         INSERT INTO readings SELECT timestamptz '2024-01-01' + i * interval '20 minutes', i
           FROM generate_series(0, 59) i;
         CREATE SCHEMA \"Odd Schema\";
         CREATE TABLE \"Odd Schema\".\"select\" (id int, note text);
         INSERT INTO \"Odd Schema\".\"select\" VALUES (1, 'a'), (2, 'b');
         CREATE TABLE parent (id int);
         CREATE TABLE child () INHERITS (parent);
         INSERT INTO parent VALUES (1); INSERT INTO child VALUES (2);",
    );
    let without_statistics =
        "SELECT coalesce(string_agg(format('%I.%I', n.nspname, c.relname), ', ' ORDER BY 1), '')
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r'
           AND n.nspname IN ('_timescaledb_internal', 'public', 'Odd Schema')
           AND c.relname <> 'readings'
           AND (n.nspname <> '_timescaledb_internal' OR c.relname LIKE '\\_hyper\\_%')
           AND NOT EXISTS (SELECT 1 FROM pg_statistic s WHERE s.starelid = c.oid)";
    let chunks = "SELECT count(*) FROM timescaledb_information.chunks";
    for (db, verify, result) in [
        (
            "e2e_stats_count",
            "count",
            "result: success, every unit verified by row count\n",
        ),
        (
            "e2e_stats_off",
            "off",
            "result: success, not verified (--verify off)\n",
        ),
    ] {
        tgt.create_cloud_like_database(db);
        let (source, target) = conninfos(src, "e2e_stats_src", tgt, db);
        let run = tsxfer(&[
            "--source", &source, "--target", &target, "--jobs", "2", "--verify", verify,
        ]);
        assert_eq!(run.code, 0, "{run:?}");
        // What the run checked is what its result says.
        assert!(run.stdout.contains(result), "{run:?}");
        assert_eq!(tgt.psql(db, chunks), "20", "--verify {verify}");
        assert_eq!(tgt.psql(db, without_statistics), "", "--verify {verify}");
        // The parent's statistics over its children too.
        assert_ne!(
            tgt.psql(
                db,
                "SELECT count(*) FROM pg_stats WHERE tablename = 'parent' AND inherited"
            ),
            "0",
            "--verify {verify}"
        );
    }
}

/// A target database with a short `lock_timeout` (managed services set one to protect
/// their users) does not fail the run: tsxfer's sessions wait for each other on purpose
/// (chunk tables of one hypertable are made over several sessions, each locking the
/// parent), as pg_dump's and pg_restore's do, which set it to 0 for themselves.
#[test]
fn a_target_with_a_short_lock_timeout_is_migrated_whole() {
    let (src, tgt) = cluster::clusters();
    src.create_database("e2e_lockwait_src");
    src.psql(
        "e2e_lockwait_src",
        "CREATE EXTENSION timescaledb;
         CREATE TABLE m (t timestamptz NOT NULL, v int);
         SELECT create_hypertable('m', 't', chunk_time_interval => interval '1 hour');
         CREATE INDEX ON m (v, t);
         INSERT INTO m SELECT timestamptz '2024-01-01' + i * interval '30 minutes', i
           FROM generate_series(0, 799) i;",
    );
    tgt.create_cloud_like_database("e2e_lockwait_tgt");
    tgt.psql(
        "postgres",
        "ALTER DATABASE e2e_lockwait_tgt SET lock_timeout = '1ms'",
    );
    let (source, target) = conninfos(src, "e2e_lockwait_src", tgt, "e2e_lockwait_tgt");
    let run = tsxfer(&["--source", &source, "--target", &target, "--jobs", "2"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        count_rows(tgt, "e2e_lockwait_tgt", "public.m"),
        count_rows(src, "e2e_lockwait_src", "public.m")
    );
    // The database's own setting is left as the DBA made it.
    assert_eq!(
        tgt.psql("e2e_lockwait_tgt", "SELECT current_setting('lock_timeout')"),
        "1ms"
    );
}

#[test]
fn plan_prints_every_unit_and_changes_nothing() {
    let (src, tgt) = cluster::clusters();
    load_source(src, "e2e_plan_src", true);
    tgt.create_cloud_like_database("e2e_plan_tgt");
    let (source, target) = conninfos(src, "e2e_plan_src", tgt, "e2e_plan_tgt");
    let run = tsxfer(&["plan", "--source", &source, "--target", &target]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("preflight: ok"), "{run:?}");
    assert!(run.stdout.contains("\"tsx_owner\""), "{run:?}");
    assert!(run.stdout.contains("_hyper_"), "{run:?}");
    let tables = tgt.psql(
        "e2e_plan_tgt",
        "SELECT count(*) FROM pg_tables WHERE schemaname NOT LIKE '\\_timescaledb%'
           AND schemaname NOT IN ('pg_catalog', 'information_schema', 'timescaledb_information', 'timescaledb_experimental')",
    );
    assert_eq!(tables, "0", "plan wrote to the target");
}

#[test]
fn refuses_a_target_that_is_not_empty_and_touches_nothing() {
    let (src, tgt) = cluster::clusters();
    src.create_database("e2e_full_src");
    src.psql(
        "e2e_full_src",
        "CREATE TABLE t (a int); INSERT INTO t VALUES (1)",
    );
    tgt.create_cloud_like_database("e2e_full_tgt");
    tgt.psql(
        "e2e_full_tgt",
        "CREATE TABLE already_here (a int); INSERT INTO already_here VALUES (42)",
    );
    let (source, target) = conninfos(src, "e2e_full_src", tgt, "e2e_full_tgt");
    let run = tsxfer(&["--source", &source, "--target", &target]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("is not empty"), "{run:?}");
    assert!(run.stderr.contains("already_here"), "{run:?}");
    assert_eq!(
        tgt.psql(
            "e2e_full_tgt",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "1"
    );
}

#[test]
fn bad_connections_get_one_clear_line_and_no_secret() {
    let (src, tgt) = cluster::clusters();
    src.create_database("e2e_bad_src");
    tgt.create_cloud_like_database("e2e_bad_tgt");
    let source = src.superuser_conninfo("e2e_bad_src");
    let secret = "Wr0ng-s3cret!";
    let cases: Vec<(String, String, i32, &str)> = vec![
        (
            source.clone(),
            tgt.conninfo(cluster::TSDBADMIN, secret, "e2e_bad_tgt"),
            3,
            "password authentication failed",
        ),
        (
            source.clone(),
            tgt.tcp_uri(cluster::TSDBADMIN, secret, "no_such_database"),
            3,
            "cannot connect to the target",
        ),
        (
            source.clone(),
            format!("postgresql://u:{secret}@127.0.0.1:1/db"),
            3,
            "cannot connect to the target",
        ),
        (
            source.clone(),
            format!("host=/tmp password={secret} port=notaport"),
            2,
            "malformed",
        ),
    ];
    for (s, t, code, needle) in cases {
        // An unreachable server is waited for (README, "Interruptions"): not here.
        let run = tsxfer(&["--source", &s, "--target", &t, "--retries", "0"]);
        assert_eq!(run.code, code, "{run:?}");
        assert!(run.stderr.contains(needle), "expected {needle:?}: {run:?}");
        assert!(!run.all().contains(secret), "secret leaked: {run:?}");
        let last = run.stderr.lines().last().unwrap_or("");
        assert!(last.starts_with("tsxfer: "), "{run:?}");
    }
    let run = tsxfer(&["--source", &source, "--target", &source, "--jobs", "0"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--jobs must be at least 1"), "{run:?}");
}

#[test]
fn many_chunks_migrate_where_parallel_pg_dump_runs_out_of_locks() {
    // The default max_locks_per_transaction (64) with few backends: 64 x 18 = 1152 lock
    // slots. What DESIGN.md saw with 6000 chunks on a default server happens here with
    // 1200: one pg_dump fits, `pg_dump -Fd -j2` runs out of shared memory.
    let settings = [
        "max_connections = 8",
        "autovacuum_max_workers = 1",
        "max_worker_processes = 8",
        "max_wal_senders = 0",
        "timescaledb.max_background_workers = 2",
    ];
    let src = Cluster::start_with("locks-source", &settings);
    let tgt = Cluster::start_with("locks-target", &settings);
    src.create_database("locks_src");
    src.psql(
        "locks_src",
        "CREATE EXTENSION timescaledb;
         CREATE TABLE m (t timestamptz NOT NULL, v int);
         SELECT create_hypertable('m', 't', chunk_time_interval => interval '1 hour');
         CREATE INDEX ON m (v, t);
         CREATE PROCEDURE fill() LANGUAGE plpgsql AS $$
         BEGIN
           FOR h IN 0..1199 LOOP
             INSERT INTO m SELECT timestamptz '2024-01-01' + h * interval '1 hour' + s * interval '1 second', s
             FROM generate_series(1, 3) s;
             COMMIT;
           END LOOP;
         END $$;
         CALL fill();",
    );
    assert_eq!(
        src.psql("locks_src", "SELECT count(*) FROM show_chunks('m')"),
        "1200"
    );
    // pg_dump -Fd -j2 holds every table's lock twice (leader and workers): it needs more
    // than this lock table holds (seen failing with "out of shared memory"; not asserted
    // here because how far the lock table overflows into spare shared memory varies).
    let slots: i64 = src
        .psql(
            "locks_src",
            "SELECT current_setting('max_locks_per_transaction')::int
                    * (current_setting('max_connections')::int
                       + current_setting('autovacuum_max_workers')::int + 1
                       + current_setting('max_worker_processes')::int
                       + current_setting('max_wal_senders')::int)",
        )
        .parse()
        .unwrap();
    assert!(
        slots < 2 * 1200,
        "the lock table is too large for this test: {slots}"
    );
    tgt.create_cloud_like_database("locks_tgt");
    let (source, target) = conninfos(&src, "locks_src", &tgt, "locks_tgt");
    let run = tsxfer(&["--source", &source, "--target", &target, "-j", "2"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        tgt.psql("locks_tgt", "SELECT count(*) FROM show_chunks('m')"),
        "1200"
    );
    // Read through the hypertable a window at a time: a query on all of it would lock
    // every chunk and index at once, more than this server holds.
    for day in (0..50).step_by(10) {
        let window = format!(
            "m WHERE t >= timestamptz '2024-01-01' + interval '{day} days' \
             AND t < timestamptz '2024-01-01' + interval '{} days'",
            day + 10
        );
        assert_eq!(
            count_rows(&src, "locks_src", &window),
            count_rows(&tgt, "locks_tgt", &window),
            "{window}"
        );
    }
    let chunk_indexes =
        "SELECT count(*) FROM pg_indexes WHERE schemaname = '_timescaledb_internal'";
    assert_eq!(
        src.psql("locks_src", chunk_indexes),
        tgt.psql("locks_tgt", chunk_indexes)
    );
    src.stop();
    tgt.stop();
}

#[test]
fn compressed_chunks_with_all_null_columns_arrive_compressed_and_whole() {
    let (src, tgt) = cluster::clusters();
    if !cluster::full_timescaledb(src) {
        crate::skip(
            "compressed batches with all-NULL columns not tested: TimescaleDB here is the Apache-only build (license apache)",
        );
        return;
    }
    src.create_database("e2e_nulls_src");
    src.psql_file("e2e_nulls_src", &fixture("roles.sql"));
    src.psql_file("e2e_nulls_src", &fixture("timescale.sql"));
    src.psql_file("e2e_nulls_src", &fixture("compression_null_batches.sql"));
    tgt.create_cloud_like_database("e2e_nulls_tgt");
    let (source, target) = conninfos(src, "e2e_nulls_src", tgt, "e2e_nulls_tgt");
    let run = tsxfer(&["--source", &source, "--target", &target, "-j", "2"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("placeholder sent as NULL"), "{run:?}");
    let whole = "SELECT count(*) || ' ' || md5(string_agg(md5(s::text), '' ORDER BY md5(s::text)))
                 FROM tsx_ts.sparse s";
    assert_eq!(
        src.psql("e2e_nulls_src", whole),
        tgt.psql("e2e_nulls_tgt", whole)
    );
    let compressed = "SELECT count(*) FROM timescaledb_information.chunks
                      WHERE hypertable_name = 'sparse' AND is_compressed";
    let n = src.psql("e2e_nulls_src", compressed);
    assert_ne!(n, "0", "the fixture compressed nothing");
    assert_eq!(n, tgt.psql("e2e_nulls_tgt", compressed));
}

#[test]
fn a_pg_dump_older_than_the_source_is_refused_before_anything_is_written() {
    let (src, tgt) = cluster::clusters();
    src.create_database("e2e_oldtools_src");
    tgt.create_cloud_like_database("e2e_oldtools_tgt");
    let bin = tempfile::tempdir().unwrap();
    for tool in ["pg_dump", "pg_restore"] {
        let path = bin.path().join(tool);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho '{tool} (PostgreSQL) 14.11'\n"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    let (source, target) = conninfos(src, "e2e_oldtools_src", tgt, "e2e_oldtools_tgt");
    let run = tsxfer(&[
        "--source",
        &source,
        "--target",
        &target,
        "--pg-bin-dir",
        bin.path().to_str().unwrap(),
    ]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr.contains("older than the source server"),
        "{run:?}"
    );
    assert_eq!(
        tgt.psql(
            "e2e_oldtools_tgt",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "0"
    );
    assert_eq!(
        tgt.psql(
            "e2e_oldtools_tgt",
            "SELECT current_setting('timescaledb.restoring')"
        ),
        "off"
    );
}

#[test]
fn passwords_come_from_pgpass_and_the_pg_environment() {
    let (src, tgt) = cluster::clusters();
    src.create_database("e2e_env_src");
    tgt.create_cloud_like_database("e2e_env_tgt");
    let source = src.superuser_conninfo("e2e_env_src");
    let no_password = format!(
        "host={} port={} user={} dbname=e2e_env_tgt",
        tgt.socket_dir.display(),
        tgt.port,
        cluster::TSDBADMIN
    );
    let home = tempfile::tempdir().unwrap();
    let pgpass = home.path().join(".pgpass");
    let escaped = TSDBADMIN_PASSWORD.replace('\\', "\\\\").replace(':', "\\:");
    std::fs::write(
        &pgpass,
        format!(
            "# a comment\n*:{}:e2e_env_tgt:{}:{escaped}\n",
            tgt.port,
            cluster::TSDBADMIN
        ),
    )
    .unwrap();
    let plan = |extra_env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tsxfer"));
        cmd.args(["plan", "--source", &source, "--target", &no_password]);
        for var in ["SOURCE", "TARGET", "PGPASSWORD", "PGPASSFILE"] {
            cmd.env_remove(var);
        }
        cmd.envs(extra_env.iter().copied());
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let home_str = home.path().to_str().unwrap();
    std::fs::set_permissions(&pgpass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    assert_eq!(
        plan(&[("HOME", home_str)]).0,
        Some(0),
        ".pgpass was not used"
    );
    // Like libpq, a password file others can read is ignored.
    std::fs::set_permissions(&pgpass, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (code, stderr) = plan(&[("HOME", home_str)]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("readable by others"), "{stderr}");
    let empty = tempfile::tempdir().unwrap();
    let (code, stderr) = plan(&[
        ("HOME", empty.path().to_str().unwrap()),
        ("PGPASSWORD", TSDBADMIN_PASSWORD),
    ]);
    assert_eq!(code, Some(0), "PGPASSWORD was not used: {stderr}");
    // SOURCE and TARGET stand for the flags.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tsxfer"))
        .arg("plan")
        .env("SOURCE", &source)
        .env(
            "TARGET",
            tgt.conninfo(cluster::TSDBADMIN, TSDBADMIN_PASSWORD, "e2e_env_tgt"),
        )
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Through pgbouncer, sessions are the pooler's (opened before TimescaleDB's restoring
/// mode was set) and pg_restore's settings never arrive: whether the pooler refuses
/// settings given at connection or drops them, the run is refused before anything is
/// written.
#[test]
fn a_target_behind_a_connection_pooler_is_refused_before_anything_is_written() {
    let (src, tgt) = cluster::clusters();
    src.create_database("e2e_pool_src");
    src.psql(
        "e2e_pool_src",
        "CREATE TABLE t (a int); INSERT INTO t VALUES (1)",
    );
    tgt.create_cloud_like_database("e2e_pool_tgt");
    let source = src.superuser_conninfo("e2e_pool_src");
    for ignore_options in [false, true] {
        let pooler = cluster::Pooler::in_front_of(tgt, ignore_options);
        let target = pooler.conninfo("e2e_pool_tgt");
        let run = tsxfer(&["--source", &source, "--target", &target]);
        crate::sources::assert_refused(&run, 3, "connection pooler");
        assert_eq!(
            tgt.psql(
                "e2e_pool_tgt",
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname IN ('public', 'tsxfer')"
            ),
            "0",
            "the run wrote to the target (ignore_options: {ignore_options})"
        );
    }
}
