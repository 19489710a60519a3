//! Offline mode: `tsxfer dump` writes what a migration reads from the source into a
//! directory, `tsxfer restore` loads it into a target later.
//!
//! The directory holds `manifest.json` (format version, source, snapshot, every unit with
//! its rows, bytes and checksum, the schema files), `roles.json` (the source's roles, with
//! password hashes when they could be read: mode 0600), `schema/` (pg_dump archives) and
//! `data/`, one zstd-compressed binary COPY stream per unit. Compression, decompression
//! and SHA-256 checksums run on a rayon pool fed through bounded crossbeam channels, never
//! on the async runtime's threads; each stream holds at most three buffers.
//!
//! A dump is resumable: `data/done.jsonl` records each finished unit; a rerun keeps those
//! whose files are whole and match their checksum.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use crossbeam_channel::{Receiver, Sender, bounded};
use futures_util::{SinkExt, StreamExt, pin_mut};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::checksum::{self, Checksum, RowHasher};
use crate::conninfo::ConnInfo;
use crate::copy::{CopyOptions, Gather, RowCounter, UnitOutcome, copy_error, target_sink};
use crate::error::{Error, ErrorKind, Result};
use crate::extract::Extract;
use crate::pg::{Source, Target};
use crate::plan::{CopyUnit, UnitKind, human_bytes};
use crate::pool::{Stop, run_workers};
use crate::progress::Progress;
use crate::retry::Retry;
use crate::unit_book::{RecordedUnit, UnitBook};

/// The manifest format this build writes. Format 2 may cut a table into parts (units with
/// a range of pages): a reader of format 1 would load every part's file as the whole
/// table, so it must refuse the dump. Format 3 writes large objects in slices, as rows of
/// (oid, comment, offset, data), and may cut them into parts by OID.
pub const FORMAT: u32 = 3;
/// The manifest formats this build reads (format 1 is format 2 without parts; formats 1
/// and 2 hold each large object whole, as a row of (oid, comment, data)).
const READS: [u64; 3] = [1, 2, 3];
/// The first format that holds large objects in slices.
const LARGE_OBJECT_SLICES: u32 = 3;
const MANIFEST: &str = "manifest.json";
const ROLES: &str = "roles.json";
const SCHEMA_DIR: &str = "schema";
const DATA_DIR: &str = "data";
const JOURNAL: &str = "done.jsonl";
/// TimescaleDB's catalog rows, under `SCHEMA_DIR`.
const CATALOG: &str = "timescaledb-catalog.json";
/// `tsxfer dump`'s zstd level. Level 1 gives smaller files than 3 to 9 on random text
/// (binary COPY of md5 text and jsonb: the higher levels' short matches cost more than
/// the literals they replace), takes half the CPU of 3, and with the window below is
/// smaller than 3 on the bench dataset too; README's offline section has the figures.
pub const DEFAULT_COMPRESS_LEVEL: i32 = 1;
/// zstd window of the unit files, with long-distance matching: 16 MiB finds repeats
/// further apart than one TOASTed value (the level's own window is 512 KiB) and keeps
/// each stream's compressor at about 30 MB and decompressor at 16 MiB, within every
/// decoder's default limit (2^27), so readers of earlier dumps read these.
const WINDOW_LOG: u32 = 24;

/// Where a dump keeps its schema archives.
pub fn schema_dir(dir: &Path) -> PathBuf {
    dir.join(SCHEMA_DIR)
}

/// A file of the dump and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheck {
    /// Path relative to the dump directory.
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

/// One unit's data file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitFile {
    /// Position of the unit in the manifest's unit list.
    pub unit: usize,
    pub relation: String,
    pub kind: UnitKind,
    #[serde(flatten)]
    pub check: FileCheck,
    pub rows: u64,
    /// Bytes of the COPY stream before compression.
    pub stream_bytes: u64,
    /// The snapshot the rows were read in.
    pub snapshot: String,
    /// The checksum of the unit's rows ([`crate::checksum`]); none for large objects
    /// and in dumps of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub tsxfer_version: String,
    pub started_at: String,
    /// Set once every unit is written: only a complete dump can be restored.
    pub completed_at: Option<String>,
    pub compress_level: i32,
    /// The zstd window (log2 of its bytes, long-distance matching on) of the unit files;
    /// absent in dumps of earlier versions, which used the level's window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress_window_log: Option<u32>,
    /// Every snapshot units were read in: more than one when the dump was resumed.
    pub snapshots: Vec<String>,
    /// The source's roles as the manifest lists them (their definitions are in roles.json).
    pub roles: Vec<RoleEntry>,
    pub roles_file: Option<FileCheck>,
    pub schema_files: Vec<FileCheck>,
    pub extract: Extract,
    /// One per unit, in unit order, once the dump is complete.
    pub files: Vec<UnitFile>,
    /// What the dump was asked to copy ([`crate::filter::selection`]); a resumed dump
    /// must ask the same. Absent from dumps of earlier versions.
    #[serde(default)]
    pub selection: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleEntry {
    pub name: String,
    pub login: bool,
    /// Why the role is not created as it is on a target, if it is not.
    pub rewrite: Option<String>,
}

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
    pub hypertables: Vec<crate::convert::HypertableSpec>,
    pub filters: crate::filter::Filters,
    /// Plain tables bigger than this (and than their share of the data) are dumped in
    /// parts of about this size (0: never).
    pub split_bytes: i64,
}

impl DumpOptions {
    /// What the dump is asked to copy ([`crate::filter::selection`]).
    fn selection(&self) -> String {
        crate::filter::selection(&self.filters, &self.hypertables, self.split_bytes)
    }
}

fn io_error(what: &str, path: &Path, e: io::Error) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("{what} {}: {e}", path.display()),
    )
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that a reader never
/// sees half a file.
fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(&tmp)
        .map_err(|e| io_error("cannot write", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_error("cannot write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_error("cannot write", path, e))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Size and SHA-256 of a file, as `rel` under `dir`.
fn check_file(dir: &Path, rel: &str) -> io::Result<FileCheck> {
    let mut f = File::open(dir.join(rel))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileCheck {
        file: rel.to_string(),
        bytes,
        sha256: hex(&hasher.finalize()),
    })
}

/// Why `found` is not the file `expected` describes, if it is not.
fn file_problem(dir: &Path, expected: &FileCheck) -> Option<String> {
    let path = dir.join(&expected.file);
    match fs::metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Some(format!("{} is missing", path.display()));
        }
        Err(e) => return Some(format!("{} cannot be read: {e}", path.display())),
        Ok(m) if m.len() < expected.bytes => {
            return Some(format!(
                "{} is truncated: {} bytes, the manifest says {}",
                path.display(),
                m.len(),
                expected.bytes
            ));
        }
        Ok(m) if m.len() != expected.bytes => {
            return Some(format!(
                "{} is {} bytes, the manifest says {}",
                path.display(),
                m.len(),
                expected.bytes
            ));
        }
        Ok(_) => {}
    }
    match check_file(dir, &expected.file) {
        Err(e) => Some(format!("{} cannot be read: {e}", path.display())),
        Ok(found) if found.sha256 != expected.sha256 => Some(format!(
            "{} fails its checksum (sha256 {}, the manifest says {})",
            path.display(),
            found.sha256,
            expected.sha256
        )),
        Ok(_) => None,
    }
}

/// Checks `files` on a rayon pool; returns one line per file that is not as recorded.
fn check_files(pool: &rayon::ThreadPool, dir: &Path, files: &[FileCheck]) -> Vec<String> {
    use rayon::prelude::*;
    pool.install(|| {
        files
            .par_iter()
            .filter_map(|f| file_problem(dir, f))
            .collect()
    })
}

fn rayon_pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("tsxfer-zstd-{i}"))
        .build()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot start threads: {e}")))
}

fn now_utc() -> String {
    let (y, mo, d, h, mi, s) = crate::report::utc_fields(std::time::SystemTime::now());
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// A file name for unit `index`: its number, then its relation in safe characters.
fn unit_file_name(index: usize, unit: &CopyUnit) -> String {
    let name: String = format!("{}.{}", unit.schema, unit.name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let name = if unit.kind == UnitKind::LargeObjects {
        "large_objects".to_string()
    } else {
        name
    };
    format!("{DATA_DIR}/{index:06}-{name}.copy.zst")
}

/// The source side of a unit in a dump: its binary COPY stream; large objects in slices
/// ([`CopyUnit::large_objects_copy_out_sql`]).
fn dump_sql(unit: &CopyUnit) -> String {
    if unit.kind == UnitKind::LargeObjects {
        unit.large_objects_copy_out_sql()
    } else {
        unit.copy_out_sql()
    }
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Compresses `pieces` at zstd `level` (window [`WINDOW_LOG`], long-distance matching)
/// into `out`; returns `out` with the compressed size and its SHA-256.
pub fn compress<W: Write>(
    out: W,
    level: i32,
    pieces: impl IntoIterator<Item = Bytes>,
) -> io::Result<(W, u64, String)> {
    let hashing = Hashing {
        inner: out,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut encoder = zstd::Encoder::new(hashing, level)?;
    encoder.window_log(WINDOW_LOG)?;
    encoder.long_distance_matching(true)?;
    for piece in pieces {
        encoder.write_all(&piece)?;
    }
    let mut hashing = encoder.finish()?;
    hashing.flush()?;
    Ok((
        hashing.inner,
        hashing.bytes,
        hex(&hashing.hasher.finalize()),
    ))
}

/// Compresses what arrives on `rx` into `path` until the sender is dropped; returns the
/// file's size and checksum. Runs on the rayon pool.
fn write_compressed(path: &Path, level: i32, rx: Receiver<Bytes>) -> io::Result<(u64, String)> {
    let file = io::BufWriter::with_capacity(1 << 16, File::create(path)?);
    let (file, bytes, sha) = compress(file, level, rx)?;
    file.into_inner()
        .map_err(|e| io::Error::other(e.to_string()))?
        .sync_all()?;
    Ok((bytes, sha))
}

/// Decompresses `input` into pieces of `buffer_size` bytes handed to `emit` (which returns
/// false to stop early); returns the compressed size read and its SHA-256, counting every
/// byte of `input`.
pub fn decompress<R: Read>(
    input: R,
    buffer_size: usize,
    mut emit: impl FnMut(Bytes) -> bool,
) -> io::Result<(u64, String)> {
    let mut hashing = HashingReader {
        inner: input,
        hasher: Sha256::new(),
        bytes: 0,
    };
    {
        let mut decoder = zstd::Decoder::with_buffer(BufReader::new(&mut hashing))?;
        loop {
            let mut buf = BytesMut::zeroed(buffer_size);
            let mut filled = 0;
            while filled < buffer_size {
                let n = decoder.read(&mut buf[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            if !emit(buf.freeze()) {
                break;
            }
        }
    }
    // Whatever the decoder did not need still belongs to the input.
    io::copy(&mut hashing, &mut io::sink())?;
    Ok((hashing.bytes, hex(&hashing.hasher.finalize())))
}

/// What a unit's reader hands the loading stream.
enum Piece {
    Data(Bytes),
    /// The whole file was read and matched its size and checksum.
    End,
    Failed(String),
}

/// A reader that hashes and counts what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Decompresses `dir/expected.file` into pieces of `buffer_size` bytes on `tx`, then says
/// whether the file was whole. Runs on the rayon pool; stops when the receiver is gone.
fn read_compressed(dir: &Path, expected: &FileCheck, buffer_size: usize, tx: &Sender<Piece>) {
    let path = dir.join(&expected.file);
    let mut receiver_gone = false;
    let outcome = File::open(&path).and_then(|file| {
        decompress(
            BufReader::with_capacity(1 << 16, file),
            buffer_size,
            |piece| {
                receiver_gone = tx.send(Piece::Data(piece)).is_err();
                !receiver_gone
            },
        )
    });
    if receiver_gone {
        return;
    }
    let last = match outcome {
        Err(e) => Piece::Failed(format!("{} cannot be read: {e}", path.display())),
        Ok((bytes, _)) if bytes != expected.bytes => Piece::Failed(format!(
            "{} is {bytes} bytes, the manifest says {}",
            path.display(),
            expected.bytes
        )),
        Ok((_, sha)) if sha != expected.sha256 => Piece::Failed(format!(
            "{} fails its checksum (sha256 {sha}, the manifest says {})",
            path.display(),
            expected.sha256
        )),
        Ok(_) => Piece::End,
    };
    let _ = tx.send(last);
}

/// Waits for a crossbeam channel without holding up the async runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Reads unit files of a dump for `restore`.
pub struct DumpReader {
    dir: PathBuf,
    /// The dump's manifest format: how its large objects are written.
    format: u32,
    files: HashMap<(UnitKind, u32, u32), UnitFile>,
    pool: rayon::ThreadPool,
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
        tgt: &Target,
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
        let (tx, rx) = bounded::<Piece>(2);
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
            match blocking(|| rx.recv()) {
                Ok(Piece::Data(piece)) => {
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
                Ok(Piece::End) => break,
                Ok(Piece::Failed(why)) => {
                    return Err(Error::new(
                        ErrorKind::Copy,
                        format!("{}: {why}; nothing of it was loaded", unit.title()),
                    ));
                }
                Err(_) => {
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

/// Reads `manifest.json` of `dir`, refusing a manifest this build cannot read.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::new(
                ErrorKind::Preflight,
                format!(
                    "{} holds no tsxfer dump: {MANIFEST} is missing",
                    dir.display()
                ),
            ));
        }
        Err(e) => return Err(io_error("cannot read", &path, e)),
    };
    let damaged = |e: serde_json::Error| {
        Error::new(
            ErrorKind::Preflight,
            format!("{} is damaged: {e}", path.display()),
        )
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(damaged)?;
    let format = value.get("format").and_then(serde_json::Value::as_u64);
    if !format.is_some_and(|f| READS.contains(&f)) {
        return Err(Error::new(
            ErrorKind::Preflight,
            format!(
                "{} is of format {}, which this tsxfer ({}) cannot read (it reads formats 1 and 2); restore it with the tsxfer that wrote it ({})",
                path.display(),
                format.map_or_else(|| "unknown".to_string(), |f| f.to_string()),
                env!("CARGO_PKG_VERSION"),
                value
                    .get("tsxfer_version")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("unknown version")
            ),
        ));
    }
    serde_json::from_value(value).map_err(damaged)
}

fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<()> {
    let text = serde_json::to_vec_pretty(manifest).expect("a manifest serializes");
    write_atomically(&dir.join(MANIFEST), &text, false)
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
    let reader = DumpReader::new(dir, &manifest, pool)?;
    Ok((manifest, reader))
}

/// A JSON file of the dump, or why it cannot be read.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|e| io_error("cannot read", path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::new(
            ErrorKind::Preflight,
            format!("{} is damaged: {e}", path.display()),
        )
    })
}

/// The finished units a journal line records, skipping a line cut short by a crash.
fn read_journal(dir: &Path) -> Vec<UnitFile> {
    let Ok(f) = File::open(dir.join(DATA_DIR).join(JOURNAL)) else {
        return Vec::new();
    };
    BufReader::new(f)
        .lines()
        .map_while(io::Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

/// Removes what a dump wrote into `dir` (and nothing else).
fn remove_dump(dir: &Path) -> Result<()> {
    for f in [MANIFEST, ROLES, "manifest.tmp", "roles.tmp"] {
        match fs::remove_file(dir.join(f)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_error("cannot remove", &dir.join(f), e));
            }
            _ => {}
        }
    }
    for d in [SCHEMA_DIR, DATA_DIR] {
        match fs::remove_dir_all(dir.join(d)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_error("cannot remove", &dir.join(d), e));
            }
            _ => {}
        }
    }
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

fn refusal(e: Error) -> Error {
    match e.kind() {
        ErrorKind::Usage | ErrorKind::Interrupted => e,
        _ => e.with_kind(ErrorKind::Preflight),
    }
}

/// The dump pool's shared state.
struct Dumping {
    opts: DumpOptions,
    snapshot: String,
    units: Vec<CopyUnit>,
    queue: Mutex<std::collections::VecDeque<usize>>,
    journal: Mutex<File>,
    written: Mutex<Vec<UnitFile>>,
    progress: Arc<Progress>,
    stop: Stop,
    pool: rayon::ThreadPool,
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
async fn dump_unit(src: &Source, d: &Dumping, index: usize, stream: usize) -> Result<UnitFile> {
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
    let (tx, rx) = bounded::<Bytes>(2);
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
            if blocking(|| tx.send(piece)).is_err() {
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
            .filter(|_| unit.kind != UnitKind::LargeObjects),
    })
}

/// One stream of the dump: takes units off the queue until none is left, retrying
/// transient failures.
async fn dump_worker(d: Arc<Dumping>, n: usize) {
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
                    if let Err(e) = d.record(file) {
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
fn prepare_dir(opts: &DumpOptions, source_id: &str) -> Result<Option<Manifest>> {
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
        return Err(crate::filter::other_selection(
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
    let facts = crate::preflight::check_source(&src)
        .await
        .map_err(refusal)?;
    let source_id = crate::catalog::source_identity(&src).await?;
    let conversions = crate::convert::validate(&src, &opts.hypertables)
        .await
        .map_err(refusal)?;
    crate::convert::check_source_kind(&conversions, &facts)?;
    crate::filter::check_exclusions(&src, &opts.filters).await?;
    let tools = crate::schema::find_tools(opts.pg_bin_dir.as_deref(), facts.major())?;
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
    let pool = rayon_pool(opts.jobs)?;
    let mut manifest = match earlier {
        Some(mut m) => {
            m.snapshots.push(snapshot.clone());
            // The units left to dump are rebuilt from the source's catalog: the manifest
            // (a file anyone with access to the directory can edit) only names them.
            let reader = Source::connect(&opts.source, "catalog").await?;
            let known = crate::extract::catalog_units(&src, &reader, &facts).await?;
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
            let archives = crate::schema::Archives {
                tools,
                dir: dir.join(SCHEMA_DIR),
                work: dir.join(SCHEMA_DIR),
                // A dump restores nothing.
                restore_pgoptions: String::new(),
            };
            let reader = Source::connect(&opts.source, "catalog").await?;
            let extract = crate::extract::extract(
                &src,
                &reader,
                &opts.source,
                &facts,
                source_id,
                &snapshot,
                &archives,
                crate::extract::Asked {
                    filters: &opts.filters,
                    conversions,
                    split: crate::plan::Split {
                        part_bytes: opts.split_bytes,
                        streams: opts.jobs,
                    },
                },
            )
            .await?;
            let roles_json = serde_json::to_vec_pretty(&extract.roles).expect("roles serialize");
            write_atomically(&dir.join(ROLES), &roles_json, true)?;
            let catalog_json = serde_json::to_vec(&extract.catalog).expect("rows serialize");
            write_atomically(&dir.join(SCHEMA_DIR).join(CATALOG), &catalog_json, false)?;
            let mut files: Vec<String> = std::iter::once(&extract.main_archive)
                .chain(extract.chunk_archives.iter())
                .chain(std::iter::once(&CATALOG.to_string()))
                .map(|f| format!("{SCHEMA_DIR}/{f}"))
                .collect();
            files.push(ROLES.to_string());
            let checks: Vec<FileCheck> = {
                use rayon::prelude::*;
                pool.install(|| {
                    files
                        .par_iter()
                        .map(|f| {
                            check_file(dir, f).map_err(|e| io_error("cannot read", &dir.join(f), e))
                        })
                        .collect::<Result<_>>()
                })?
            };
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
                        rewrite: crate::roles::managed_role_reason(r, ""),
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
    let verdicts: Vec<Option<String>> = {
        use rayon::prelude::*;
        pool.install(|| {
            candidates
                .par_iter()
                .map(|f| file_problem(dir, &f.check))
                .collect()
        })
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn compressed_pieces_come_back_whole_in_buffers_of_the_asked_size() {
        let data = stream(1_000_003);
        let pieces: Vec<Bytes> = data.chunks(65_536).map(Bytes::copy_from_slice).collect();
        let (file, bytes, sha) = compress(Vec::new(), 3, pieces).unwrap();
        assert_eq!(bytes, file.len() as u64);
        assert!(file.len() < data.len() / 4, "{} bytes", file.len());
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        let (read, sha_read) = decompress(&file[..], 300_000, |p| {
            sizes.push(p.len());
            out.extend_from_slice(&p);
            true
        })
        .unwrap();
        assert_eq!(out, data);
        assert_eq!(sizes, [300_000, 300_000, 300_000, 100_003]);
        assert_eq!((read, sha_read), (bytes, sha));
    }

    #[test]
    fn repeats_further_apart_than_the_levels_window_are_found() {
        // 4 MiB that do not compress, twice: only a window of more than 4 MiB sees the
        // second copy as a repeat of the first.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let block: Vec<u8> = (0..4 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let pieces = [Bytes::from(block.clone()), Bytes::from(block.clone())];
        let (file, _, _) = compress(Vec::new(), DEFAULT_COMPRESS_LEVEL, pieces).unwrap();
        assert!(file.len() < block.len() * 11 / 10, "{} bytes", file.len());
        let mut out = Vec::new();
        decompress(&file[..], 1 << 20, |p| {
            out.extend_from_slice(&p);
            true
        })
        .unwrap();
        assert!(out.len() == 2 * block.len() && out[..block.len()] == block[..]);
        assert!(out[block.len()..] == block[..]);
    }

    #[test]
    fn files_of_earlier_dumps_still_decompress() {
        // Earlier versions wrote level 3 with the level's own window.
        let data = stream(700_001);
        let file = zstd::encode_all(&data[..], 3).unwrap();
        let mut out = Vec::new();
        let (read, _) = decompress(&file[..], 65_536, |p| {
            out.extend_from_slice(&p);
            true
        })
        .unwrap();
        assert_eq!(read, file.len() as u64);
        assert!(out == data);
    }

    #[test]
    fn a_changed_byte_changes_the_checksum_or_fails_decompression() {
        let (mut file, _, sha) = compress(Vec::new(), 3, [Bytes::from(stream(200_000))]).unwrap();
        let at = file.len() / 2;
        file[at] ^= 1;
        match decompress(&file[..], 65_536, |_| true) {
            Ok((_, found)) => assert_ne!(found, sha),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn unit_files_have_safe_numbered_names() {
        let mut u = CopyUnit::table(1, "my schema".into(), "Tab/le\"x".into(), UnitKind::Table);
        assert_eq!(
            unit_file_name(7, &u),
            "data/000007-my_schema.Tab_le_x.copy.zst"
        );
        u.name = "n".repeat(200);
        assert!(unit_file_name(8, &u).len() < 110);
        let lo = CopyUnit::large_objects(3, 10);
        assert_eq!(unit_file_name(9, &lo), "data/000009-large_objects.copy.zst");
    }

    #[test]
    fn a_manifest_of_another_format_or_none_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_manifest(dir.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Preflight);
        assert!(e.message().contains("manifest.json is missing"), "{e}");
        fs::write(
            dir.path().join(MANIFEST),
            r#"{"format": 4, "tsxfer_version": "9.9.9"}"#,
        )
        .unwrap();
        let e = read_manifest(dir.path()).unwrap_err();
        assert!(e.message().contains("format 4"), "{e}");
        assert!(e.message().contains("9.9.9"), "{e}");
        fs::write(dir.path().join(MANIFEST), "{\"format\": 1, ").unwrap();
        let e = read_manifest(dir.path()).unwrap_err();
        assert!(e.message().contains("is damaged"), "{e}");
    }

    #[test]
    fn file_checks_name_missing_short_and_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), b"hello").unwrap();
        let good = check_file(dir.path(), "a").unwrap();
        assert_eq!(good.bytes, 5);
        assert_eq!(file_problem(dir.path(), &good), None);
        fs::write(dir.path().join("a"), b"hell").unwrap();
        assert!(
            file_problem(dir.path(), &good)
                .unwrap()
                .contains("truncated")
        );
        fs::write(dir.path().join("a"), b"jello").unwrap();
        assert!(
            file_problem(dir.path(), &good)
                .unwrap()
                .contains("checksum")
        );
        fs::remove_file(dir.path().join("a")).unwrap();
        assert!(file_problem(dir.path(), &good).unwrap().contains("missing"));
    }
}
