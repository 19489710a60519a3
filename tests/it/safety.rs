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
