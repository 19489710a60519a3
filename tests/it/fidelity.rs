//! What real databases hold beyond our first fixtures, each found on a schema this project
//! did not write (TimescaleDB's own tests, pgcopydb's, Pagila) and rebuilt here in our own
//! words: it arrives as it was, or the run is refused before anything is written.

use crate::cluster::{self, TSDBADMIN, TSDBADMIN_PASSWORD};
use crate::compare::assert_migrated;
use crate::sources::assert_refused;
use crate::{conninfos, fixture, tsxfer};

/// One query's output on both sides, for equality checks of a few catalog rows.
fn both(
    src: &cluster::Cluster,
    src_db: &str,
    tgt: &cluster::Cluster,
    tgt_db: &str,
    sql: &str,
) -> (String, String) {
    (src.psql(src_db, sql), tgt.psql(tgt_db, sql))
}

#[test]
fn chunk_skipping_hypercore_foreign_keys_to_hypertables_and_superuser_jobs_arrive() {
    let (src, tgt) = cluster::clusters();
    if !cluster::full_timescaledb(src) {
        eprintln!(
            "SKIPPED: chunk skipping, hypercore chunks and foreign keys to hypertables not tested: TimescaleDB here is the Apache-only build (license apache)"
        );
        return;
    }
    src.create_database("fid_ts_src");
    src.psql_file("fid_ts_src", &fixture("fidelity_timescale.sql"));
    tgt.create_cloud_like_database("fid_ts_tgt");
    let (source, target) = conninfos(src, "fid_ts_src", tgt, "fid_ts_tgt");
    let run = tsxfer(&["--source", &source, "--target", &target, "--jobs", "3"]);
    assert_eq!(run.code, 0, "{run:?}");
    // TimescaleDB 2.19 cannot ANALYZE hypercore chunks, on the source either: said, not fatal.
    assert!(
        run.all().contains("ANALYZE") && run.all().contains("no statistics"),
        "{run:?}"
    );

    assert_migrated(src, "fid_ts_src", tgt, "fid_ts_tgt");

    // Chunk skipping: the whole-hypertable row and every chunk's range, ids included.
    let (s, t) = both(
        src,
        "fid_ts_src",
        tgt,
        "fid_ts_tgt",
        "SELECT string_agg(format('%s/%s/%s/%s/%s/%s/%s', s.id, h.table_name, c.table_name,
                                  s.column_name, s.range_start, s.range_end, s.valid), ' ' ORDER BY s.id)
         FROM _timescaledb_catalog.chunk_column_stats s
         JOIN _timescaledb_catalog.hypertable h ON h.id = s.hypertable_id
         LEFT JOIN _timescaledb_catalog.chunk c ON c.id = s.chunk_id",
    );
    assert!(s.contains("/orders//order_no/"), "{s}");
    assert_eq!(s, t);
    // ... and the target goes on tracking ranges for new chunks.
    tgt.psql(
        "fid_ts_tgt",
        "SET timescaledb.enable_chunk_skipping = on; INSERT INTO fid.orders VALUES ('2025-01-01', 1, 1)",
    );
    assert_eq!(
        tgt.psql(
            "fid_ts_tgt",
            "SELECT count(*) FROM _timescaledb_catalog.chunk_column_stats s
             JOIN _timescaledb_catalog.chunk c ON c.id = s.chunk_id
             WHERE c.id = (SELECT max(id) FROM _timescaledb_catalog.chunk)"
        ),
        "1"
    );

    // The foreign key to a hypertable is there, made by TimescaleDB on every chunk, and
    // enforced; what pg_restore builds after it is there too.
    let per_chunk = "SELECT count(*) FROM pg_constraint
                     WHERE conrelid = 'fid.visits'::regclass AND contype = 'f'";
    let (s, t) = both(src, "fid_ts_src", tgt, "fid_ts_tgt", per_chunk);
    assert_eq!(s, t);
    assert!(s.parse::<i32>().unwrap() > 1, "{s}");
    let after = "SELECT count(*) FROM pg_indexes WHERE indexname = 'visits_by_site'
                 UNION ALL SELECT count(*) FROM pg_constraint WHERE conname = 'visits_positive'";
    assert_eq!(tgt.psql("fid_ts_tgt", after), "1\n1");
    assert!(
        tgt.try_psql(
            "fid_ts_tgt",
            "INSERT INTO fid.visits VALUES (1000, 1, '1999-01-01')"
        )
        .is_err(),
        "the foreign key is not enforced on the target"
    );

    // Jobs of the source's superuser belong to the login role, as its other objects.
    let jobs = "SELECT string_agg(owner::text, ',' ORDER BY id) FROM _timescaledb_config.bgw_job WHERE id >= 1000";
    assert_eq!(src.psql("fid_ts_src", jobs), "postgres,postgres");
    assert_eq!(
        tgt.psql("fid_ts_tgt", jobs),
        format!("{TSDBADMIN},{TSDBADMIN}")
    );
    assert!(
        run.stdout.contains("job(s) of the source's superuser"),
        "{run:?}"
    );
    // The target's own jobs stay its own.
    assert_eq!(
        tgt.psql(
            "fid_ts_tgt",
            "SELECT count(*) FROM _timescaledb_config.bgw_job WHERE id < 1000 AND owner::text <> 'postgres'"
        ),
        "0"
    );
    assert!(!run.all().contains(TSDBADMIN_PASSWORD), "{run:?}");
}

#[test]
fn schema_owners_forced_row_security_role_comments_and_database_settings_arrive() {
    let (src, tgt) = cluster::clusters();
    src.create_database("fid_pl_src");
    src.psql("fid_pl_src", "CREATE EXTENSION IF NOT EXISTS timescaledb");
    src.psql_file("fid_pl_src", &fixture("fidelity_plain.sql"));
    tgt.create_cloud_like_database("fid_pl_tgt");
    let (source, target) = conninfos(src, "fid_pl_src", tgt, "fid_pl_tgt");
    let run = tsxfer(&["--source", &source, "--target", &target]);
    // Verification counts every row, whatever the policies let the login role see.
    assert_eq!(run.code, 0, "{run:?}");
    assert_migrated(src, "fid_pl_src", tgt, "fid_pl_tgt");

    // What only a superuser may make is listed; what follows it in the archive arrives.
    assert!(
        run.stdout
            .contains("publication everything (FOR ALL TABLES) not restored"),
        "{run:?}"
    );
    assert_eq!(
        tgt.psql(
            "fid_pl_tgt",
            "SELECT string_agg(pubname, ',' ORDER BY pubname) FROM pg_publication
             UNION ALL SELECT count(*)::text FROM pg_statistic_ext WHERE stxname = 'entries_by_clerk'"
        ),
        "ledger_feed\n1"
    );

    // Row-level security is forced again after counting.
    assert_eq!(
        tgt.psql(
            "fid_pl_tgt",
            "SELECT relforcerowsecurity FROM pg_class WHERE oid = 'ledger.entries'::regclass"
        ),
        "t"
    );
    assert_eq!(
        tgt.psql("fid_pl_tgt", "SELECT count(*) FROM ledger.entries"),
        "90"
    );

    // The schema's owner may still create in it.
    let create = "SELECT has_schema_privilege('fid_role_keeper', 'ledger', 'CREATE')";
    assert_eq!(src.psql("fid_pl_src", create), "t");
    assert_eq!(tgt.psql("fid_pl_tgt", create), "t");

    let comments = "SELECT string_agg(rolname || ': ' || shobj_description(oid, 'pg_authid'), '; ' ORDER BY rolname)
                    FROM pg_roles WHERE rolname LIKE 'fid\\_role\\_%'";
    let (s, t) = both(src, "fid_pl_src", tgt, "fid_pl_tgt", comments);
    assert!(s.contains("keeps the ledger schema"), "{s}");
    assert_eq!(s, t);

    let settings = |db: &str| {
        format!(
            "SELECT string_agg(COALESCE(r.rolname, '(database)') || ' ' || array_to_string(s.setconfig, ','), '; ' ORDER BY r.rolname NULLS FIRST)
             FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
             LEFT JOIN pg_roles r ON r.oid = s.setrole
             WHERE d.datname = '{db}' AND r.rolname IS DISTINCT FROM 'postgres'"
        )
    };
    assert!(
        run.stdout
            .contains("role \"postgres\": its settings not applied (lock_timeout)"),
        "{run:?}"
    );
    let s = src.psql("fid_pl_src", &settings("fid_pl_src"));
    assert!(
        s.contains("work_mem=12MB") && s.contains("statement_timeout=45s"),
        "{s}"
    );
    assert_eq!(tgt.psql("fid_pl_tgt", &settings("fid_pl_tgt")), s);

    // pgcrypto is trusted: tsdbadmin created it, but its functions belong to the
    // bootstrap superuser, whose privileges tsdbadmin may not change: said, not lost
    // without a word.
    assert!(
        run.stdout
            .contains("public.gen_random_uuid() belongs to an extension"),
        "{run:?}"
    );

    // A target where the login role may change them gets them as the source has them.
    let member_acls = "SELECT has_function_privilege('public', 'public.gen_random_uuid()', 'EXECUTE'),
                              has_function_privilege('fid_role_clerk', 'public.gen_random_bytes(integer)', 'EXECUTE')";
    assert_eq!(src.psql("fid_pl_src", member_acls), "f|t");
    tgt.create_database("fid_pl_super");
    tgt.psql("fid_pl_super", "CREATE EXTENSION timescaledb");
    let run = tsxfer(&[
        "--source",
        &source,
        "--target",
        &tgt.superuser_conninfo("fid_pl_super"),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(tgt.psql("fid_pl_super", member_acls), "f|t");
    // The roles exist on the target by now, made by the first run; what they set in
    // the source database is still this database's to have.
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("roles already on the target") && l.contains("fid_role_clerk")),
        "{run:?}"
    );
    assert_eq!(tgt.psql("fid_pl_super", &settings("fid_pl_super")), s);
}

#[test]
fn an_extension_the_target_role_may_not_create_is_refused_before_anything_is_written() {
    let (src, tgt) = cluster::clusters();
    src.create_database("fid_ext_src");
    src.psql(
        "fid_ext_src",
        "CREATE EXTENSION pg_stat_statements; CREATE ROLE fid_role_ext_only NOLOGIN;
         CREATE TABLE kept (id int)",
    );
    tgt.create_cloud_like_database("fid_ext_tgt");
    let (source, target) = conninfos(src, "fid_ext_src", tgt, "fid_ext_tgt");
    let run = tsxfer(&["--source", &source, "--target", &target]);
    assert_refused(&run, 3, "pg_stat_statements");
    assert_eq!(
        tgt.psql(
            "fid_ext_tgt",
            "SELECT count(*) FROM pg_class WHERE relname = 'kept'
             UNION ALL SELECT count(*) FROM pg_roles WHERE rolname = 'fid_role_ext_only'"
        ),
        "0\n0"
    );
    // plan and --dry-run say so and exit as the run would.
    for args in [
        vec!["plan", "--source", &source, "--target", &target],
        vec!["--source", &source, "--target", &target, "--dry-run"],
    ] {
        let plan = tsxfer(&args);
        assert_eq!(plan.code, 3, "{plan:?}");
        assert!(plan.stdout.contains("would be refused"), "{plan:?}");
    }
}

// Roles these tests make are named fid_role_*, outside the fixtures' tsx_* names that
// compare.rs checks cluster-wide: a role one test adds to the shared source cluster must
// not show up as missing in another test's comparison running at the same time.

#[test]
fn foreign_servers_need_their_wrapper_and_superuser_only_mappings_are_listed() {
    let (src, tgt) = cluster::clusters();
    src.create_database("fid_fdw_src");
    src.psql(
        "fid_fdw_src",
        "CREATE EXTENSION IF NOT EXISTS timescaledb;
         CREATE EXTENSION postgres_fdw;
         DO $r$ BEGIN
             IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fid_role_remote') THEN
                 CREATE ROLE fid_role_remote NOLOGIN;
             END IF;
         END $r$;
         CREATE SERVER elsewhere FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'nowhere');
         GRANT USAGE ON FOREIGN SERVER elsewhere TO fid_role_remote;
         CREATE USER MAPPING FOR fid_role_remote SERVER elsewhere
             OPTIONS (user 'someone', password_required 'false')",
    );
    tgt.create_cloud_like_database("fid_fdw_tgt");
    tgt.psql("fid_fdw_tgt", "CREATE EXTENSION postgres_fdw");
    let (source, target) = conninfos(src, "fid_fdw_src", tgt, "fid_fdw_tgt");
    let run = tsxfer(&["--source", &source, "--target", &target]);
    assert_refused(&run, 3, "FOREIGN DATA WRAPPER");
    assert_eq!(
        tgt.psql("fid_fdw_tgt", "SELECT count(*) FROM pg_foreign_server"),
        "0"
    );

    tgt.psql(
        "fid_fdw_tgt",
        &format!("GRANT USAGE ON FOREIGN DATA WRAPPER postgres_fdw TO {TSDBADMIN}"),
    );
    let run = tsxfer(&["--source", &source, "--target", &target]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(
            "user mapping for fid_role_remote on server elsewhere (password_required false) not restored"
        ),
        "{run:?}"
    );
    let acl = "SELECT has_server_privilege('fid_role_remote', 'elsewhere', 'USAGE')";
    assert_eq!(tgt.psql("fid_fdw_tgt", acl), "t");
}

/// Chunk tables' own DDL as the source has it, made on the target from the statements
/// tsxfer generates from the catalog (no pg_dump of the chunks): a chunk's own column
/// settings, comments, row security, checks, clustered index, trigger states, and the
/// compressed chunks' column settings.
#[test]
fn chunk_tables_arrive_with_what_they_carry_of_their_own() {
    let (src, tgt) = cluster::clusters();
    src.create_database("fid_chunk_src");
    src.psql_file("fid_chunk_src", &fixture("chunk_ddl.sql"));
    // What the fixture gave the chunks is there to be lost.
    let own = "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE n.nspname = 'plant_chunks' AND c.relrowsecurity),
                      (SELECT count(*) FROM pg_class WHERE relrowsecurity AND relname LIKE '%chunk'),
                      (SELECT count(*) FROM pg_trigger WHERE tgname = 'counters_touch' AND tgenabled <> 'O'),
                      (SELECT count(*) FROM pg_constraint WHERE conname = 'level_sane' AND NOT convalidated),
                      (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
                       WHERE i.indisclustered AND c.relname LIKE '%chunk'),
                      (SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                       WHERE c.relname LIKE 'compress\\_hyper\\_%' AND a.attstattarget = 1000)
                       > 0";
    assert_eq!(src.psql("fid_chunk_src", own), "1|2|2|1|1|t");
    tgt.create_cloud_like_database("fid_chunk_tgt");
    let (source, target) = conninfos(src, "fid_chunk_src", tgt, "fid_chunk_tgt");
    let run = tsxfer(&["--source", &source, "--target", &target, "--jobs", "3"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.all().contains("chunk tables from the catalog"),
        "{run:?}"
    );
    assert_migrated(src, "fid_chunk_src", tgt, "fid_chunk_tgt");
    assert_eq!(tgt.psql("fid_chunk_tgt", own), "1|2|2|1|1|t");
    // What compare_databases does not look at: a chunk's policy, rule, extended statistics
    // and publication membership.
    let more = "SELECT (SELECT string_agg(polname || ' ' || pg_get_expr(polqual, polrelid), ',') FROM pg_policy
                        WHERE polrelid::regclass::text LIKE 'plant_chunks.%'),
                       (SELECT string_agg(rulename, ',') FROM pg_rules WHERE schemaname = 'plant_chunks'),
                       (SELECT string_agg(stxname || ' ' || stxrelid::regclass::text, ',') FROM pg_statistic_ext),
                       (SELECT string_agg(pubname || ' ' || tablename, ',') FROM pg_publication_tables)";
    let (s, t) = both(src, "fid_chunk_src", tgt, "fid_chunk_tgt", more);
    assert!(
        s.contains("machine_one")
            && s.contains("no_deletes")
            && s.contains("level_by_machine")
            && s.contains("plant_feed"),
        "{s}"
    );
    assert_eq!(s, t);

    // Row security is enabled with the post-data, as pg_dump does: enabled before the copy,
    // a chunk that forces it on its owner refuses COPY into a non-superuser target.
    let dir = crate::scratch_dir().join("fid-chunk-ddl-dump");
    let _ = std::fs::remove_dir_all(&dir);
    let dump = tsxfer(&[
        "dump",
        "--source",
        &source,
        "--dir",
        dir.to_str().unwrap(),
        "--metrics-addr",
        "off",
    ]);
    assert_eq!(dump.code, 0, "{dump:?}");
    let ddl: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("schema/chunk-ddl.json")).unwrap())
            .unwrap();
    let text = |part: &str| {
        ddl["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t[part].to_string())
            .collect::<String>()
    };
    assert!(
        !text("pre_data").contains("ENABLE ROW LEVEL SECURITY"),
        "{ddl}"
    );
    assert!(
        text("post_data").contains("ENABLE ROW LEVEL SECURITY"),
        "{ddl}"
    );
    std::fs::remove_dir_all(&dir).ok();

    // A hypertable left out takes its chunks' DDL with it; the others' chunks are whole.
    tgt.create_cloud_like_database("fid_chunk_some");
    let (_, some) = conninfos(src, "fid_chunk_src", tgt, "fid_chunk_some");
    let run = tsxfer(&[
        "--source",
        &source,
        "--target",
        &some,
        "--exclude-table",
        "public.counters",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let chunks = "SELECT h.table_name, count(c.oid) FROM _timescaledb_catalog.chunk ch
                  JOIN _timescaledb_catalog.hypertable h ON h.id = ch.hypertable_id
                  LEFT JOIN pg_class c ON c.relname = ch.table_name
                  GROUP BY 1 ORDER BY 1";
    let on_source = src.psql("fid_chunk_src", chunks);
    let kept: Vec<&str> = on_source
        .lines()
        .filter(|l| !l.starts_with("counters|"))
        .collect();
    assert_eq!(tgt.psql("fid_chunk_some", chunks), kept.join("\n"));
    assert_eq!(
        tgt.psql(
            "fid_chunk_some",
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'counters_touch'"
        ),
        "0"
    );
}
