//! Reading a dump for `tsxfer restore`: its manifest checked, each unit's file loaded into
//! the target.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, pin_mut};

use super::zst::{Piece, read_compressed};
use super::{
    CATALOG, CHUNK_DDL, FileCheck, LARGE_OBJECT_SLICES, Manifest, ROLES, SCHEMA_DIR, UnitFile,
    check_files, rayon_pool, read_json, read_manifest,
};
use crate::copy::checksum::RowHasher;
use crate::copy::{CopyOptions, RowCounter, UnitOutcome, copy_error, target_sink};
use crate::error::{Error, ErrorKind, Result};
use crate::observe::progress::Progress;
use crate::pg::TargetTx;
use crate::plan::{CopyUnit, UnitKind};

/// Reads unit files of a dump for `restore`.
pub struct DumpReader {
    pub(super) dir: PathBuf,
    /// The dump's manifest format: how its large objects are written.
    pub(super) format: u32,
    pub(super) files: HashMap<(UnitKind, u32, u32), UnitFile>,
    pub(super) pool: rayon::ThreadPool,
}

impl DumpReader {
    fn new(dir: &Path, manifest: &Manifest, pool: rayon::ThreadPool) -> Result<DumpReader> {
        let mut files = HashMap::new();
        for f in &manifest.files {
            let unit = &manifest.extract.units[f.unit];
            files.insert((unit.kind, unit.oid, unit.part()), f.clone());
        }
        Ok(DumpReader {
            dir: dir.to_path_buf(),
            format: manifest.format,
            files,
            pool,
        })
    }

    /// Loads `unit` from its file into the target transaction the caller has open (and
    /// commits). A file that turns out damaged fails the unit before its COPY ends, so
    /// nothing of it stays. On error the caller must drop the connection.
    pub async fn load_unit(
        &self,
        tgt: &TargetTx<'_>,
        unit: &CopyUnit,
        options: CopyOptions,
        progress: &Progress,
        stream: usize,
    ) -> Result<UnitOutcome> {
        let buffer_size = options.buffer_size;
        let started = Instant::now();
        let file = self
            .files
            .get(&(unit.kind, unit.oid, unit.part()))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Copy,
                    format!("the dump's manifest has no file for {}", unit.title()),
                )
            })?;
        let sliced = self.format >= LARGE_OBJECT_SLICES;
        let sink = if unit.kind == UnitKind::LargeObjects {
            tgt.execute(if sliced {
                "CREATE TEMPORARY TABLE tsxfer_large_objects (loid oid, comment text, off int8, data bytea) ON COMMIT DROP"
            } else {
                "CREATE TEMPORARY TABLE tsxfer_large_objects (loid oid, comment text, data bytea) ON COMMIT DROP"
            })
            .await?;
            tgt.copy_in("COPY pg_temp.tsxfer_large_objects FROM STDIN (FORMAT binary)")
                .await
                .map_err(|e| {
                    e.with_kind(ErrorKind::Copy)
                        .context("loading the large objects into the target")
                })?
        } else {
            target_sink(tgt, unit, options).await?
        };
        pin_mut!(sink);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Piece>(2);
        let dir = self.dir.clone();
        let check = file.check.clone();
        self.pool
            .spawn(move || read_compressed(&dir, &check, buffer_size, &tx));
        let mut counter = RowCounter::new(unit.binary);
        let mut hasher = RowHasher::new(unit.binary);
        let mut bytes = 0u64;
        let mut blocked = Duration::ZERO;
        let mut rows_reported = 0u64;
        loop {
            match rx.recv().await {
                Some(Piece::Data(piece)) => {
                    counter.feed(&piece);
                    hasher.feed(&piece);
                    let len = piece.len() as u64;
                    bytes += len;
                    let wait = Instant::now();
                    sink.send(piece)
                        .await
                        .map_err(|e| copy_error(unit, "target", e))?;
                    blocked += wait.elapsed();
                    let rows = if unit.kind == UnitKind::LargeObjects {
                        0
                    } else {
                        counter.rows() - rows_reported
                    };
                    rows_reported += rows;
                    progress.unit_progress(stream, unit.kind, len, rows);
                }
                Some(Piece::End) => break,
                Some(Piece::Failed(why)) => {
                    return Err(Error::new(
                        ErrorKind::Copy,
                        format!("{}: {why}; nothing of it was loaded", unit.title()),
                    ));
                }
                None => {
                    return Err(Error::new(
                        ErrorKind::Internal,
                        format!("reading the file of {} stopped unexpectedly", unit.title()),
                    ));
                }
            }
        }
        if !counter.complete() || counter.rows() != file.rows {
            return Err(Error::new(
                ErrorKind::Copy,
                format!(
                    "{}: {} holds {} rows{}, the manifest says {}; nothing of it was loaded",
                    unit.title(),
                    self.dir.join(&file.check.file).display(),
                    counter.rows(),
                    if counter.complete() {
                        ""
                    } else {
                        " and no end marker"
                    },
                    file.rows
                ),
            ));
        }
        let checksum = (unit.kind != UnitKind::LargeObjects).then(|| hasher.checksum());
        if let (Some(recorded), Some(read)) = (file.checksum, checksum)
            && recorded != read
        {
            return Err(Error::new(
                ErrorKind::Copy,
                format!(
                    "{}: the rows of {} have checksum {}, the manifest says {}; nothing of it was loaded",
                    unit.title(),
                    self.dir.join(&file.check.file).display(),
                    read.hex(),
                    recorded.hex()
                ),
            ));
        }
        let written = sink
            .as_mut()
            .finish()
            .await
            .map_err(|e| copy_error(unit, "target", e))?;
        if written != file.rows {
            return Err(Error::new(
                ErrorKind::Copy,
                format!(
                    "loading {}: {} rows in the file but the target took {written}",
                    unit.title(),
                    file.rows
                ),
            ));
        }
        if unit.kind == UnitKind::LargeObjects {
            let make = if sliced {
                "SELECT pg_catalog.lo_create(loid) FROM pg_temp.tsxfer_large_objects WHERE off = 0;
                 SELECT pg_catalog.lo_put(loid, off, data) FROM pg_temp.tsxfer_large_objects
                 WHERE pg_catalog.octet_length(data) > 0;"
            } else {
                "SELECT pg_catalog.lo_from_bytea(loid, data) FROM pg_temp.tsxfer_large_objects;"
            };
            tgt.execute(&format!(
                "{make}
                 DO $$DECLARE r record; BEGIN
                   FOR r IN SELECT loid, comment FROM pg_temp.tsxfer_large_objects WHERE comment IS NOT NULL LOOP
                     EXECUTE format('COMMENT ON LARGE OBJECT %s IS %L', r.loid, r.comment);
                   END LOOP;
                 END$$",
            ))
            .await
            .map_err(|e| e.with_kind(ErrorKind::Copy).context("making the large objects"))?;
        }
        // A sliced large object is several rows of the file: count the objects.
        let rows = if unit.kind == UnitKind::LargeObjects && sliced {
            let objects: i64 = tgt
                .query_one(
                    "SELECT count(*) FROM pg_temp.tsxfer_large_objects WHERE off = 0",
                    &[],
                )
                .await?
                .get(0);
            objects as u64
        } else {
            written
        };
        progress.unit_progress(stream, unit.kind, 0, rows - rows_reported);
        Ok(UnitOutcome {
            rows,
            bytes,
            seconds: started.elapsed().as_secs_f64(),
            blocked_seconds: blocked.as_secs_f64(),
            checksum,
        })
    }
}

/// A complete dump, checked: its manifest, its roles, and a reader for its unit files.
/// Schema and role files are checked whole; unit files for presence and size here, and
/// against their checksum as they are loaded.
pub fn open_for_restore(dir: &Path, jobs: usize) -> Result<(Manifest, DumpReader)> {
    let mut manifest = read_manifest(dir)?;
    if manifest.completed_at.is_none() {
        return Err(Error::new(
            ErrorKind::Preflight,
            format!(
                "the dump in {} did not finish; complete it with the same `tsxfer dump` command (add --allow-inconsistent), then restore it",
                dir.display()
            ),
        ));
    }
    let pool = rayon_pool(jobs)?;
    let whole: Vec<FileCheck> = manifest
        .schema_files
        .iter()
        .chain(manifest.roles_file.iter())
        .cloned()
        .collect();
    let mut problems = check_files(&pool, dir, &whole);
    for f in &manifest.files {
        let path = dir.join(&f.check.file);
        match fs::metadata(&path) {
            Ok(m) if m.len() == f.check.bytes => {}
            Ok(m) if m.len() < f.check.bytes => problems.push(format!(
                "{} is truncated: {} bytes, the manifest says {}",
                path.display(),
                m.len(),
                f.check.bytes
            )),
            Ok(m) => problems.push(format!(
                "{} is {} bytes, the manifest says {}",
                path.display(),
                m.len(),
                f.check.bytes
            )),
            Err(_) => problems.push(format!("{} is missing", path.display())),
        }
    }
    if let Err(why) = manifest.extract.privileges.check_words() {
        problems.push(format!("the manifest is damaged: {why}"));
    }
    if manifest.files.len() != manifest.extract.units.len() {
        problems.push(format!(
            "the manifest lists {} unit files for {} units",
            manifest.files.len(),
            manifest.extract.units.len()
        ));
    }
    if !problems.is_empty() {
        problems.sort();
        return Err(Error::new(
            ErrorKind::Preflight,
            format!(
                "the dump in {} is damaged ({} problem(s)): {}",
                dir.display(),
                problems.len(),
                problems.join("; ")
            ),
        ));
    }
    if manifest.roles_file.is_some() {
        manifest.extract.roles = read_json(&dir.join(ROLES))?;
    }
    let catalog = format!("{SCHEMA_DIR}/{CATALOG}");
    if manifest.schema_files.iter().any(|f| f.file == catalog) {
        manifest.extract.catalog = read_json(&dir.join(catalog))?;
    }
    // SQL to run on the target, as the pg_dump archive is: only once its checksum matched
    // the manifest's (above).
    let chunk_ddl = format!("{SCHEMA_DIR}/{CHUNK_DDL}");
    if manifest.schema_files.iter().any(|f| f.file == chunk_ddl) {
        manifest.extract.chunk_ddl = read_json(&dir.join(chunk_ddl))?;
    }
    let reader = DumpReader::new(dir, &manifest, pool)?;
    Ok((manifest, reader))
}
