//! `tsxfer dump`: what a migration reads from the source, written into a directory.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures_util::{StreamExt, pin_mut};
use serde::Serialize;
use tracing::{info, warn};

use crate::copy::checksum;
use crate::copy::{Gather, UnitOutcome, copy_error};
use crate::dump::zst::write_compressed;
use crate::dump::{
    CATALOG, CHUNK_DDL, DATA_DIR, FORMAT, FileCheck, JOURNAL, MANIFEST, Manifest, ROLES, RoleEntry,
    SCHEMA_DIR, UnitFile, WINDOW_LOG, check_file, dir_size, file_problem, io_error, now_utc,
    on_pool, rayon_pool, read_journal, read_manifest, remove_dump, unit_file_name,
    write_atomically, write_manifest,
};
use crate::error::{Error, ErrorKind, Result};
use crate::observe::progress::Progress;
use crate::pg::Source;
use crate::pg::conninfo::ConnInfo;
use crate::pg::retry::Retry;
use crate::plan::unit_book::{RecordedUnit, UnitBook};
use crate::plan::{CopyUnit, UnitKind, human_bytes};
use crate::run::pool::{Stop, run_workers};

/// What `tsxfer dump` needs.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    pub source: ConnInfo,
    pub dir: PathBuf,
    pub jobs: usize,
    pub buffer_size: usize,
    pub pg_bin_dir: Option<PathBuf>,
    pub retries: u32,
    pub compress_level: i32,
    pub restart: bool,
    pub allow_inconsistent: bool,
    pub hypertables: Vec<crate::source::convert::HypertableSpec>,
    pub filters: crate::source::filter::Filters,
    /// Plain tables bigger than this (and than their share of the data) are dumped in
    /// parts of about this size (0: never).
    pub split_bytes: i64,
}

impl DumpOptions {
    /// What the dump is asked to copy ([`crate::source::filter::selection`]).
    fn selection(&self) -> String {
        crate::source::filter::selection(&self.filters, &self.hypertables, self.split_bytes)
    }
}

/// The source side of a unit in a dump: its binary COPY stream; large objects in slices
/// ([`CopyUnit::large_objects_copy_out_sql`]).
pub(super) fn dump_sql(unit: &CopyUnit) -> String {
    if unit.kind == UnitKind::LargeObjects {
        unit.large_objects_copy_out_sql()
    } else {
        unit.copy_out_sql()
    }
}

pub(super) fn refusal(e: Error) -> Error {
    match e.kind() {
        ErrorKind::Usage | ErrorKind::Interrupted => e,
        _ => e.with_kind(ErrorKind::Preflight),
    }
}

/// The dump pool's shared state.
pub(super) struct Dumping {
    pub(super) opts: DumpOptions,
    pub(super) snapshot: String,
    pub(super) units: Vec<CopyUnit>,
    pub(super) queue: Mutex<std::collections::VecDeque<usize>>,
    pub(super) journal: Mutex<File>,
    pub(super) written: Mutex<Vec<UnitFile>>,
    pub(super) progress: Arc<Progress>,
    pub(super) stop: Stop,
    pub(super) pool: Arc<rayon::ThreadPool>,
}

impl Dumping {
    fn record(&self, file: UnitFile) -> Result<()> {
        let line = serde_json::to_string(&file).expect("a unit file serializes");
        let path = self.opts.dir.join(DATA_DIR).join(JOURNAL);
        {
            let mut j = self.journal.lock().unwrap_or_else(|p| p.into_inner());
            writeln!(j, "{line}")
                .and_then(|()| j.sync_data())
                .map_err(|e| io_error("cannot write", &path, e))?;
        }
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(file);
        Ok(())
    }
}

/// Reads unit `index` from the source in the dump's snapshot into its compressed file.
pub(super) async fn dump_unit(
    src: &Source,
    d: &Dumping,
    index: usize,
    stream: usize,
) -> Result<UnitFile> {
    let unit = &d.units[index];
    let rel = unit_file_name(index, unit);
    let path = d.opts.dir.join(&rel);
    let partial = path.with_extension("zst.partial");
    src.begin_snapshot(Some(&d.snapshot))
        .await
        .map_err(|e| e.context(format!("opening the snapshot for {}", unit.title())))?;
    if !unit.binary {
        src.query(checksum::TEXT_SETTINGS, &[]).await?;
    }
    let out = src.copy_out(&dump_sql(unit)).await.map_err(|e| {
        e.with_kind(ErrorKind::Copy)
            .context(format!("reading {} from the source", unit.title()))
    })?;
    pin_mut!(out);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let level = d.opts.compress_level;
    let file = partial.clone();
    d.pool.spawn(move || {
        let _ = done_tx.send(write_compressed(&file, level, rx));
    });
    // A dump records every unit's checksum: the restore verifies by content.
    let mut gather = Gather::new(unit, d.opts.buffer_size, true);
    let mut bytes = 0u64;
    loop {
        let next = out.next().await;
        let end = next.is_none();
        if let Some(chunk) = next {
            gather.push(&chunk.map_err(|e| copy_error(unit, "source", e))?);
        }
        if let Some((piece, rows)) = gather.ready(end) {
            let len = piece.len() as u64;
            bytes += len;
            gather.hash(&piece).await?;
            if tx.send(piece).await.is_err() {
                // The writer stopped; its error is read below.
                break;
            }
            d.progress.unit_progress(stream, unit.kind, len, rows);
        }
        if end {
            break;
        }
    }
    drop(tx);
    let (file_bytes, sha256) = done_rx
        .await
        .map_err(|_| Error::new(ErrorKind::Internal, "a compression thread died"))?
        .map_err(|e| io_error("cannot write", &partial, e))?;
    gather.check_complete(unit, "reading")?;
    fs::rename(&partial, &path).map_err(|e| io_error("cannot write", &path, e))?;
    src.end().await?;
    Ok(UnitFile {
        unit: index,
        relation: unit.title(),
        kind: unit.kind,
        check: FileCheck {
            file: rel,
            bytes: file_bytes,
            sha256,
        },
        rows: gather.rows(),
        stream_bytes: bytes,
        snapshot: d.snapshot.clone(),
        checksum: gather
            .checksum()
            .await?
            .filter(|_| unit.kind != UnitKind::LargeObjects),
    })
}

/// One stream of the dump: takes units off the queue until none is left, retrying
/// transient failures.
pub(super) async fn dump_worker(d: Arc<Dumping>, n: usize) {
    let mut src: Option<Source> = None;
    while !d.stop.halted() {
        let next = d
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        let Some(index) = next else { return };
        let unit = d.units[index].clone();
        let mut attempts = 0u32;
        loop {
            d.progress.unit_started(n, &unit);
            let started = Instant::now();
            let result = async {
                if src.is_none() {
                    src = Some(
                        Retry::new(d.opts.retries, d.stop.drain_flag())
                            .source(&d.opts.source, &format!("dump {n}"))
                            .await?,
                    );
                }
                dump_unit(src.as_ref().expect("connected above"), &d, index, n).await
            }
            .await;
            match result {
                Ok(file) => {
                    let outcome = UnitOutcome {
                        rows: file.rows,
                        bytes: file.stream_bytes,
                        seconds: started.elapsed().as_secs_f64(),
                        blocked_seconds: 0.0,
                        checksum: file.checksum,
                    };
                    // The journal line is written and synced on a blocking thread.
                    let journal = d.clone();
                    let recorded = tokio::task::spawn_blocking(move || journal.record(file))
                        .await
                        .map_err(|e| {
                            Error::new(ErrorKind::Internal, format!("the journal writer died: {e}"))
                        })
                        .and_then(|r| r);
                    if let Err(e) = recorded {
                        return d.stop.fail(e);
                    }
                    d.progress.unit_finished(n, &unit, &outcome);
                    break;
                }
                Err(e) => {
                    src = None;
                    attempts += 1;
                    let retry = e.is_retryable() && attempts <= d.opts.retries && !d.stop.halted();
                    d.progress.unit_failed(n, &unit, retry);
                    if !retry {
                        return d.stop.fail(e);
                    }
                    let policy = Retry::new(d.opts.retries, d.stop.drain_flag());
                    if policy.wait(&unit.title(), &e, attempts).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// What `tsxfer dump` did, for its summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DumpSummary {
    pub units: usize,
    pub units_kept: usize,
    pub rows: u64,
    pub stream_bytes: u64,
    pub dir_bytes: u64,
    pub seconds: f64,
}

impl DumpSummary {
    pub fn text(&self, dir: &Path) -> String {
        let rate = self.stream_bytes as f64 / self.seconds.max(0.001) / 1e6;
        format!(
            "dumped {} units ({} kept from an earlier run), {} rows, {} of COPY data into {}: {} on disk ({:.0}%), {:.1}s, {rate:.0} MB/s\n",
            self.units,
            self.units_kept,
            self.rows,
            human_bytes(self.stream_bytes as i64),
            dir.display(),
            human_bytes(self.dir_bytes as i64),
            100.0 * self.dir_bytes as f64 / self.stream_bytes.max(1) as f64,
            self.seconds
        )
    }
}

/// Either starts a dump in an empty `dir` or returns the unfinished one it holds.
pub(super) fn prepare_dir(opts: &DumpOptions, source_id: &str) -> Result<Option<Manifest>> {
    let dir = &opts.dir;
    fs::create_dir_all(dir).map_err(|e| {
        Error::new(
            ErrorKind::Usage,
            format!("cannot make the dump directory {}: {e}", dir.display()),
        )
    })?;
    if !dir.join(MANIFEST).exists() {
        // What a dump that stopped before its manifest was written leaves behind.
        let ours = [SCHEMA_DIR, DATA_DIR, ROLES, "roles.tmp", "manifest.tmp"];
        let foreign = fs::read_dir(dir)
            .map_err(|e| io_error("cannot read", dir, e))?
            .flatten()
            .any(|e| !ours.iter().any(|o| e.file_name() == *o));
        if foreign {
            return Err(Error::new(
                ErrorKind::Preflight,
                format!(
                    "{} is not empty and holds no tsxfer dump; dump into a new or empty directory",
                    dir.display()
                ),
            ));
        }
        remove_dump(dir)?;
        return Ok(None);
    }
    if opts.restart {
        remove_dump(dir)?;
        info!(
            "--restart: the earlier dump in {} was removed",
            dir.display()
        );
        return Ok(None);
    }
    let m = read_manifest(dir)?;
    if let Some(done) = &m.completed_at {
        return Err(Error::new(
            ErrorKind::Preflight,
            format!(
                "{} already holds a complete dump of {} (finished {done}); restore it, dump into another directory, or replace it with --restart",
                dir.display(),
                m.extract.source
            ),
        ));
    }
    if m.format != FORMAT {
        return Err(Error::new(
            ErrorKind::Preflight,
            format!(
                "{} holds an unfinished dump in format {} that this tsxfer (format {FORMAT}) cannot finish; start over with --restart",
                dir.display(),
                m.format
            ),
        ));
    }
    if m.extract.source_id != source_id {
        return Err(Error::new(
            ErrorKind::Preflight,
            format!(
                "{} holds an unfinished dump of another source ({}); finish it from there, or start over with --restart",
                dir.display(),
                m.extract.source
            ),
        ));
    }
    let asked = opts.selection();
    if let Some(recorded) = m.selection.as_deref().filter(|r| *r != asked) {
        return Err(crate::source::filter::other_selection(
            &format!("the dump in {}", dir.display()),
            recorded,
            &asked,
        ));
    }
    if !opts.allow_inconsistent {
        let done = read_journal(dir).len();
        return Err(Error::new(
            ErrorKind::Preflight,
            format!(
                "{} holds an unfinished dump ({done} of {} units written); its snapshot is gone with its process, so the rest would come from another moment of the source: run again with --allow-inconsistent to finish it, or with --restart to start over",
                dir.display(),
                m.extract.units.len()
            ),
        ));
    }
    Ok(Some(m))
}

/// `tsxfer dump`: reads everything a migration reads from the source into `opts.dir`.
pub async fn dump(
    opts: &DumpOptions,
    progress: Arc<Progress>,
    drain: Arc<AtomicBool>,
) -> Result<DumpSummary> {
    let started = Instant::now();
    progress.phase("preflight");
    let src = Retry::new(opts.retries, drain.clone())
        .source(&opts.source, "dump coordinator")
        .await
        .map_err(refusal)?;
    let facts = crate::run::preflight::check_source(&src)
        .await
        .map_err(refusal)?;
    let source_id = crate::source::catalog::source_identity(&src).await?;
    let conversions = crate::source::convert::validate(&src, &opts.hypertables)
        .await
        .map_err(refusal)?;
    crate::source::convert::check_source_kind(&conversions, &facts)?;
    crate::source::filter::check_exclusions(&src, &opts.filters).await?;
    let tools = crate::objects::schema::find_tools(opts.pg_bin_dir.as_deref(), facts.major())?;
    let earlier = prepare_dir(opts, &source_id)?;
    let dir = &opts.dir;

    src.begin_snapshot(None).await?;
    let snapshot: String = src
        .query_one("SELECT pg_catalog.pg_export_snapshot()", &[])
        .await?
        .get(0);
    info!(
        "source {} (PostgreSQL {}), snapshot {snapshot}",
        opts.source.describe(),
        facts.version
    );
    let pool = Arc::new(rayon_pool(opts.jobs)?);
    let mut manifest = match earlier {
        Some(mut m) => {
            m.snapshots.push(snapshot.clone());
            // The units left to dump are rebuilt from the source's catalog: the manifest
            // (a file anyone with access to the directory can edit) only names them.
            let reader = Source::connect(&opts.source, "catalog").await?;
            let known = crate::source::extract::catalog_units(&src, &reader, &facts).await?;
            let recorded: Vec<RecordedUnit> = (1..)
                .zip(&m.extract.units)
                .map(|(id, u)| RecordedUnit::of(id, u))
                .collect();
            let book = UnitBook::rebuild(&recorded, &known).map_err(|e| {
                Error::new(
                    ErrorKind::Preflight,
                    format!(
                        "the unfinished dump in {} does not match its source: {e}; start over with --restart",
                        dir.display()
                    ),
                )
            })?;
            m.extract.units = book.units().cloned().collect();
            m
        }
        None => {
            progress.phase("schema dump");
            for d in [SCHEMA_DIR, DATA_DIR] {
                fs::create_dir_all(dir.join(d))
                    .map_err(|e| io_error("cannot make", &dir.join(d), e))?;
            }
            let archives = crate::objects::schema::Archives {
                tools,
                dir: dir.join(SCHEMA_DIR),
                work: dir.join(SCHEMA_DIR),
                // A dump restores nothing.
                restore_pgoptions: String::new(),
            };
            let reader = Source::connect(&opts.source, "catalog").await?;
            let table_uses = crate::source::filter::table_uses(&src, &opts.filters).await?;
            let mut extract = crate::source::extract::extract(
                &src,
                &reader,
                &opts.source,
                &facts,
                source_id,
                &snapshot,
                &archives,
                crate::source::extract::Asked {
                    filters: &opts.filters,
                    conversions,
                    split: crate::plan::Split {
                        part_bytes: opts.split_bytes,
                        streams: opts.jobs,
                    },
                },
            )
            .await?;
            extract.table_uses = table_uses;
            let roles_json = serde_json::to_vec_pretty(&extract.roles).expect("roles serialize");
            write_atomically(&dir.join(ROLES), &roles_json, true)?;
            let catalog_json = serde_json::to_vec(&extract.catalog).expect("rows serialize");
            write_atomically(&dir.join(SCHEMA_DIR).join(CATALOG), &catalog_json, false)?;
            let ddl_json = serde_json::to_vec(&extract.chunk_ddl).expect("DDL serializes");
            write_atomically(&dir.join(SCHEMA_DIR).join(CHUNK_DDL), &ddl_json, false)?;
            let mut files: Vec<String> = [extract.main_archive.as_str(), CATALOG, CHUNK_DDL]
                .into_iter()
                .map(|f| format!("{SCHEMA_DIR}/{f}"))
                .collect();
            files.push(ROLES.to_string());
            let at = dir.to_path_buf();
            let checks: Vec<FileCheck> = on_pool(&pool, move || {
                use rayon::prelude::*;
                files
                    .par_iter()
                    .map(|f| {
                        check_file(&at, f).map_err(|e| io_error("cannot read", &at.join(f), e))
                    })
                    .collect::<Result<_>>()
            })
            .await??;
            let (roles_file, schema_files): (Vec<FileCheck>, Vec<FileCheck>) =
                checks.into_iter().partition(|c| c.file == ROLES);
            Manifest {
                format: FORMAT,
                tsxfer_version: env!("CARGO_PKG_VERSION").to_string(),
                started_at: now_utc(),
                completed_at: None,
                compress_level: opts.compress_level,
                compress_window_log: Some(WINDOW_LOG),
                snapshots: vec![snapshot.clone()],
                roles: extract
                    .roles
                    .roles
                    .iter()
                    .map(|r| RoleEntry {
                        name: r.name.clone(),
                        login: r.login,
                        rewrite: crate::objects::roles::managed_role_reason(r, ""),
                    })
                    .collect(),
                roles_file: roles_file.into_iter().next(),
                schema_files,
                extract,
                files: Vec::new(),
                selection: Some(opts.selection()),
            }
        }
    };
    write_manifest(dir, &manifest)?;

    progress.phase("data");
    let units = manifest.extract.units.clone();
    let recorded = read_journal(dir);
    let candidates: Vec<UnitFile> = recorded
        .into_iter()
        .filter(|f| {
            units
                .get(f.unit)
                .is_some_and(|u| u.title() == f.relation && u.kind == f.kind)
        })
        .collect();
    let at = dir.to_path_buf();
    let (candidates, verdicts): (Vec<UnitFile>, Vec<Option<String>>) = on_pool(&pool, move || {
        use rayon::prelude::*;
        let verdicts = candidates
            .par_iter()
            .map(|f| file_problem(&at, &f.check))
            .collect();
        (candidates, verdicts)
    })
    .await?;
    let mut kept: BTreeMap<usize, UnitFile> = BTreeMap::new();
    for (f, problem) in candidates.into_iter().zip(verdicts) {
        match problem {
            Some(why) => warn!("{}: {why}; dumping it again", f.relation),
            None => {
                kept.insert(f.unit, f);
            }
        }
    }
    if !kept.is_empty() {
        info!(
            "{} of {} units kept from the earlier run (files whole, checksums match)",
            kept.len(),
            units.len()
        );
    }
    progress.planned(&units);
    let kept_units: Vec<CopyUnit> = kept.keys().map(|&i| units[i].clone()).collect();
    progress.already_done(&kept_units);
    let journal_path = dir.join(DATA_DIR).join(JOURNAL);
    let mut journal =
        File::create(&journal_path).map_err(|e| io_error("cannot write", &journal_path, e))?;
    for f in kept.values() {
        writeln!(journal, "{}", serde_json::to_string(f).expect("serializes"))
            .map_err(|e| io_error("cannot write", &journal_path, e))?;
    }
    journal
        .sync_data()
        .map_err(|e| io_error("cannot write", &journal_path, e))?;
    let queue = (0..units.len()).filter(|i| !kept.contains_key(i)).collect();
    let units_kept = kept.len();
    let shared = Arc::new(Dumping {
        opts: opts.clone(),
        snapshot: snapshot.clone(),
        units: units.clone(),
        queue: Mutex::new(queue),
        journal: Mutex::new(journal),
        written: Mutex::new(kept.into_values().collect()),
        progress: progress.clone(),
        stop: Stop::new(drain),
        pool,
    });
    run_workers(opts.jobs, &shared.stop, "dump", |n| {
        dump_worker(shared.clone(), n)
    })
    .await?;
    let mut files = std::mem::take(&mut *shared.written.lock().unwrap_or_else(|p| p.into_inner()));
    if files.len() < units.len() {
        return Err(Error::new(
            ErrorKind::Interrupted,
            format!(
                "stopped on request after the units in flight: {} of {} units dumped; run the same command again with --allow-inconsistent to finish",
                files.len(),
                units.len()
            ),
        ));
    }
    src.end().await?;
    files.sort_by_key(|f| f.unit);
    let summary = DumpSummary {
        units: files.len(),
        units_kept,
        rows: files.iter().map(|f| f.rows).sum(),
        stream_bytes: files.iter().map(|f| f.stream_bytes).sum(),
        dir_bytes: 0,
        seconds: started.elapsed().as_secs_f64(),
    };
    manifest.files = files;
    manifest.completed_at = Some(now_utc());
    write_manifest(dir, &manifest)?;
    let _ = fs::remove_file(&journal_path);
    Ok(DumpSummary {
        dir_bytes: dir_size(dir),
        ..summary
    })
}
