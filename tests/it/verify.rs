//! Verification by content: a run's own verify phase and `tsxfer verify` catch rows that
//! arrived changed or were changed afterwards, whatever the row counts say.

use crate::cluster::{self, Cluster};
use crate::{Run, conninfos, load_source, tsxfer};

fn verify(source: &str, target: &str) -> Run {
    tsxfer(&[
        "verify", "--source", source, "--target", target, "--jobs", "3",
    ])
}

/// The mismatch lines of a run's summary.
fn mismatches(run: &Run) -> Vec<String> {
    run.stdout
        .lines()
        .skip_while(|l| !l.starts_with("MISMATCHES"))
        .skip(1)
        .take_while(|l| l.starts_with("  - "))
        .map(|l| l.trim_start_matches("  - ").to_string())
        .collect()
}

/// Runs `tsxfer verify` after `change` was made on the target, and checks that it fails
/// with exit code 5 and one more mismatch than before, naming every one of `named`.
fn caught(
    tgt: &Cluster,
    db: &str,
    pair: &(String, String),
    before: usize,
    change: &str,
    named: &[&str],
) -> usize {
    tgt.psql(db, change);
    let run = verify(&pair.0, &pair.1);
    assert_eq!(run.code, 5, "{change}\n{run:?}");
    let lines = mismatches(&run);
    assert!(
        lines.len() > before,
        "{change}: nothing new caught\n{run:?}"
    );
    for name in named {
        let line = lines
            .iter()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{change}: {name} is not named\n{run:?}"));
        assert!(
            line.contains("rows with checksum") && line.contains("the target holds"),
            "{line}"
        );
    }
    lines.len()
}

#[test]
fn tsxfer_verify_catches_every_change_made_to_the_target_after_a_migration() {
    let (src, tgt) = cluster::clusters();
    let compressed = load_source(src, "vfy_src", true);
    tgt.create_cloud_like_database("vfy_tgt");
    let pair = conninfos(src, "vfy_src", tgt, "vfy_tgt");
    let report = std::env::temp_dir().join(format!("tsxfer-vfy-{}.json", std::process::id()));
    let run = tsxfer(&[
        "--source", &pair.0, "--target", &pair.1, "--jobs", "3", "--verify", "checksum",
    ]);
    assert_eq!(run.code, 0, "{run:?}");

    // A clean pair compares equal, unit by unit: chunks, hypertables as a whole, tables.
    let run = tsxfer(&[
        "verify",
        "--source",
        &pair.0,
        "--target",
        &pair.1,
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("result: success"), "{run:?}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    std::fs::remove_file(&report).ok();
    let units = json["units"].as_array().unwrap();
    for kind in ["table", "partition", "chunk", "hypertable"] {
        assert!(
            units.iter().any(|u| u["kind"] == kind),
            "no {kind} compared: {json}"
        );
    }
    for u in units {
        assert!(u["checksum"].is_string(), "{u}");
        assert_eq!(u["checksum"], u["target_checksum"], "{u}");
        assert_eq!(u["rows"], u["target_rows"], "{u}");
    }
    let metrics = units
        .iter()
        .find(|u| u["relation"] == "\"tsx_ts\".\"metrics\"")
        .expect("the metrics hypertable is compared as a whole");
    assert_ne!(metrics["rows"], 0, "{metrics}");

    let db = "vfy_tgt";
    let chunk = tgt.psql(
        db,
        "SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks
         WHERE hypertable_name = 'metrics' AND NOT is_compressed ORDER BY range_start DESC LIMIT 1",
    );
    let chunk_name = chunk
        .rsplit('.')
        .next()
        .unwrap()
        .trim_matches('"')
        .to_string();
    let mut seen = caught(
        tgt,
        db,
        &pair,
        0,
        &format!(
            "UPDATE {chunk} SET mem = coalesce(mem, 0) + 1 WHERE ctid = (SELECT min(ctid) FROM {chunk})"
        ),
        &[&chunk_name, "hypertable \"tsx_ts\".\"metrics\""],
    );
    if compressed {
        let chunk = tgt.psql(
            db,
            "SELECT chunk_name FROM timescaledb_information.chunks
             WHERE hypertable_name = 'counters' AND is_compressed ORDER BY range_start LIMIT 1",
        );
        seen = caught(
            tgt,
            db,
            &pair,
            seen,
            "UPDATE tsx_ts.counters SET value = coalesce(value, 0) + 1
             WHERE ts = (SELECT min(ts) FROM tsx_ts.counters) AND sensor = 1",
            &[&chunk, "hypertable \"tsx_ts\".\"counters\""],
        );
    } else {
        eprintln!(
            "SKIPPED: a change in a compressed chunk not tested: TimescaleDB here is the Apache-only build (license apache)"
        );
    }
    seen = caught(
        tgt,
        db,
        &pair,
        seen,
        "UPDATE tsx_app.legacy SET kept = 'kept 2' WHERE id = 1",
        &["table \"tsx_app\".\"legacy\""],
    );
    // Same count, other rows.
    seen = caught(
        tgt,
        db,
        &pair,
        seen,
        "DELETE FROM tsx_app.events_log WHERE ctid = (SELECT min(ctid) FROM tsx_app.events_log);
         INSERT INTO tsx_app.events_log VALUES (NULL, 'info', 'not from the source')",
        &["table \"tsx_app\".\"events_log\""],
    );
    caught(
        tgt,
        db,
        &pair,
        seen,
        "UPDATE tsx_app.measurements_2024_02 SET reading = coalesce(reading, 0) + 1
         WHERE ctid = (SELECT min(ctid) FROM tsx_app.measurements_2024_02)",
        &["partition \"tsx_app\".\"measurements_2024_02\""],
    );
}

#[test]
fn a_target_trigger_that_alters_rows_as_they_arrive_fails_the_run_by_content() {
    let (src, tgt) = cluster::clusters();
    load_source(src, "vfy_trg_src", false);
    tgt.create_cloud_like_database("vfy_trg_tgt");
    // Whenever the migration creates tsx_app.customers, a trigger that rewrites one
    // column of every row it takes is put on it: the count stays right.
    tgt.psql(
        "vfy_trg_tgt",
        "CREATE FUNCTION public.tsx_shout() RETURNS trigger LANGUAGE plpgsql AS
           $$BEGIN NEW.name := upper(NEW.name); RETURN NEW; END$$;
         CREATE FUNCTION public.tsx_add_shout() RETURNS event_trigger LANGUAGE plpgsql AS
           $$DECLARE c record; BEGIN
             FOR c IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
               IF c.command_tag = 'CREATE TABLE' AND c.object_identity = 'tsx_app.customers' THEN
                 EXECUTE 'CREATE TRIGGER shout BEFORE INSERT ON tsx_app.customers
                          FOR EACH ROW EXECUTE FUNCTION public.tsx_shout()';
               END IF;
             END LOOP;
           END$$;
         CREATE EVENT TRIGGER tsx_add_shout ON ddl_command_end EXECUTE FUNCTION public.tsx_add_shout()",
    );
    let pair = conninfos(src, "vfy_trg_src", tgt, "vfy_trg_tgt");
    let run = tsxfer(&[
        "--source",
        &pair.0,
        "--target",
        &pair.1,
        "--jobs",
        "2",
        "--verify",
        "checksum",
        "--keep-state",
    ]);
    assert_eq!(run.code, 5, "{run:?}");
    let lines = mismatches(&run);
    assert_eq!(lines.len(), 1, "{run:?}");
    assert!(
        lines[0]
            .starts_with("table \"tsx_app\".\"customers\": the source sent 500 rows with checksum")
            && lines[0].contains("the target holds 500 rows with checksum"),
        "{}",
        lines[0]
    );
    tgt.psql("vfy_trg_tgt", "DROP EVENT TRIGGER tsx_add_shout");
    let run = verify(&pair.0, &pair.1);
    assert_eq!(run.code, 5, "{run:?}");
    let lines = mismatches(&run);
    assert_eq!(lines.len(), 1, "{run:?}");
    assert!(lines[0].contains("\"tsx_app\".\"customers\""), "{run:?}");
}

#[test]
fn the_run_counts_many_tables_in_batches_and_names_the_one_short_and_the_one_gone() {
    let (src, tgt) = cluster::clusters();
    src.create_database("vfy_many_src");
    // More tables than one count statement of the verify phase takes, each with three
    // rows; a materialized view, refreshed at the end of post-data.
    src.psql(
        "vfy_many_src",
        "CREATE SCHEMA tsx_many;
         DO $$BEGIN
           FOR i IN 1..230 LOOP
             EXECUTE format('CREATE TABLE tsx_many.%I (id int)', 't_' || lpad(i::text, 3, '0'));
             EXECUTE format('INSERT INTO tsx_many.%I VALUES (1), (2), (3)', 't_' || lpad(i::text, 3, '0'));
           END LOOP;
         END$$;
         CREATE TABLE tsx_many.\"Short Rows\" (id int);
         INSERT INTO tsx_many.\"Short Rows\" VALUES (1), (2), (3);
         CREATE MATERIALIZED VIEW tsx_many.mv AS SELECT count(*) AS n FROM tsx_many.t_001",
    );
    tgt.create_cloud_like_database("vfy_many_tgt");
    // On the target, when the materialized view is refreshed at the end of post-data
    // (after every row was copied, and counted as it arrived): a row of "Short Rows"
    // is deleted, and t_042 is dropped (its count cannot be read at all).
    tgt.psql(
        "vfy_many_tgt",
        "CREATE FUNCTION public.tsx_meddle() RETURNS event_trigger LANGUAGE plpgsql AS
           $$BEGIN
             IF TG_TAG = 'REFRESH MATERIALIZED VIEW' THEN
               EXECUTE 'DELETE FROM tsx_many.\"Short Rows\" WHERE id = 2';
               EXECUTE 'DROP TABLE IF EXISTS tsx_many.t_042';
             END IF;
           END$$;
         CREATE EVENT TRIGGER tsx_meddle ON ddl_command_end EXECUTE FUNCTION public.tsx_meddle()",
    );
    let pair = conninfos(src, "vfy_many_src", tgt, "vfy_many_tgt");
    let run = tsxfer(&["--source", &pair.0, "--target", &pair.1, "--jobs", "2"]);
    tgt.psql("vfy_many_tgt", "DROP EVENT TRIGGER tsx_meddle");
    assert_eq!(run.code, 5, "{run:?}");
    assert_eq!(
        mismatches(&run),
        vec![
            "table \"tsx_many\".\"Short Rows\": 3 rows in the source snapshot, 2 on the target"
                .to_string(),
            "table \"tsx_many\".\"t_042\": 3 rows in the source snapshot; the target has no such table"
                .to_string(),
        ],
        "{run:?}"
    );
    // Every other table was counted, and found whole.
    assert_eq!(
        tgt.psql(
            "vfy_many_tgt",
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = 'tsx_many'"
        )
        .trim(),
        "230"
    );
}
