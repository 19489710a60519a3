//! Offline mode: `tsxfer dump` into a directory, `tsxfer restore` from it.

use std::path::{Path, PathBuf};

use crate::cluster::{self, TSDBADMIN_PASSWORD};
use crate::compare::{compare_databases, count_rows, unavoidable};
use crate::sources::assert_refused;
use crate::{conninfos, fixture, load_source, tsxfer};

/// A fresh, empty directory for one test's dump.
pub fn dump_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tsxfer-dump-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

/// The unit files the manifest lists, with their relation.
fn unit_files(dir: &Path) -> Vec<(String, PathBuf)> {
    manifest(dir)["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["relation"].as_str().unwrap().to_string(),
                dir.join(f["file"].as_str().unwrap()),
            )
        })
        .collect()
}

fn assert_same(src_db: &str, tgt_db: &str) {
    assert_same_but(src_db, tgt_db, &[]);
}

/// As [`assert_same`], but for differing row contents of the tables `rewritten`.
fn assert_same_but(src_db: &str, tgt_db: &str, rewritten: &[String]) {
    let (src, tgt) = cluster::clusters();
    let diffs: Vec<String> = compare_databases(src, src_db, tgt, tgt_db)
        .into_iter()
        .filter(|d| !unavoidable(d))
        .filter(|d| {
            !(d.contains("same row count") && rewritten.iter().any(|t| d.contains(t.as_str())))
        })
        .collect();
    assert!(
        diffs.is_empty(),
        "source and restored target differ:\n{}",
        diffs.join("\n")
    );
}

/// `tsxfer restore` of `dir` into `target`, without a metrics endpoint.
pub fn restore(dir: &str, target: &str) -> crate::Run {
    tsxfer(&[
        "restore",
        "--dir",
        dir,
        "--target",
        target,
        "--metrics-addr",
        "off",
    ])
}

#[test]
fn dump_then_restore_gives_the_target_a_direct_migration_gives() {
    let (src, tgt) = cluster::clusters();
    let compressed = load_source(src, "off_src", true);
    if compressed {
        // Batches whose columns hold no value at all (timescaledb#8893) go through files too.
        src.psql_file("off_src", &fixture("compression_null_batches.sql"));
    }
    // A table big enough to be dumped in parts (about 17 MB, more than its share of the
    // data over four streams, in parts of 1 MiB).
    src.psql(
        "off_src",
        "CREATE TABLE public.wide AS SELECT g AS id, repeat(md5(g::text), 4) AS v FROM generate_series(1, 100000) g",
    );
    tgt.create_cloud_like_database("off_tgt");
    let (source, target) = conninfos(src, "off_src", tgt, "off_tgt");
    let dir = dump_dir("whole");
    let d = dir.to_str().unwrap();

    let run = tsxfer(&[
        "dump",
        "--source",
        &source,
        "--dir",
        d,
        "--jobs",
        "4",
        "--split-tables-larger-than",
        "1MiB",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("dumped "), "{run:?}");
    // Nothing was written to any target, and the dump is whole.
    let m = manifest(&dir);
    assert_eq!(m["format"], 4);
    assert!(m["completed_at"].is_string(), "{m}");
    let units = m["extract"]["units"].as_array().unwrap().len();
    assert_eq!(m["files"].as_array().unwrap().len(), units);
    assert!(units > 10, "{m}");
    let files = unit_files(&dir);
    for (relation, file) in &files {
        assert!(file.exists(), "{relation}: {}", file.display());
    }
    let wide_parts = files
        .iter()
        .filter(|(r, _)| r.starts_with("\"public\".\"wide\" (part "))
        .count();
    assert!(
        wide_parts >= 5,
        "public.wide in {wide_parts} parts: {files:?}"
    );
    // Tables as the restore report lists them: a table dumped in parts once.
    let tables: std::collections::BTreeSet<String> = m["extract"]["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| format!("{} {}.{}", u["kind"], u["schema"], u["name"]))
        .collect();
    // Password hashes stay out of the manifest, in a file only its owner may read.
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    assert!(
        !text.contains("SCRAM-SHA-256$"),
        "a hash is in the manifest"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("roles.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "roles.json is readable by others: {mode:o}"
    );
    if compressed {
        assert!(
            m["extract"]["units"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u["kind"] == "compressed_chunk"),
            "no compressed chunk unit in the dump"
        );
    }

    let report = dir.join("restore-report.json");
    let run = tsxfer(&[
        "restore",
        "--dir",
        d,
        "--target",
        &target,
        "--jobs",
        "3",
        "--metrics-addr",
        "off",
        "--verify",
        "checksum",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("result: success"), "{run:?}");
    assert!(
        !run.all().contains(TSDBADMIN_PASSWORD),
        "the password leaked"
    );
    let mut rewritten = Vec::new();
    if compressed {
        assert!(run.stdout.contains("placeholder sent as NULL"), "{run:?}");
        // The placeholder became NULL in the compressed rows of tsx_ts.sparse: those rows
        // differ as stored and must read back the same through the hypertable.
        let whole =
            "SELECT count(*) || ' ' || md5(string_agg(md5(s::text), '' ORDER BY md5(s::text)))
                     FROM tsx_ts.sparse s";
        assert_eq!(src.psql("off_src", whole), tgt.psql("off_tgt", whole));
        rewritten = src
            .psql(
                "off_src",
                "SELECT string_agg(c.schema_name || '.' || c.table_name, ' ')
                 FROM _timescaledb_catalog.chunk c
                 JOIN _timescaledb_catalog.hypertable h ON h.compressed_hypertable_id = c.hypertable_id
                 WHERE h.table_name = 'sparse'",
            )
            .split(' ')
            .map(str::to_string)
            .collect();
    }
    assert_same_but("off_src", "off_tgt", &rewritten);
    assert_eq!(
        tgt.psql("off_tgt", "SELECT current_setting('timescaledb.restoring')"),
        "off"
    );
    // The report verified every unit against the counts the dump recorded.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["units"].as_array().unwrap().len(), tables.len());
    // ... and by content: each unit's rows read back from the target have the checksum
    // the dump recorded (a table in parts: its parts' checksums added up).
    let recorded: std::collections::HashMap<String, serde_json::Value> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["relation"].as_str().unwrap().to_string(),
                f["checksum"].clone(),
            )
        })
        .collect();
    for u in json["units"].as_array().unwrap() {
        assert_eq!(u["rows"].as_i64(), u["target_rows"].as_i64(), "{u}");
        if u["kind"] == "large_objects" {
            continue;
        }
        assert!(u["checksum"].is_string(), "{u}");
        assert_eq!(u["checksum"], u["target_checksum"], "{u}");
        if let Some(c) = recorded.get(u["relation"].as_str().unwrap()) {
            assert_eq!(&u["checksum"], c, "{u}");
        }
    }
    let wide = json["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["relation"] == "\"public\".\"wide\"")
        .expect("public.wide in the report");
    assert_eq!(wide["parts"].as_u64(), Some(wide_parts as u64), "{wide}");
    assert_eq!(wide["target_rows"].as_i64(), Some(100_000), "{wide}");

    // The directory is not a second target: restoring it again into the same database
    // is refused (the database is no longer empty), and a second dump into it too.
    let again = tsxfer(&["dump", "--source", &source, "--dir", d]);
    assert_refused(&again, 3, "already holds a complete dump");
    std::fs::remove_dir_all(&dir).ok();
}

/// Rewrites the large-objects file of the dump in `dir` as formats 1 and 2 held it, one
/// row of (oid, comment, data) per object, read from `source` with psql, and mends its
/// entry in `manifest` (size, SHA-256, rows).
fn write_whole_large_objects(dir: &Path, manifest: &mut serde_json::Value, source: &str) {
    use sha2::Digest;
    let out = std::process::Command::new(cluster::pg_bin().join("psql"))
        .args(["-X", "-d", source, "-c"])
        .arg(
            "COPY (SELECT oid, pg_catalog.obj_description(oid, 'pg_largeobject'), pg_catalog.lo_get(oid) \
             FROM pg_catalog.pg_largeobject_metadata ORDER BY oid) TO STDOUT (FORMAT binary)",
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "psql: {out:?}");
    let file = zstd::encode_all(&out.stdout[..], 3).unwrap();
    let entry = manifest["files"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["kind"] == "large_objects")
        .expect("the dump has large objects");
    std::fs::write(dir.join(entry["file"].as_str().unwrap()), &file).unwrap();
    let sha: String = sha2::Sha256::digest(&file)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    entry["bytes"] = file.len().into();
    entry["sha256"] = sha.into();
    entry["rows"] = 3.into();
}

#[test]
fn damaged_files_are_named_and_no_unit_is_loaded_half_way() {
    let (src, tgt) = cluster::clusters();
    load_source(src, "off_dmg_src", false);
    // Enough rows that the damage lands in the middle of a unit's stream.
    src.psql(
        "off_dmg_src",
        "CREATE TABLE public.big AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 200000) g",
    );
    let (source, _) = conninfos(src, "off_dmg_src", tgt, "unused");
    let dir = dump_dir("damaged");
    let d = dir.to_str().unwrap();
    let run = tsxfer(&["dump", "--source", &source, "--dir", d, "--jobs", "2"]);
    assert_eq!(run.code, 0, "{run:?}");
    let files = unit_files(&dir);
    let big = files
        .iter()
        .find(|(r, _)| r == "\"public\".\"big\"")
        .map(|(_, f)| f.clone())
        .expect("a unit file for public.big");
    let good = std::fs::read(&big).unwrap();

    // A truncated file: refused before anything is written, naming the file.
    std::fs::write(&big, &good[..good.len() / 2]).unwrap();
    tgt.create_cloud_like_database("off_dmg_tgt");
    tgt.psql("off_dmg_tgt", "DROP EXTENSION timescaledb");
    let (_, target) = conninfos(src, "off_dmg_src", tgt, "off_dmg_tgt");
    let run = restore(d, &target);
    let name = big.file_name().unwrap().to_str().unwrap();
    assert_refused(&run, 3, name);
    assert_refused(&run, 3, "is truncated");
    assert_eq!(
        tgt.psql(
            "off_dmg_tgt",
            "SELECT count(*) FROM pg_class WHERE relname = 'big'"
        ),
        "0",
        "a refused restore changed the target"
    );

    // A file of the right size with one byte changed: the unit fails on its checksum
    // before its COPY ends, so none of its rows stay, and the error names the file.
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x55;
    std::fs::write(&big, &bad).unwrap();
    let run = restore(d, &target);
    assert_refused(&run, 4, name);
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("fails its checksum") || last.contains("cannot be read"),
        "{run:?}"
    );
    assert_eq!(count_rows(tgt, "off_dmg_tgt", "public.big"), 0);

    // With the file mended, the same command resumes the restore and finishes it. The
    // dump is made what the tsxfer before tables in parts wrote first (format 1: this
    // dump has no parts, and its large objects whole, a row each): that is still read.
    std::fs::write(&big, &good).unwrap();
    let manifest_path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    let mut old = manifest(&dir);
    assert_eq!(old["format"], 4);
    old["format"] = 1.into();
    write_whole_large_objects(&dir, &mut old, &source);
    std::fs::write(&manifest_path, serde_json::to_string(&old).unwrap()).unwrap();
    let run = restore(d, &target);
    assert_eq!(run.code, 0, "{run:?}");
    assert_same("off_dmg_src", "off_dmg_tgt");

    // A missing manifest, and one from an unknown format version.
    std::fs::write(
        &manifest_path,
        text.replacen("\"format\": 4", "\"format\": 99", 1),
    )
    .unwrap();
    let run = restore(d, &target);
    assert_refused(&run, 3, "format 99");
    std::fs::remove_file(&manifest_path).unwrap();
    let run = restore(d, &target);
    assert_refused(&run, 3, "manifest.json is missing");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_interrupted_dump_resumes_and_keeps_what_it_wrote() {
    let (src, tgt) = cluster::clusters();
    load_source(src, "off_int_src", false);
    // One unit big enough to be in flight when the process dies; the small ones are
    // done by then (the largest unit is taken first, the others by the second stream).
    src.psql(
        "off_int_src",
        "CREATE TABLE public.huge AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS v
         FROM generate_series(1, 2000000) g",
    );
    let (source, _) = conninfos(src, "off_int_src", tgt, "unused");
    let dir = dump_dir("interrupted");
    let d = dir.to_str().unwrap();
    let journal = dir.join("data/done.jsonl");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tsxfer"))
        .args(["dump", "--source", &source, "--dir", d, "--jobs", "2"])
        .args(["--metrics-addr", "off"])
        .current_dir(crate::scratch_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let lines = std::fs::read_to_string(&journal)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 3 {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 120,
            "the dump wrote no unit in 2 minutes"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the dump ended ({status}) before it could be interrupted");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        manifest(&dir)["completed_at"].is_null(),
        "the dump finished before it was killed; the test needs a bigger unit"
    );

    // The snapshot died with the process: going on needs consent.
    let run = tsxfer(&["dump", "--source", &source, "--dir", d, "--jobs", "2"]);
    assert_refused(&run, 3, "--allow-inconsistent");
    // What the first command chose stays: other filters are refused.
    let run = tsxfer(&[
        "dump",
        "--source",
        &source,
        "--dir",
        d,
        "--allow-inconsistent",
        "-N",
        "tsx_app",
    ]);
    assert_refused(&run, 3, "-N tsx_app");

    let run = tsxfer(&[
        "dump",
        "--source",
        &source,
        "--dir",
        d,
        "--jobs",
        "2",
        "--allow-inconsistent",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let kept: usize = run
        .stdout
        .split('(')
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of kept units: {run:?}"));
    assert!(kept >= 3, "{run:?}");
    let m = manifest(&dir);
    assert_eq!(m["snapshots"].as_array().unwrap().len(), 2, "{m}");
    assert!(!dir.join("data/done.jsonl").exists());

    tgt.create_cloud_like_database("off_int_tgt");
    tgt.psql("off_int_tgt", "DROP EXTENSION timescaledb");
    let (_, target) = conninfos(src, "off_int_src", tgt, "off_int_tgt");
    let run = restore(d, &target);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("2 snapshots"), "{run:?}");
    assert_same("off_int_src", "off_int_tgt");
    std::fs::remove_dir_all(&dir).ok();
}

/// Large objects are copied in parts of a thousand objects, each committed alone, and
/// read in slices of 1 MiB, so no object is ever one value (a value cannot pass 1 GB):
/// live, and through a dump whose files hold the slices.
#[test]
fn large_objects_travel_in_parts_and_slices_live_and_through_a_dump() {
    let (src, tgt) = cluster::clusters();
    src.create_database("lo_src");
    src.psql(
        "lo_src",
        "CREATE EXTENSION IF NOT EXISTS timescaledb;
         SELECT count(lo_from_bytea(0, convert_to('object ' || g, 'UTF8'))) FROM generate_series(1, 2500) g;
         SELECT lo_from_bytea(0, decode(string_agg(md5(g::text), ''), 'hex')) FROM generate_series(1, 170000) g;
         SELECT lo_from_bytea(0, ''::bytea);
         DO $$BEGIN EXECUTE format('COMMENT ON LARGE OBJECT %s IS %L',
             (SELECT max(oid) FROM pg_largeobject_metadata), 'the empty one'); END$$;",
    );
    let big: i64 = src
        .psql(
            "lo_src",
            "SELECT max(octet_length(lo_get(oid))) FROM pg_largeobject_metadata",
        )
        .parse()
        .unwrap();
    assert!(big > 2 << 20, "one object spans three slices: {big}");
    let objects = "SELECT count(*) FROM pg_largeobject_metadata";
    assert_eq!(src.psql("lo_src", objects), "2502");

    // Live: three parts, each its own unit, the whole verified by count.
    tgt.create_cloud_like_database("lo_tgt_live");
    let (source, target) = conninfos(src, "lo_src", tgt, "lo_tgt_live");
    let report = std::env::temp_dir().join(format!("lo-live-{}.json", std::process::id()));
    let run = tsxfer(&[
        "--source",
        &source,
        "--target",
        &target,
        "--jobs",
        "2",
        "--metrics-addr",
        "off",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    std::fs::remove_file(&report).ok();
    let lo = json["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["kind"] == "large_objects")
        .expect("the large objects in the report");
    assert_eq!(lo["parts"].as_u64(), Some(3), "{lo}");
    assert_eq!(lo["rows"].as_i64(), Some(2502), "{lo}");
    assert_eq!(lo["target_rows"].as_i64(), Some(2502), "{lo}");
    assert_eq!(tgt.psql("lo_tgt_live", objects), "2502");
    assert_same("lo_src", "lo_tgt_live");
    // `tsxfer verify` reads them in slices too, and sees a byte changed in the last slice
    // of the big object.
    let verify = |target: &str| {
        tsxfer(&[
            "verify",
            "--source",
            &source,
            "--target",
            target,
            "--metrics-addr",
            "off",
        ])
    };
    let run = verify(&target);
    assert_eq!(run.code, 0, "{run:?}");
    tgt.psql(
        "lo_tgt_live",
        "SELECT lo_put(oid, 2621440, CASE WHEN lo_get(oid, 2621440, 1) = '\\x00'::bytea
                                         THEN '\\x01'::bytea ELSE '\\x00'::bytea END)
         FROM pg_largeobject_metadata WHERE octet_length(lo_get(oid)) > 2621440",
    );
    let run = verify(&target);
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.all().contains("large objects"), "{run:?}");

    // Through a dump: one file per part, the big object in three rows of its file.
    let dir = dump_dir("lo");
    let d = dir.to_str().unwrap();
    let run = tsxfer(&["dump", "--source", &source, "--dir", d, "--jobs", "2"]);
    assert_eq!(run.code, 0, "{run:?}");
    let m = manifest(&dir);
    let files: Vec<&serde_json::Value> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["relation"].as_str().unwrap().starts_with("large objects"))
        .collect();
    assert_eq!(files.len(), 3, "{m}");
    let slices: i64 = files.iter().map(|f| f["rows"].as_i64().unwrap()).sum();
    assert_eq!(slices, 2504, "2501 objects of one slice, one of three: {m}");
    tgt.create_cloud_like_database("lo_tgt_dump");
    let (_, target) = conninfos(src, "lo_src", tgt, "lo_tgt_dump");
    let run = restore(d, &target);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(tgt.psql("lo_tgt_dump", objects), "2502");
    assert_same("lo_src", "lo_tgt_dump");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bytes of the files under `dir`, recursively.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                dir_bytes(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

#[test]
fn a_dump_of_random_text_is_smaller_than_pg_dump_and_restores_equal() {
    let (src, tgt) = cluster::clusters();
    // Text only entropy coding shrinks (md5 hex) and jsonb of random values: the case
    // where zstd's level 3 wrote more than pg_dump's gzip.
    src.create_database("offz_src");
    src.psql(
        "offz_src",
        "CREATE EXTENSION timescaledb; \
         CREATE TABLE public.notes AS \
         SELECT g AS id, md5(random()::text) || md5(random()::text) AS body, \
                jsonb_build_object('k', md5(random()::text), 'n', (random() * 1e6)::int, 'x', random()) AS attrs \
         FROM generate_series(1, 150000) g; \
         ALTER TABLE public.notes ADD PRIMARY KEY (id)",
    );
    tgt.create_cloud_like_database("offz_tgt");
    let (source, target) = conninfos(src, "offz_src", tgt, "offz_tgt");
    let dir = dump_dir("random");
    let d = dir.to_str().unwrap();
    let run = tsxfer(&["dump", "--source", &source, "--dir", d, "--jobs", "2"]);
    assert_eq!(run.code, 0, "{run:?}");
    let m = manifest(&dir);
    assert_eq!(m["compress_level"], 1, "{m}");
    assert_eq!(m["compress_window_log"], 24, "{m}");

    let pg_dump_dir = dump_dir("random-pg_dump");
    let out = std::process::Command::new(cluster::pg_bin().join("pg_dump"))
        .args(["-d", &source, "-Fd", "-f"])
        .arg(&pg_dump_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_dump: {out:?}");
    let (ours, theirs) = (dir_bytes(&dir), dir_bytes(&pg_dump_dir));
    assert!(
        ours < theirs,
        "the dump is {ours} bytes, pg_dump -Fd's {theirs}"
    );

    let run = restore(d, &target);
    assert_eq!(run.code, 0, "{run:?}");
    assert_same("offz_src", "offz_tgt");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&pg_dump_dir);
}

/// The chunk tables' DDL is a file of the dump (format 4); a dump of the version before
/// (format 3) holds it as pg_dump archives, and those are still restored.
#[test]
fn chunk_ddl_comes_from_the_dump_and_a_dump_with_chunk_archives_still_restores() {
    use sha2::Digest;
    let (src, tgt) = cluster::clusters();
    load_source(src, "off_ddl_src", true);
    let (source, target) = conninfos(src, "off_ddl_src", tgt, "off_ddl_tgt");
    let dir = dump_dir("chunk-ddl");
    let d = dir.to_str().unwrap();
    let run = tsxfer(&[
        "dump",
        "--source",
        &source,
        "--dir",
        d,
        "--metrics-addr",
        "off",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let mut m = manifest(&dir);
    let listed = |m: &serde_json::Value, f: &str| {
        m["schema_files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["file"] == f)
    };
    assert!(listed(&m, "schema/chunk-ddl.json"), "{m}");
    let ddl: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("schema/chunk-ddl.json")).unwrap())
            .unwrap();
    let chunks = src.psql(
        "off_ddl_src",
        "SELECT format('%I.%I', schema_name, table_name) FROM _timescaledb_catalog.chunk
         WHERE NOT dropped ORDER BY id",
    );
    assert_eq!(
        ddl["tables"].as_array().unwrap().len(),
        chunks.lines().count(),
        "{ddl}"
    );
    tgt.create_cloud_like_database("off_ddl_tgt");
    let run = restore(d, &target);
    assert_eq!(run.code, 0, "{run:?}");
    assert_same("off_ddl_src", "off_ddl_tgt");

    // The same dump as the version before wrote it: the chunks' DDL in a pg_dump archive.
    let archive = dir.join("schema/chunks-0000.dump");
    let mut dump = std::process::Command::new(cluster::pg_bin().join("pg_dump"));
    dump.args([
        "--format=custom",
        "--schema-only",
        "--no-blobs",
        "-d",
        &source,
    ])
    .arg(format!("--file={}", archive.display()));
    for c in chunks.lines() {
        dump.arg(format!("--table={c}"));
    }
    let out = dump.output().unwrap();
    assert!(out.status.success(), "pg_dump: {out:?}");
    std::fs::remove_file(dir.join("schema/chunk-ddl.json")).unwrap();
    let bytes = std::fs::read(&archive).unwrap();
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    m["format"] = 3.into();
    m["extract"]["chunk_archives"] = serde_json::json!(["chunks-0000.dump"]);
    let files = m["schema_files"].as_array_mut().unwrap();
    files.retain(|e| e["file"] != "schema/chunk-ddl.json");
    files.push(serde_json::json!({
        "file": "schema/chunks-0000.dump",
        "bytes": bytes.len(),
        "sha256": sha,
    }));
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string(&m).unwrap(),
    )
    .unwrap();
    tgt.create_cloud_like_database("off_ddl_old");
    let (_, old) = conninfos(src, "off_ddl_src", tgt, "off_ddl_old");
    let run = restore(d, &old);
    assert_eq!(run.code, 0, "{run:?}");
    assert_same("off_ddl_src", "off_ddl_old");
    std::fs::remove_dir_all(&dir).ok();
}
