//! Sources and targets as they come: plain PostgreSQL turned into hypertables, a source
//! where tsxfer is not a superuser, and every kind of bad input.

use crate::cluster::{self, TSDBADMIN, TSDBADMIN_PASSWORD};
use crate::compare::{compare_databases, count_rows};
use crate::{Run, conninfos, fixture, tsxfer};

/// The target's tables outside TimescaleDB's own schemas: a refused run must leave none.
fn target_tables(db: &str) -> String {
    let (_, tgt) = cluster::clusters();
    tgt.psql(
        db,
        "SELECT count(*) FROM pg_tables WHERE schemaname NOT LIKE '\\_timescaledb%'
           AND schemaname NOT IN ('pg_catalog', 'information_schema', 'timescaledb_information', 'timescaledb_experimental')",
    )
}

pub fn assert_refused(run: &Run, code: i32, needle: &str) {
    assert_eq!(run.code, code, "{run:?}");
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("tsxfer: "), "{run:?}");
    assert!(
        last.contains(needle),
        "expected {needle:?} in the last line: {run:?}"
    );
    assert!(!run.all().contains(TSDBADMIN_PASSWORD), "{run:?}");
    assert!(!run.all().contains("panicked"), "{run:?}");
}

#[test]
fn plain_tables_become_hypertables_on_the_target() {
    let (src, tgt) = cluster::clusters();
    src.create_database("src_conv_src");
    src.psql(
        "src_conv_src",
        "CREATE TABLE readings (time timestamptz NOT NULL, sensor int, value double precision,
                                PRIMARY KEY (sensor, time));
         CREATE INDEX ON readings (value);
         INSERT INTO readings SELECT timestamptz '2024-01-01' + i * interval '10 minutes', i % 7, i * 0.5
         FROM generate_series(1, 20000) i;
         CREATE TABLE counters (id bigint NOT NULL, n int);
         INSERT INTO counters SELECT i, i FROM generate_series(1, 5000) i;
         CREATE TABLE plain (id int PRIMARY KEY);
         INSERT INTO plain SELECT generate_series(1, 10);",
    );
    tgt.create_cloud_like_database("src_conv_tgt");
    let (source, target) = conninfos(src, "src_conv_src", tgt, "src_conv_tgt");
    let run = tsxfer(&[
        "--source",
        &source,
        "--target",
        &target,
        "--hypertable",
        "public.readings:time:1 week",
        "--hypertable",
        "counters:id:1000",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("became a hypertable"), "{run:?}");
    let hypertables = tgt.psql(
        "src_conv_tgt",
        "SELECT string_agg(hypertable_name || ':' || num_chunks, ',' ORDER BY hypertable_name)
         FROM timescaledb_information.hypertables",
    );
    assert_eq!(hypertables, "counters:6,readings:21");
    for table in ["readings", "counters", "plain"] {
        assert_eq!(
            count_rows(src, "src_conv_src", table),
            count_rows(tgt, "src_conv_tgt", table),
            "{table}"
        );
    }
    let pk =
        "SELECT count(*) FROM pg_indexes WHERE tablename = 'readings' AND indexdef LIKE '%UNIQUE%'";
    assert_eq!(tgt.psql("src_conv_tgt", pk), "1");
}

#[test]
fn hypertable_requests_are_checked_before_anything_is_written() {
    let (src, tgt) = cluster::clusters();
    src.create_database("src_badconv_src");
    src.psql(
        "src_badconv_src",
        "CREATE TABLE m (time timestamptz NOT NULL, label text, n int, id int PRIMARY KEY);
         INSERT INTO m VALUES ('2024-01-01', 'a', 1, 1);",
    );
    tgt.create_cloud_like_database("src_badconv_tgt");
    let (source, target) = conninfos(src, "src_badconv_src", tgt, "src_badconv_tgt");
    let cases = [
        ("m:nope", 3, "has no column \"nope\""),
        ("m:label", 3, "must be a timestamp, a date or an integer"),
        ("m:n", 3, "give the chunk interval"),
        ("missing:time", 3, "no such table"),
        ("m:time", 3, "does not include \"time\""),
        ("m", 2, "no time column given"),
    ];
    for (spec, code, needle) in cases {
        let run = tsxfer(&[
            "--source",
            &source,
            "--target",
            &target,
            "--hypertable",
            spec,
        ]);
        assert_refused(&run, code, needle);
        assert_eq!(
            target_tables("src_badconv_tgt"),
            "0",
            "{spec} wrote to the target"
        );
    }
}

#[test]
fn a_source_where_tsxfer_is_not_a_superuser_migrates_and_lists_passwords_to_set() {
    let (src, tgt) = cluster::clusters();
    src.create_database("src_rds_src");
    src.psql_file("src_rds_src", &fixture("roles.sql"));
    src.psql(
        "src_rds_src",
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 1000) i;
         GRANT SELECT ON t TO tsx_reader;",
    );
    src.psql(
        "postgres",
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_like_admin') THEN
             CREATE ROLE rds_like_admin LOGIN PASSWORD 'rds-pw' IN ROLE pg_read_all_data;
           END IF;
         END $$;",
    );
    tgt.create_cloud_like_database("src_rds_tgt");
    tgt.psql("src_rds_tgt", "DROP EXTENSION timescaledb");
    let source = src.conninfo("rds_like_admin", "rds-pw", "src_rds_src");
    let target = tgt.conninfo(TSDBADMIN, TSDBADMIN_PASSWORD, "src_rds_tgt");
    let run = tsxfer(&["--source", &source, "--target", &target]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("is not a superuser"), "{run:?}");
    assert!(
        run.stdout
            .contains("login roles created without a password")
            || run.stdout.contains("already on the target"),
        "{run:?}"
    );
    assert!(!run.all().contains("rds-pw"), "{run:?}");
    let diffs: Vec<String> = compare_databases(src, "src_rds_src", tgt, "src_rds_tgt")
        .into_iter()
        .filter(|d| !d.contains("rds_like_admin"))
        .collect();
    assert!(
        diffs.is_empty(),
        "source and target differ:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn bad_input_gets_one_line_and_leaves_the_target_as_it_was() {
    let (src, tgt) = cluster::clusters();
    src.create_database("src_bad_src");
    src.psql("src_bad_src", "CREATE TABLE t (id int)");
    tgt.create_cloud_like_database("src_bad_tgt");
    let (source, target) = conninfos(src, "src_bad_src", tgt, "src_bad_tgt");
    // A database that does not exist, with the right password.
    let run = tsxfer(&[
        "--source",
        &source,
        "--target",
        &tgt.conninfo(TSDBADMIN, TSDBADMIN_PASSWORD, "no_such_db"),
    ]);
    assert_refused(&run, 3, "does not exist");
    // A target role without CREATE on the database.
    tgt.psql(
        "postgres",
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'nocreate_login') THEN
             CREATE ROLE nocreate_login LOGIN PASSWORD 'nc-pw';
           END IF;
         END $$;",
    );
    let run = tsxfer(&[
        "--source",
        &source,
        "--target",
        &tgt.conninfo("nocreate_login", "nc-pw", "src_bad_tgt"),
    ]);
    assert_refused(&run, 3, "no CREATE privilege");
    assert!(!run.all().contains("nc-pw"), "{run:?}");
    // Flags that make no sense.
    for args in [
        vec!["--jobs", "0"],
        vec!["--buffer-size", "lots"],
        vec!["--restart", "--allow-inconsistent"],
    ] {
        let mut all = vec!["--source", &source, "--target", &target];
        all.extend(args.iter());
        let run = tsxfer(&all);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(!run.all().contains(TSDBADMIN_PASSWORD), "{run:?}");
    }
    assert_eq!(target_tables("src_bad_tgt"), "0");
}

#[test]
fn filters_pick_what_is_migrated_and_a_filter_matching_nothing_is_refused() {
    let (src, tgt) = cluster::clusters();
    src.create_database("src_filt_src");
    src.psql(
        "src_filt_src",
        "CREATE SCHEMA app; CREATE SCHEMA scratch;
         CREATE TABLE app.orders (id int PRIMARY KEY);
         INSERT INTO app.orders SELECT generate_series(1, 100);
         CREATE TABLE app.audit (id int);
         INSERT INTO app.audit SELECT generate_series(1, 50);
         CREATE TABLE app.tmp_x (id int);
         INSERT INTO app.tmp_x SELECT generate_series(1, 5);
         CREATE TABLE scratch.junk (id int);
         INSERT INTO scratch.junk SELECT generate_series(1, 5);
         CREATE TABLE public.other (id int);",
    );
    tgt.create_cloud_like_database("src_filt_tgt");
    let (source, target) = conninfos(src, "src_filt_src", tgt, "src_filt_tgt");
    for (args, code, needle) in [
        (vec!["-t", "app.nothing_*"], 3, "no matching tables"),
        (vec!["-T", "app.nothing_*"], 3, "matches nothing"),
        (vec!["-N", "nothing"], 3, "matches nothing"),
    ] {
        let mut all = vec!["--source", source.as_str(), "--target", target.as_str()];
        all.extend(args.iter());
        assert_refused(&tsxfer(&all), code, needle);
        assert_eq!(
            target_tables("src_filt_tgt"),
            "0",
            "{args:?} wrote to the target"
        );
    }
    let run = tsxfer(&[
        "--source",
        &source,
        "--target",
        &target,
        "-n",
        "app",
        "-T",
        "app.tmp_*",
        "--exclude-table-data",
        "app.audit",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let tables = tgt.psql(
        "src_filt_tgt",
        "SELECT string_agg(schemaname || '.' || tablename, ',' ORDER BY 1) FROM pg_tables
         WHERE schemaname IN ('app', 'scratch', 'public')",
    );
    assert_eq!(tables, "app.audit,app.orders");
    assert_eq!(count_rows(tgt, "src_filt_tgt", "app.orders"), 100);
    assert_eq!(count_rows(tgt, "src_filt_tgt", "app.audit"), 0);
}

#[test]
fn a_filter_that_leaves_out_a_hypertable_is_refused() {
    let (src, tgt) = cluster::clusters();
    src.create_database("src_filtts_src");
    src.psql(
        "src_filtts_src",
        "CREATE EXTENSION timescaledb;
         CREATE TABLE m (t timestamptz NOT NULL, v int);
         SELECT create_hypertable('m', 't');
         CREATE TABLE keep (id int);",
    );
    tgt.create_cloud_like_database("src_filtts_tgt");
    let (source, target) = conninfos(src, "src_filtts_src", tgt, "src_filtts_tgt");
    let run = tsxfer(&["--source", &source, "--target", &target, "-T", "public.m"]);
    assert_refused(&run, 3, "leave out hypertables");
    assert_eq!(target_tables("src_filtts_tgt"), "0");
}

#[test]
fn a_config_file_and_dry_run() {
    let (src, tgt) = cluster::clusters();
    src.create_database("src_cfg_src");
    src.psql(
        "src_cfg_src",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 42);",
    );
    tgt.create_cloud_like_database("src_cfg_tgt");
    let (source, target) = conninfos(src, "src_cfg_src", tgt, "src_cfg_tgt");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tsxfer.toml");
    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    std::fs::write(
        &config,
        format!(
            "source = \"{}\"\ntarget = \"{}\"\njobs = 2\nmetrics_addr = \"off\"\n",
            quote(&source),
            quote(&target)
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let dry = tsxfer(&["--config", config, "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(dry.stdout.contains("\"public\".\"t\""), "{dry:?}");
    assert_eq!(
        target_tables("src_cfg_tgt"),
        "0",
        "--dry-run wrote to the target"
    );
    let run = tsxfer(&["--config", config]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(count_rows(tgt, "src_cfg_tgt", "t"), 42);
    assert!(!run.all().contains(TSDBADMIN_PASSWORD), "{run:?}");
}

#[test]
fn a_multi_node_source_is_refused() {
    // TimescaleDB 2.19 no longer has multi-node; its catalog is reshaped here the way a
    // multi-node source's (TimescaleDB before 2.14) looks to tsxfer's check.
    let (src, tgt) = cluster::clusters();
    src.create_database("src_mn_src");
    src.psql(
        "src_mn_src",
        "CREATE EXTENSION timescaledb;
         CREATE TABLE m (t timestamptz NOT NULL, v int);
         SELECT create_hypertable('m', 't');
         CREATE TABLE _timescaledb_catalog.hypertable_data_node (hypertable_id int, node_name name);
         ALTER TABLE _timescaledb_catalog.hypertable ADD COLUMN replication_factor smallint;
         UPDATE _timescaledb_catalog.hypertable SET replication_factor = 1;",
    );
    tgt.create_cloud_like_database("src_mn_tgt");
    let (source, target) = conninfos(src, "src_mn_src", tgt, "src_mn_tgt");
    let run = tsxfer(&["--source", &source, "--target", &target]);
    assert_refused(&run, 3, "multi-node");
    assert_eq!(target_tables("src_mn_tgt"), "0");
}
