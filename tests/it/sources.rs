//! Sources and targets as they come: plain PostgreSQL turned into hypertables, a source
//! where tsxfer is not a superuser, and every kind of bad input.

use std::collections::BTreeMap;

use crate::cluster::{self, Cluster, TSDBADMIN, TSDBADMIN_PASSWORD, quote_literal};
use crate::compare::unavoidable;
use crate::compare::{compare_databases, count_rows, row_hash_sql};
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
        // readings in parts, loaded by four streams at once into one hypertable whose
        // chunks they create as they go.
        "--jobs",
        "4",
        "--split-tables-larger-than",
        "64KiB",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("became a hypertable"), "{run:?}");
    assert!(run.stderr.contains("are copied in"), "{run:?}");
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
    // The indexes of the source, and not TimescaleDB's default time index besides.
    let indexes = "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes
                   WHERE schemaname = 'public' AND tablename IN ('readings', 'counters')";
    assert_eq!(
        tgt.psql("src_conv_tgt", indexes),
        src.psql("src_conv_src", indexes)
    );
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
    // Like RDS's master user: it may read the tables, not pg_authid (a member of
    // pg_read_all_data could read the password hashes there).
    src.psql(
        "postgres",
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_like_admin') THEN
             CREATE ROLE rds_like_admin LOGIN PASSWORD 'rds-pw';
           END IF;
         END $$;",
    );
    src.psql(
        "src_rds_src",
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO rds_like_admin",
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
         CREATE TABLE public.other (id int);
         CREATE SCHEMA desk; CREATE SEQUENCE desk.ticket_no;
         CREATE TYPE desk.mood AS ENUM ('calm', 'busy');
         CREATE TABLE desk.tickets (id serial, no int DEFAULT nextval('desk.ticket_no'),
                                    mood desk.mood, moods desk.mood[],
                                    order_id int REFERENCES app.orders);
         CREATE FUNCTION desk.stamp() RETURNS trigger LANGUAGE plpgsql AS $f$BEGIN RETURN NEW; END$f$;
         CREATE TRIGGER stamped BEFORE INSERT ON desk.tickets FOR EACH ROW EXECUTE FUNCTION desk.stamp();",
    );
    tgt.create_cloud_like_database("src_filt_tgt");
    let (source, target) = conninfos(src, "src_filt_src", tgt, "src_filt_tgt");
    for (args, code, needle) in [
        (vec!["-t", "app.nothing_*"], 3, "matches nothing"),
        (vec!["-T", "app.nothing_*"], 3, "matches nothing"),
        (vec!["-N", "nothing"], 3, "matches nothing"),
        // With -t pg_dump makes no schema: one the target lacks is named with the
        // statement that makes it, before anything is written.
        (
            vec!["-t", "app.orders", "-t", "scratch.*", "-T", "scratch.junk"],
            3,
            "the target lacks what the tables asked use: schema app; make it there first (CREATE SCHEMA app;)",
        ),
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

    // Once the schema is there, -t takes the table into it.
    tgt.create_cloud_like_database("src_filt_t_tgt");
    let (_, target) = conninfos(src, "src_filt_src", tgt, "src_filt_t_tgt");
    let plan = tsxfer(&[
        "plan",
        "--source",
        &source,
        "--target",
        &target,
        "-t",
        "app.orders",
    ]);
    assert_eq!(plan.code, 3, "{plan:?}");
    assert!(plan.stdout.contains("(CREATE SCHEMA app;)"), "{plan:?}");
    tgt.psql(
        "src_filt_t_tgt",
        &format!("CREATE SCHEMA app AUTHORIZATION {TSDBADMIN}"),
    );
    let run = tsxfer(&["--source", &source, "--target", &target, "-t", "app.orders"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(count_rows(tgt, "src_filt_t_tgt", "app.orders"), 100);
    assert_eq!(target_tables("src_filt_t_tgt"), "1");

    // Nor does it make the sequence a default calls, the type of a column, the table a
    // foreign key references or a trigger's function, unless the table owns it (a
    // serial's sequence comes with its table).
    tgt.create_cloud_like_database("src_filt_d_tgt");
    let (_, target) = conninfos(src, "src_filt_src", tgt, "src_filt_d_tgt");
    tgt.psql(
        "src_filt_d_tgt",
        &format!("CREATE SCHEMA desk AUTHORIZATION {TSDBADMIN}"),
    );
    let run = tsxfer(&[
        "--source",
        &source,
        "--target",
        &target,
        "-t",
        "desk.tickets",
    ]);
    assert_refused(
        &run,
        3,
        "function desk.stamp() (used by desk.tickets), sequence desk.ticket_no (used by desk.tickets), table app.orders (used by desk.tickets), type desk.mood (used by desk.tickets); make them there first, ask for those tables too, or take whole schemas with --schema, and run again",
    );
    assert!(!run.stderr.contains("tickets_id_seq"), "{run:?}");
    assert_eq!(target_tables("src_filt_d_tgt"), "0");

    // A dump made with -t carries the list, and its restore checks it the same way.
    let dir = crate::offline::dump_dir("desk");
    let d = dir.to_str().unwrap();
    let dump = tsxfer(&[
        "dump",
        "--source",
        &source,
        "--dir",
        d,
        "-t",
        "desk.tickets",
    ]);
    assert_eq!(dump.code, 0, "{dump:?}");
    let run = crate::offline::restore(d, &target);
    assert_refused(&run, 3, "type desk.mood (used by desk.tickets)");
    assert_eq!(target_tables("src_filt_d_tgt"), "0");
    let _ = std::fs::remove_dir_all(&dir);
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

// --- filters that leave out some of a TimescaleDB source's hypertables -------------------

/// A source database with the TimescaleDB fixtures only (roles, hypertables, and with the
/// full build compression and continuous aggregates). Returns whether the full build's
/// fixture was loaded.
fn load_timescale_source(src: &Cluster, db: &str) -> bool {
    src.create_database(db);
    src.psql_file(db, &fixture("roles.sql"));
    src.psql_file(db, &fixture("timescale.sql"));
    if cluster::full_timescaledb(src) {
        src.psql_file(db, &fixture("compression.sql"));
        true
    } else {
        crate::skip(
            "filters over compressed chunks and continuous aggregates not tested: TimescaleDB here is the Apache-only build (license apache)",
        );
        false
    }
}

/// An SQL array of text literals.
fn text_array(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| quote_literal(s)).collect();
    format!("ARRAY[{}]::text[]", items.join(", "))
}

/// What hypertables and continuous aggregates leave in TimescaleDB's catalog, read on the
/// source: their hypertable ids (compressed and materialization hypertables included),
/// dimension and chunk ids, and the names (`format('%I.%I')`) of their relations and
/// those relations' indexes.
struct Footprint {
    hypertables: String,
    dimensions: String,
    chunks: String,
    names: Vec<String>,
}

fn footprint(src: &Cluster, db: &str, left_out: &[&str]) -> Footprint {
    let named: Vec<String> = left_out.iter().map(|s| s.to_string()).collect();
    let ids_cte = format!(
        "WITH named AS (
             SELECT h.id FROM _timescaledb_catalog.hypertable h
             WHERE format('%I.%I', h.schema_name, h.table_name) = ANY ({names})
             UNION
             SELECT a.mat_hypertable_id FROM _timescaledb_catalog.continuous_agg a
             WHERE format('%I.%I', a.user_view_schema, a.user_view_name) = ANY ({names})),
         ids AS (
             SELECT id FROM named
             UNION
             SELECT h.compressed_hypertable_id FROM _timescaledb_catalog.hypertable h
             WHERE h.id IN (SELECT id FROM named) AND h.compressed_hypertable_id IS NOT NULL)",
        names = text_array(&named)
    );
    let ids = src.psql(
        db,
        &format!(
            "{ids_cte}
             SELECT (SELECT coalesce(array_agg(id ORDER BY id), '{{}}') FROM ids)::text || '|'
                 || (SELECT coalesce(array_agg(d.id ORDER BY d.id), '{{}}') FROM _timescaledb_catalog.dimension d
                     WHERE d.hypertable_id IN (SELECT id FROM ids))::text || '|'
                 || (SELECT coalesce(array_agg(c.id ORDER BY c.id), '{{}}') FROM _timescaledb_catalog.chunk c
                     WHERE c.hypertable_id IN (SELECT id FROM ids))::text"
        ),
    );
    let parts: Vec<&str> = ids.split('|').collect();
    let names = src.psql(
        db,
        &format!(
            "{ids_cte},
             relations AS (
                 SELECT format('%I.%I', schema_name, table_name) AS name
                 FROM _timescaledb_catalog.hypertable WHERE id IN (SELECT id FROM ids)
                 UNION SELECT format('%I.%I', schema_name, table_name)
                 FROM _timescaledb_catalog.chunk WHERE hypertable_id IN (SELECT id FROM ids)
                 UNION SELECT format('%I.%I', v.s, v.n) FROM _timescaledb_catalog.continuous_agg a
                 CROSS JOIN LATERAL (VALUES (a.user_view_schema, a.user_view_name),
                                            (a.partial_view_schema, a.partial_view_name),
                                            (a.direct_view_schema, a.direct_view_name)) AS v (s, n)
                 WHERE a.mat_hypertable_id IN (SELECT id FROM ids))
             SELECT name FROM relations
             UNION SELECT format('%I.%I', n.nspname, i.relname) FROM pg_index x
             JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace
             JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
             WHERE format('%I.%I', tn.nspname, t.relname) IN (SELECT name FROM relations)"
        ),
    );
    Footprint {
        hypertables: format!("'{}'::int[]", parts[0]),
        dimensions: format!("'{}'::int[]", parts[1]),
        chunks: format!("'{}'::int[]", parts[2]),
        names: names.lines().map(str::to_string).collect(),
    }
}

/// Where a footprint can show (`{L}` hypertable ids, `{D}` dimension ids, `{C}` chunk ids,
/// `{N}` relation names): every catalog table of TimescaleDB 2.19 that names a
/// hypertable, jobs by column and by configuration, and relations.
const TRACES: &[(&str, &str)] = &[
    (
        "_timescaledb_catalog.hypertable",
        "id = ANY ({L}) OR compressed_hypertable_id = ANY ({L})",
    ),
    (
        "_timescaledb_catalog.tablespace",
        "hypertable_id = ANY ({L})",
    ),
    (
        "_timescaledb_catalog.dimension",
        "hypertable_id = ANY ({L}) OR id = ANY ({D})",
    ),
    (
        "_timescaledb_catalog.dimension_slice",
        "dimension_id = ANY ({D})",
    ),
    (
        "_timescaledb_catalog.chunk",
        "hypertable_id = ANY ({L}) OR id = ANY ({C}) OR compressed_chunk_id = ANY ({C})",
    ),
    (
        "_timescaledb_catalog.chunk_constraint",
        "chunk_id = ANY ({C})",
    ),
    (
        "_timescaledb_catalog.chunk_index",
        "chunk_id = ANY ({C}) OR hypertable_id = ANY ({L})",
    ),
    (
        "_timescaledb_catalog.chunk_column_stats",
        "chunk_id = ANY ({C}) OR hypertable_id = ANY ({L})",
    ),
    // regclass columns: naming a left-out relation, or one that does not exist.
    (
        "_timescaledb_catalog.compression_settings",
        "NOT EXISTS (SELECT 1 FROM pg_class x WHERE x.oid = relid)
         OR (compress_relid IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM pg_class x WHERE x.oid = compress_relid))
         OR EXISTS (SELECT 1 FROM pg_class x JOIN pg_namespace xn ON xn.oid = x.relnamespace
                    WHERE x.oid IN (relid, compress_relid)
                      AND format('%I.%I', xn.nspname, x.relname) = ANY ({N}))",
    ),
    (
        "_timescaledb_catalog.compression_chunk_size",
        "chunk_id = ANY ({C}) OR compressed_chunk_id = ANY ({C})",
    ),
    (
        "_timescaledb_catalog.continuous_agg",
        "mat_hypertable_id = ANY ({L}) OR raw_hypertable_id = ANY ({L})
         OR parent_mat_hypertable_id = ANY ({L})",
    ),
    (
        "_timescaledb_catalog.continuous_aggs_bucket_function",
        "mat_hypertable_id = ANY ({L})",
    ),
    (
        "_timescaledb_catalog.continuous_aggs_invalidation_threshold",
        "hypertable_id = ANY ({L})",
    ),
    (
        "_timescaledb_catalog.continuous_aggs_hypertable_invalidation_log",
        "hypertable_id = ANY ({L})",
    ),
    (
        "_timescaledb_catalog.continuous_aggs_materialization_invalidation_log",
        "materialization_id = ANY ({L})",
    ),
    (
        "_timescaledb_catalog.continuous_aggs_watermark",
        "mat_hypertable_id = ANY ({L})",
    ),
    (
        "_timescaledb_catalog.continuous_agg_migrate_plan",
        "mat_hypertable_id = ANY ({L})",
    ),
    (
        "_timescaledb_config.bgw_job",
        "hypertable_id = ANY ({L}) OR (config ->> 'hypertable_id')::int = ANY ({L})
         OR (config ->> 'mat_hypertable_id')::int = ANY ({L})",
    ),
    (
        "pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace",
        "format('%I.%I', n.nspname, c.relname) = ANY ({N})",
    ),
];

/// Per place in [`TRACES`], how many rows there show the footprint.
fn traces(c: &Cluster, db: &str, f: &Footprint) -> BTreeMap<String, i64> {
    let sql: Vec<String> = TRACES
        .iter()
        .map(|(from, condition)| {
            let condition = condition
                .replace("{L}", &f.hypertables)
                .replace("{D}", &f.dimensions)
                .replace("{C}", &f.chunks)
                .replace("{N}", &text_array(&f.names));
            format!(
                "SELECT {} || ' ' || count(*) FROM {from} WHERE {condition}",
                quote_literal(from)
            )
        })
        .collect();
    c.psql(db, &sql.join("\nUNION ALL\n"))
        .lines()
        .map(|l| {
            let (what, n) = l.rsplit_once(' ').expect("a place and a count");
            (what.to_string(), n.parse().expect("a count"))
        })
        .collect()
}

/// Nothing of `left_out` (hypertables and continuous aggregates, `format('%I.%I')`) is
/// left on the target, in TimescaleDB's catalog or elsewhere, where the source has it.
fn assert_no_trace(src: &Cluster, src_db: &str, tgt: &Cluster, tgt_db: &str, left_out: &[&str]) {
    let f = footprint(src, src_db, left_out);
    let on_source = traces(src, src_db, &f);
    for place in [
        "_timescaledb_catalog.hypertable",
        "_timescaledb_catalog.dimension",
        "_timescaledb_catalog.dimension_slice",
        "_timescaledb_catalog.chunk",
        "_timescaledb_catalog.chunk_constraint",
        "pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace",
    ] {
        assert!(
            on_source[place] > 0,
            "the source has nothing of {left_out:?} in {place}: {on_source:?}"
        );
    }
    let left: Vec<(String, i64)> = traces(tgt, tgt_db, &f)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    assert!(
        left.is_empty(),
        "the target still has rows of {left_out:?}: {left:?}"
    );
}

/// Whether `diff` names one of `names` as a whole name.
fn names_one_of(diff: &str, names: &[String]) -> bool {
    names.iter().any(|n| {
        diff.match_indices(n.as_str()).any(|(i, _)| {
            !diff[i + n.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
    })
}

/// Source and target are equal but for what the filters leave out: `left_out`
/// (hypertables and continuous aggregates), whatever lives in `left_out_schemas`, and
/// the continuous-aggregate triggers of hypertables whose aggregates are all left out.
fn assert_equal_but_for(
    src: &Cluster,
    src_db: &str,
    tgt: &Cluster,
    tgt_db: &str,
    left_out: &[&str],
    left_out_schemas: &[&str],
) {
    let mut names = footprint(src, src_db, left_out).names;
    names.extend(left_out_schemas.iter().map(|s| s.to_string()));
    let diffs: Vec<String> = compare_databases(src, src_db, tgt, tgt_db)
        .into_iter()
        .filter(|d| !unavoidable(d) && !names_one_of(d, &names))
        .filter(|d| !d.ends_with(".ts_cagg_invalidation_trigger: in source, missing in target"))
        .collect();
    assert!(
        diffs.is_empty(),
        "source and target differ beyond what the filters leave out:\n{}",
        diffs.join("\n")
    );
}

/// A list from one SQL query, sorted, comma-separated.
fn listing(c: &Cluster, db: &str, sql: &str) -> String {
    c.psql(
        db,
        &format!(
            "SELECT coalesce(string_agg(x, ',' ORDER BY x COLLATE \"C\"), '') FROM ({sql}) AS l (x)"
        ),
    )
}

fn chunks_of(c: &Cluster, db: &str, hypertable: &str) -> String {
    listing(
        c,
        db,
        &format!(
            "SELECT format('%I.%I', chunk_schema, chunk_name) || ' ' || is_compressed || ' '
                    || coalesce(range_start::text, range_start_integer::text, '') || ' '
                    || coalesce(range_end::text, range_end_integer::text, '')
             FROM timescaledb_information.chunks
             WHERE format('%I.%I', hypertable_schema, hypertable_name) = {}",
            quote_literal(hypertable)
        ),
    )
}

/// The target has exactly the hypertables and continuous aggregates `kept` (sorted,
/// `format('%I.%I')`), each with the source's chunks and rows.
fn assert_kept_as_on_source(
    src: &Cluster,
    src_db: &str,
    tgt: &Cluster,
    tgt_db: &str,
    hypertables: &[&str],
    aggregates: &[&str],
) {
    let hypertable_list = "SELECT format('%I.%I', hypertable_schema, hypertable_name) FROM timescaledb_information.hypertables";
    assert_eq!(listing(tgt, tgt_db, hypertable_list), hypertables.join(","));
    let aggregate_list = "SELECT format('%I.%I', view_schema, view_name) FROM timescaledb_information.continuous_aggregates";
    assert_eq!(listing(tgt, tgt_db, aggregate_list), aggregates.join(","));
    for h in hypertables {
        let chunks = chunks_of(src, src_db, h);
        assert!(!chunks.is_empty(), "{h} has no chunks on the source");
        assert_eq!(chunks_of(tgt, tgt_db, h), chunks, "chunks of {h}");
    }
    for rel in hypertables.iter().chain(aggregates) {
        let on_source = src.psql(src_db, &row_hash_sql(rel));
        assert!(!on_source.starts_with("0 "), "{rel} is empty on the source");
        assert_eq!(
            tgt.psql(tgt_db, &row_hash_sql(rel)),
            on_source,
            "rows of {rel}"
        );
    }
}

/// An INSERT into `hypertable` past its last chunk makes a new chunk, and the row is there.
fn assert_insert_makes_a_chunk(tgt: &Cluster, db: &str, hypertable: &str, insert: &str) {
    let count = format!(
        "SELECT count(*) FROM timescaledb_information.chunks WHERE format('%I.%I', hypertable_schema, hypertable_name) = {}",
        quote_literal(hypertable)
    );
    let before: i64 = tgt.psql(db, &count).parse().unwrap();
    let rows = count_rows(tgt, db, hypertable);
    tgt.psql(db, insert);
    let after: i64 = tgt.psql(db, &count).parse().unwrap();
    assert_eq!(
        after,
        before + 1,
        "{insert} made no new chunk of {hypertable}"
    );
    assert_eq!(count_rows(tgt, db, hypertable), rows + 1);
}

/// One compressed chunk of `hypertable` decompresses and compresses again, rows unchanged.
fn assert_recompresses(tgt: &Cluster, db: &str, hypertable: &str) {
    let chunk = tgt.psql(
        db,
        &format!(
            "SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks
             WHERE format('%I.%I', hypertable_schema, hypertable_name) = {} AND is_compressed
             ORDER BY range_start, range_start_integer LIMIT 1",
            quote_literal(hypertable)
        ),
    );
    assert!(
        !chunk.is_empty(),
        "{hypertable} has no compressed chunk on the target"
    );
    let compressed = |c: &str| {
        tgt.psql(
            db,
            &format!(
                "SELECT is_compressed FROM timescaledb_information.chunks
                 WHERE format('%I.%I', chunk_schema, chunk_name) = {}",
                quote_literal(c)
            ),
        )
    };
    let rows = tgt.psql(db, &row_hash_sql(hypertable));
    tgt.psql(
        db,
        &format!("SELECT decompress_chunk({})", quote_literal(&chunk)),
    );
    assert_eq!(compressed(&chunk), "f");
    tgt.psql(
        db,
        &format!("SELECT compress_chunk({})", quote_literal(&chunk)),
    );
    assert_eq!(compressed(&chunk), "t");
    assert_eq!(
        tgt.psql(db, &row_hash_sql(hypertable)),
        rows,
        "rows of {hypertable}"
    );
}

/// Ids of the hypertables whose relations (or chunks) carry continuous-aggregate triggers.
fn hypertables_with_cagg_triggers(c: &Cluster, db: &str) -> String {
    listing(
        c,
        db,
        "SELECT DISTINCT x.id::text FROM pg_trigger t
         JOIN pg_class r ON r.oid = t.tgrelid JOIN pg_namespace n ON n.oid = r.relnamespace
         JOIN (SELECT id, schema_name, table_name FROM _timescaledb_catalog.hypertable
               UNION ALL SELECT hypertable_id, schema_name, table_name FROM _timescaledb_catalog.chunk) x
           ON x.schema_name = n.nspname AND x.table_name = r.relname
         WHERE t.tgname = 'ts_cagg_invalidation_trigger'",
    )
}

fn migrate_with(source: &str, target: &str, filters: &[&str]) -> Run {
    let mut args = vec!["--source", source, "--target", target];
    args.extend(filters);
    let run = tsxfer(&args);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("hypertables left out"), "{run:?}");
    run
}

#[test]
fn exclude_table_leaves_nothing_of_a_hypertable_and_keeps_the_others_whole() {
    let (src, tgt) = cluster::clusters();
    let full = load_timescale_source(src, "src_ptT_src");
    tgt.create_cloud_like_database("src_ptT_tgt");
    let (source, target) = conninfos(src, "src_ptT_src", tgt, "src_ptT_tgt");
    // metrics goes with its aggregates; counters stays without its own.
    let mut left_out = vec!["tsx_ts.metrics"];
    if full {
        left_out.extend([
            "tsx_ts.metrics_hourly",
            "tsx_ts.metrics_daily",
            "tsx_ts.counters_by_1000",
        ]);
    }
    let filters: Vec<String> = left_out
        .iter()
        .map(|t| format!("--exclude-table={t}"))
        .collect();
    let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
    migrate_with(&source, &target, &filters);

    let kept = [
        "\"Ünïcode \"\"Schema\"\"\".\"Zeit Reihe\"",
        "tsx_ts.counters",
        "tsx_ts.readings",
    ];
    assert_kept_as_on_source(src, "src_ptT_src", tgt, "src_ptT_tgt", &kept, &[]);
    assert_no_trace(src, "src_ptT_src", tgt, "src_ptT_tgt", &left_out);
    assert_equal_but_for(src, "src_ptT_src", tgt, "src_ptT_tgt", &left_out, &[]);
    // No aggregate is left, so neither are their triggers and thresholds.
    assert_eq!(hypertables_with_cagg_triggers(tgt, "src_ptT_tgt"), "");
    assert_eq!(
        tgt.psql(
            "src_ptT_tgt",
            "SELECT count(*) FROM _timescaledb_catalog.continuous_aggs_invalidation_threshold"
        ),
        "0"
    );

    assert_insert_makes_a_chunk(
        tgt,
        "src_ptT_tgt",
        "tsx_ts.readings",
        "INSERT INTO tsx_ts.readings VALUES ('2031-01-01 00:00+00', 'dev-1', 1.5, 1)",
    );
    if full {
        assert_recompresses(tgt, "src_ptT_tgt", "tsx_ts.counters");
        assert_recompresses(
            tgt,
            "src_ptT_tgt",
            "\"Ünïcode \"\"Schema\"\"\".\"Zeit Reihe\"",
        );
        assert_insert_makes_a_chunk(
            tgt,
            "src_ptT_tgt",
            "tsx_ts.counters",
            "INSERT INTO tsx_ts.counters VALUES (50000, 1, 2.5);
             SELECT compress_chunk(c) FROM show_chunks('tsx_ts.counters', newer_than => 49000) AS c",
        );
    }
}

#[test]
fn schema_and_table_filters_keep_only_the_hypertables_they_name() {
    let (src, tgt) = cluster::clusters();
    let full = load_timescale_source(src, "src_ptn_src");
    let zeit = "\"Ünïcode \"\"Schema\"\"\".\"Zeit Reihe\"";

    // -n: the hypertables of tsx_ts less readings, and the hourly aggregate but not the
    // daily one built on it; "Zeit Reihe" lives in another schema.
    tgt.create_cloud_like_database("src_ptn_tgt");
    let (source, target) = conninfos(src, "src_ptn_src", tgt, "src_ptn_tgt");
    let mut filters = vec!["-n", "tsx_ts", "-T", "tsx_ts.readings"];
    let mut left_out = vec!["tsx_ts.readings", zeit];
    if full {
        filters.extend(["-T", "tsx_ts.metrics_daily"]);
        left_out.push("tsx_ts.metrics_daily");
    }
    let run = migrate_with(&source, &target, &filters);
    // Every function the kept jobs and hypertables name came with the schema.
    assert!(
        !run.stdout.contains("which the target does not have"),
        "{run:?}"
    );
    let aggregates: &[&str] = if full {
        &["tsx_ts.counters_by_1000", "tsx_ts.metrics_hourly"]
    } else {
        &[]
    };
    assert_kept_as_on_source(
        src,
        "src_ptn_src",
        tgt,
        "src_ptn_tgt",
        &["tsx_ts.counters", "tsx_ts.metrics"],
        aggregates,
    );
    assert_no_trace(src, "src_ptn_src", tgt, "src_ptn_tgt", &left_out);
    assert_equal_but_for(
        src,
        "src_ptn_src",
        tgt,
        "src_ptn_tgt",
        &left_out,
        &["\"Ünïcode \"\"Schema\"\"\""],
    );
    assert_insert_makes_a_chunk(
        tgt,
        "src_ptn_tgt",
        "tsx_ts.metrics",
        "INSERT INTO tsx_ts.metrics (time, device_id, cpu) VALUES ('2031-01-01 00:00+00', 1, -3)",
    );
    if full {
        // The hourly aggregate lost only the daily one's trigger on its hypertable.
        let raw = src.psql(
            "src_ptn_src",
            "SELECT string_agg(raw_hypertable_id::text, ',' ORDER BY raw_hypertable_id::text)
             FROM _timescaledb_catalog.continuous_agg
             WHERE user_view_name IN ('metrics_hourly', 'counters_by_1000')",
        );
        assert_eq!(hypertables_with_cagg_triggers(tgt, "src_ptn_tgt"), raw);
        assert_recompresses(tgt, "src_ptn_tgt", "tsx_ts.metrics");
        tgt.psql(
            "src_ptn_tgt",
            "SELECT compress_chunk(c) FROM show_chunks('tsx_ts.metrics', newer_than => timestamptz '2030-12-31') AS c;
             CALL refresh_continuous_aggregate('tsx_ts.metrics_hourly', timestamptz '2030-12-31', timestamptz '2031-01-02');",
        );
        assert_eq!(
            tgt.psql(
                "src_ptn_tgt",
                "SELECT count(*) || ' ' || min(samples) FROM tsx_ts.metrics_hourly WHERE bucket >= '2031-01-01'"
            ),
            "1 1"
        );
    }

    // -t: two hypertables by name (with -t, pg_dump dumps no schema: the target has them).
    tgt.create_cloud_like_database("src_ptt_tgt");
    tgt.psql(
        "src_ptt_tgt",
        &format!(
            "CREATE SCHEMA tsx_ts AUTHORIZATION {TSDBADMIN};
             CREATE SCHEMA \"Ünïcode \"\"Schema\"\"\" AUTHORIZATION {TSDBADMIN};"
        ),
    );
    let (source, target) = conninfos(src, "src_ptn_src", tgt, "src_ptt_tgt");
    let run = migrate_with(&source, &target, &["-t", "tsx_ts.readings", "-t", zeit]);
    if full {
        // The user-defined job belongs to no hypertable and is kept, but with -t pg_dump
        // leaves its procedure out: the report says so.
        assert!(
            run.stdout
                .contains("calls tsx_ts.noop_job, which the target does not have"),
            "{run:?}"
        );
    }
    assert_kept_as_on_source(
        src,
        "src_ptn_src",
        tgt,
        "src_ptt_tgt",
        &[zeit, "tsx_ts.readings"],
        &[],
    );
    let mut left_out = vec!["tsx_ts.metrics", "tsx_ts.counters"];
    if full {
        left_out.extend([
            "tsx_ts.metrics_hourly",
            "tsx_ts.metrics_daily",
            "tsx_ts.counters_by_1000",
        ]);
    }
    assert_no_trace(src, "src_ptn_src", tgt, "src_ptt_tgt", &left_out);
    assert_eq!(
        tgt.psql(
            "src_ptt_tgt",
            "SELECT count(*) FROM _timescaledb_config.bgw_job WHERE id >= 1000"
        ),
        src.psql(
            "src_ptn_src",
            "SELECT count(*) FROM _timescaledb_config.bgw_job j
             LEFT JOIN _timescaledb_catalog.hypertable h ON h.id = j.hypertable_id
             WHERE j.id >= 1000 AND (h.id IS NULL OR h.table_name IN ('readings', 'Zeit Reihe'))"
        ),
        "jobs of the kept hypertables and jobs of no hypertable"
    );
    assert_insert_makes_a_chunk(
        tgt,
        "src_ptt_tgt",
        "tsx_ts.readings",
        "INSERT INTO tsx_ts.readings VALUES ('2031-01-01 00:00+00', 'dev-2', 2.5, 1)",
    );
    if full {
        assert_recompresses(tgt, "src_ptt_tgt", zeit);
    }
}

#[test]
fn an_aggregate_kept_without_what_it_is_built_on_is_refused() {
    let (src, tgt) = cluster::clusters();
    if !load_timescale_source(src, "src_ptc_src") {
        crate::skip(
            "the refusal of a continuous aggregate without its hypertable not tested: no continuous aggregates in the Apache-only build",
        );
        return;
    }
    tgt.create_cloud_like_database("src_ptc_tgt");
    let (source, target) = conninfos(src, "src_ptc_src", tgt, "src_ptc_tgt");
    let state =
        "SELECT (SELECT count(*) FROM pg_class) || ' ' || (SELECT count(*) FROM pg_namespace)
                 || ' ' || (SELECT count(*) FROM _timescaledb_catalog.hypertable)";
    let before = tgt.psql("src_ptc_tgt", state);
    // Without metrics, the hourly aggregate has nothing to read (the daily one, built on
    // the hourly one, is fine); without the hourly one, the daily one has nothing.
    for (filters, needle, fine) in [
        (
            vec!["-T", "tsx_ts.metrics"],
            "\"tsx_ts\".\"metrics_hourly\" (built on the hypertable \"tsx_ts\".\"metrics\")",
            "metrics_daily",
        ),
        (
            vec!["-n", "tsx_ts", "-T", "tsx_ts.metrics_hourly"],
            "\"tsx_ts\".\"metrics_daily\" (built on the continuous aggregate \"tsx_ts\".\"metrics_hourly\")",
            "counters_by_1000",
        ),
    ] {
        let mut args = vec!["--source", source.as_str(), "--target", target.as_str()];
        args.extend(filters.iter());
        let run = tsxfer(&args);
        assert_refused(&run, 3, needle);
        assert!(!run.stderr.contains(fine), "{run:?}");
        assert_eq!(
            tgt.psql("src_ptc_tgt", state),
            before,
            "{filters:?} changed the target"
        );
        assert_eq!(target_tables("src_ptc_tgt"), "0");
    }
}

#[test]
fn excluding_a_hypertables_data_leaves_its_chunks_empty_and_the_others_whole() {
    let (src, tgt) = cluster::clusters();
    load_timescale_source(src, "src_etd_src");
    tgt.create_cloud_like_database("src_etd_tgt");
    let (source, target) = conninfos(src, "src_etd_src", tgt, "src_etd_tgt");
    let run = tsxfer(&[
        "--source",
        &source,
        "--target",
        &target,
        "--exclude-table-data",
        "tsx_ts.metrics",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_ne!(count_rows(src, "src_etd_src", "tsx_ts.metrics"), 0);
    assert_eq!(count_rows(tgt, "src_etd_tgt", "tsx_ts.metrics"), 0);
    assert_eq!(
        count_rows(src, "src_etd_src", "tsx_ts.readings"),
        count_rows(tgt, "src_etd_tgt", "tsx_ts.readings")
    );
    // The hypertable keeps its chunks, empty, and takes new rows.
    let chunks =
        "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'metrics'";
    assert_eq!(
        src.psql("src_etd_src", chunks),
        tgt.psql("src_etd_tgt", chunks)
    );
    tgt.psql(
        "src_etd_tgt",
        "INSERT INTO tsx_ts.metrics (time, device_id, cpu)
         SELECT now(), min(id), 1.0 FROM tsx_ts.devices",
    );
    assert_eq!(count_rows(tgt, "src_etd_tgt", "tsx_ts.metrics"), 1);
}
