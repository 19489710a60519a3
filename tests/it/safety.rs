//! Misuse that must never harm a database: a target that is the source, a `--restart`
//! aimed at another source's run, and run state edited by whoever can write to the target.

use crate::cluster::{self, Cluster, TSDBADMIN, TSDBADMIN_PASSWORD};
use crate::compare::count_rows;
use crate::{conninfos, tsxfer};

/// A small source database: a few tables with rows, a sequence and an extension
/// configuration table whose rows are copied with a condition.
fn small_source(src: &Cluster, db: &str) {
    src.create_database(db);
    src.psql(
        db,
        "CREATE TABLE public.accounts (id int PRIMARY KEY, name text);
         INSERT INTO public.accounts SELECT g, 'a' || g FROM generate_series(1, 500) g;
         CREATE TABLE public.events (id bigserial PRIMARY KEY, at timestamptz DEFAULT now());
         INSERT INTO public.events (at) SELECT now() FROM generate_series(1, 300);",
    );
}

/// Migrates `src_db` into a fresh cloud-like `tgt_db`, keeping the run state.
fn migrate_keeping_state(src_db: &str, tgt_db: &str) -> (String, String) {
    let (src, tgt) = cluster::clusters();
    small_source(src, src_db);
    tgt.create_cloud_like_database(tgt_db);
    let (source, target) = conninfos(src, src_db, tgt, tgt_db);
    let run = tsxfer(&[
        "--source",
        &source,
        "--target",
        &target,
        "--jobs",
        "2",
        "--keep-state",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    (source, target)
}

fn tables(c: &Cluster, db: &str) -> String {
    c.psql(
        db,
        "SELECT string_agg(format('%I.%I', schemaname, tablename), ',' ORDER BY 1, 2)
         FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
}

#[test]
fn a_target_that_is_the_source_is_refused_however_it_is_spelled_and_restart_drops_nothing() {
    let (_, tgt) = cluster::clusters();
    // A database that holds a run state (it was the target of a kept run) and data.
    migrate_keeping_state("sf_same_src", "sf_same_db");
    let before = tables(tgt, "sf_same_db");
    let rows = count_rows(tgt, "sf_same_db", "public.accounts");
    assert_eq!(rows, 500);
    // The same database, once as the superuser over the unix socket, once as the
    // cloud-like admin over TCP with a URI.
    let over_socket = tgt.superuser_conninfo("sf_same_db");
    let over_tcp = tgt.tcp_uri(TSDBADMIN, TSDBADMIN_PASSWORD, "sf_same_db");
    for extra in [&[][..], &["--restart"][..]] {
        let mut args = vec!["--source", &over_socket, "--target", &over_tcp];
        args.extend_from_slice(extra);
        let run = tsxfer(&args);
        assert_eq!(run.code, 3, "{extra:?}: {run:?}");
        assert!(
            run.all()
                .contains("the target is the source database itself"),
            "{extra:?}: {run:?}"
        );
        assert!(!run.all().contains(TSDBADMIN_PASSWORD), "{run:?}");
        assert_eq!(tables(tgt, "sf_same_db"), before, "{extra:?}");
        assert_eq!(count_rows(tgt, "sf_same_db", "public.accounts"), rows);
    }
    // A worker and a plan are refused the same way.
    for cmd in ["worker", "plan"] {
        let run = tsxfer(&[cmd, "--source", &over_socket, "--target", &over_tcp]);
        assert_eq!(run.code, 3, "{cmd}: {run:?}");
        assert!(
            run.all()
                .contains("the target is the source database itself"),
            "{cmd}: {run:?}"
        );
    }
    // Another database of the same server is a valid target: only the database itself is
    // refused.
    small_source(tgt, "sf_same_plain");
    tgt.create_cloud_like_database("sf_same_other");
    let run = tsxfer(&[
        "--source",
        &tgt.superuser_conninfo("sf_same_plain"),
        "--target",
        &tgt.conninfo(TSDBADMIN, TSDBADMIN_PASSWORD, "sf_same_other"),
        "--jobs",
        "2",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(count_rows(tgt, "sf_same_other", "public.accounts"), 500);
}

#[test]
fn restart_refuses_to_empty_a_target_whose_run_came_from_another_source() {
    let (src, tgt) = cluster::clusters();
    let (_, target) = migrate_keeping_state("sf_other_a", "sf_other_tgt");
    small_source(src, "sf_other_b");
    let before = tables(tgt, "sf_other_tgt");
    let other = src.superuser_conninfo("sf_other_b");
    let run = tsxfer(&["--source", &other, "--target", &target, "--restart"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.all().contains("--restart refused"), "{run:?}");
    assert!(run.all().contains("nothing was dropped"), "{run:?}");
    assert_eq!(tables(tgt, "sf_other_tgt"), before);
    assert_eq!(count_rows(tgt, "sf_other_tgt", "public.accounts"), 500);
}

#[test]
fn the_run_state_names_units_but_nothing_read_from_it_runs_as_sql_on_the_source() {
    let (src, tgt) = cluster::clusters();
    // The first run stops with one unit failed and its state left behind.
    let (source, target) = crate::resume::pair_with_a_rejected_row("sf_state");
    let run = tsxfer(&["--source", &source, "--target", &target, "-j", "2"]);
    assert_eq!(run.code, 4, "{run:?}");
    src.psql("sf_state_src", "UPDATE bad SET t = 'fixed' WHERE id = 50");
    let resume = || {
        tsxfer(&[
            "--source",
            &source,
            "--target",
            &target,
            "-j",
            "2",
            "--allow-inconsistent",
        ])
    };

    // A unit pointed at another relation of the source (pg_authid, the password hashes)
    // is refused before anything is copied.
    let failed_id = tgt.psql(
        "sf_state_tgt",
        "SELECT id FROM tsxfer.unit WHERE status = 'failed'",
    );
    let failed_oid = tgt.psql(
        "sf_state_tgt",
        &format!("SELECT source_oid FROM tsxfer.unit WHERE id = {failed_id}"),
    );
    tgt.psql(
        "sf_state_tgt",
        &format!("UPDATE tsxfer.unit SET source_oid = 1260 WHERE id = {failed_id}"),
    );
    let refused = resume();
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(refused.all().contains("run state"), "{refused:?}");
    assert!(refused.all().contains("OID 1260"), "{refused:?}");
    assert_eq!(tgt.psql("sf_state_tgt", "SELECT count(*) FROM bad"), "0");
    tgt.psql(
        "sf_state_tgt",
        &format!("UPDATE tsxfer.unit SET source_oid = {failed_oid} WHERE id = {failed_id}"),
    );

    // SQL planted where an earlier tsxfer kept a unit's definition, and in the unit's
    // display name, is never sent to the source: the source logs every statement of the
    // resumed run, and the marker is in none of them.
    let marker = "tsxfer_planted_marker";
    let planted = format!("public.bad WHERE pg_catalog.pg_sleep(0) IS NOT NULL OR '{marker}' = ''");
    tgt.psql(
        "sf_state_tgt",
        &format!(
            "ALTER TABLE tsxfer.unit ADD COLUMN spec jsonb;
             UPDATE tsxfer.unit SET relation = {planted_literal},
                    spec = jsonb_build_object('schema', 'public', 'name', 'bad',
                                              'filter', {filter_literal});",
            planted_literal = cluster::quote_literal(&planted),
            filter_literal = cluster::quote_literal(&format!("WHERE '{marker}' <> ''")),
        ),
    );
    src.psql(
        "postgres",
        "ALTER DATABASE sf_state_src SET log_statement = 'all'",
    );
    let logged_before = std::fs::read_to_string(&src.log_file)
        .unwrap_or_default()
        .len();
    let done = resume();
    assert_eq!(done.code, 0, "{done:?}");
    let log = std::fs::read_to_string(&src.log_file).expect("reading the source's log");
    let during = &log[logged_before.min(log.len())..];
    assert!(
        during.contains("COPY"),
        "the source logged no COPY: is log_statement in effect?"
    );
    assert!(
        !during.contains(marker),
        "planted SQL reached the source:\n{during}"
    );
    assert_eq!(tgt.psql("sf_state_tgt", "SELECT count(*) FROM bad"), "100");
    assert_eq!(
        tgt.psql("sf_state_tgt", "SELECT count(*) FROM good"),
        "1000"
    );
}

/// Rewrites the dump's manifest with `edit`.
fn edit_manifest(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("reading the manifest"))
            .expect("the manifest is JSON");
    edit(&mut m);
    std::fs::write(&path, serde_json::to_vec_pretty(&m).expect("serializes"))
        .expect("writing the manifest");
}

#[test]
fn names_and_words_in_a_dump_manifest_do_not_become_sql_on_the_target() {
    let (src, tgt) = cluster::clusters();
    small_source(src, "sf_dump_src");
    src.psql(
        "sf_dump_src",
        "DO $$ BEGIN CREATE ROLE sf_dump_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         GRANT SELECT ON public.accounts TO sf_dump_reader;
         GRANT SELECT ON public.events TO sf_dump_reader;",
    );
    let dir = std::env::temp_dir().join(format!("tsxfer-sf-dump-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().expect("a UTF-8 path");
    let dump = tsxfer(&[
        "dump",
        "--source",
        &src.superuser_conninfo("sf_dump_src"),
        "--dir",
        d,
    ]);
    assert_eq!(dump.code, 0, "{dump:?}");
    let target = |db: &str| {
        tgt.create_cloud_like_database(db);
        tgt.conninfo(TSDBADMIN, TSDBADMIN_PASSWORD, db)
    };
    let grant_to_reader = |m: &mut serde_json::Value, relation: &str| -> usize {
        m["extract"]["privileges"]["grants"]
            .as_array()
            .expect("grants")
            .iter()
            .position(|g| g["grantee"] == "sf_dump_reader" && g["object"] == relation)
            .expect("the fixture's grant is in the manifest")
    };

    // A word that is no privilege is refused before anything is written.
    edit_manifest(&dir, |m| {
        let i = grant_to_reader(m, "public.accounts");
        m["extract"]["privileges"]["grants"][i]["privilege"] =
            "SELECT ON public.accounts TO PUBLIC; CREATE TABLE public.sf_pwned (); --".into();
    });
    let refused = tsxfer(&["restore", "--dir", d, "--target", &target("sf_dump_tgt1")]);
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(refused.all().contains("unknown privilege"), "{refused:?}");
    assert_eq!(
        tgt.psql(
            "sf_dump_tgt1",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "0"
    );
    edit_manifest(&dir, |m| {
        let i = grant_to_reader(m, "public.accounts");
        m["extract"]["privileges"]["grants"][i]["privilege"] = "SELECT".into();
    });

    // An object name with SQL in it names nothing on the target: its entry is left out
    // and said so, the planted statement never runs, and the rest arrives.
    edit_manifest(&dir, |m| {
        let i = grant_to_reader(m, "public.events");
        m["extract"]["privileges"]["grants"][i]["object"] =
            "public.events TO PUBLIC; CREATE TABLE public.sf_pwned (); --".into();
    });
    let restored = tsxfer(&["restore", "--dir", d, "--target", &target("sf_dump_tgt2")]);
    assert_eq!(restored.code, 0, "{restored:?}");
    assert!(
        restored
            .all()
            .contains("name objects the target does not have"),
        "{restored:?}"
    );
    assert_eq!(
        tgt.psql(
            "sf_dump_tgt2",
            "SELECT to_regclass('public.sf_pwned') IS NULL"
        ),
        "t"
    );
    assert_eq!(count_rows(tgt, "sf_dump_tgt2", "public.accounts"), 500);
    assert_eq!(
        tgt.psql(
            "sf_dump_tgt2",
            "SELECT has_table_privilege('sf_dump_reader', 'public.accounts', 'SELECT')"
        ),
        "t"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
