//! The offline format: the directory `tsxfer dump` ([`crate::run::dump`]) writes what a
//! migration reads from the source into, and `tsxfer restore` loads into a target later
//! ([`reader`]).
//!
//! The directory holds `manifest.json` (format version, source, snapshot, every unit with
//! its rows, bytes and checksum, the schema files), `roles.json` (the source's roles, with
//! password hashes when they could be read: mode 0600), `schema/` (the pg_dump archive,
//! the chunk tables' DDL, TimescaleDB's catalog rows) and
//! `data/`, one zstd-compressed binary COPY stream per unit. Compression, decompression
//! and SHA-256 checksums run on a rayon pool fed through bounded channels, never
//! on the async runtime's threads; each stream holds at most three buffers.
//!
//! A dump is resumable: `data/done.jsonl` records each finished unit; a rerun keeps those
//! whose files are whole and match their checksum.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::copy::checksum::Checksum;
use crate::error::{Error, ErrorKind, Result};
use crate::plan::{CopyUnit, UnitKind};
use crate::source::extract::Extract;

mod reader;
pub use reader::{DumpReader, open_for_restore};
pub(crate) mod zst;
pub use zst::{compress, decompress};

/// The manifest format this build writes. Format 2 may cut a table into parts (units with
/// a range of pages): a reader of format 1 would load every part's file as the whole
/// table, so it must refuse the dump. Format 3 writes large objects in slices, as rows of
/// (oid, comment, offset, data), and may cut them into parts by OID. Format 4 holds the
/// chunk tables' DDL as generated statements ([`CHUNK_DDL`]) instead of pg_dump archives
/// of them: a reader of format 3 would restore no chunk table.
pub const FORMAT: u32 = 4;
/// The manifest formats this build reads (format 1 is format 2 without parts; formats 1
/// and 2 hold each large object whole, as a row of (oid, comment, data); formats 1 to 3
/// hold the chunk tables' DDL in pg_dump archives, restored as they were).
const READS: [u64; 4] = [1, 2, 3, 4];
/// The first format that holds large objects in slices.
const LARGE_OBJECT_SLICES: u32 = 3;
pub(crate) const MANIFEST: &str = "manifest.json";
pub(crate) const ROLES: &str = "roles.json";
pub(crate) const SCHEMA_DIR: &str = "schema";
pub(crate) const DATA_DIR: &str = "data";
pub(crate) const JOURNAL: &str = "done.jsonl";
/// TimescaleDB's catalog rows, under `SCHEMA_DIR`.
pub(crate) const CATALOG: &str = "timescaledb-catalog.json";
/// The chunk tables' DDL ([`crate::objects::chunk_ddl::ChunkDdl`]), under `SCHEMA_DIR`.
pub(crate) const CHUNK_DDL: &str = "chunk-ddl.json";
/// `tsxfer dump`'s zstd level. Level 1 gives smaller files than 3 to 9 on random text
/// (binary COPY of md5 text and jsonb: the higher levels' short matches cost more than
/// the literals they replace), takes half the CPU of 3, and with the window below is
/// smaller than 3 on the bench dataset too; README's offline section has the figures.
pub const DEFAULT_COMPRESS_LEVEL: i32 = 1;
/// zstd window of the unit files, with long-distance matching: 16 MiB finds repeats
/// further apart than one TOASTed value (the level's own window is 512 KiB) and keeps
/// each stream's compressor at about 30 MB and decompressor at 16 MiB, within every
/// decoder's default limit (2^27), so readers of earlier dumps read these.
pub(crate) const WINDOW_LOG: u32 = 24;

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
    /// The checksum of the unit's rows ([`crate::copy::checksum`]); none for large objects
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
    /// What the dump was asked to copy ([`crate::source::filter::selection`]); a resumed dump
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

pub(crate) fn io_error(what: &str, path: &Path, e: io::Error) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("{what} {}: {e}", path.display()),
    )
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that a reader never
/// sees half a file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
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
pub(crate) fn check_file(dir: &Path, rel: &str) -> io::Result<FileCheck> {
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
pub(crate) fn file_problem(dir: &Path, expected: &FileCheck) -> Option<String> {
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

/// Runs `f` on `pool` from a blocking thread, so that hashing files never holds up the
/// async runtime's threads.
pub(crate) async fn on_pool<T: Send + 'static>(
    pool: &std::sync::Arc<rayon::ThreadPool>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || pool.install(f))
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("a file-checking thread died: {e}"),
            )
        })
}

pub(crate) fn rayon_pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("tsxfer-zstd-{i}"))
        .build()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot start threads: {e}")))
}

pub(crate) fn now_utc() -> String {
    let (y, mo, d, h, mi, s) = crate::observe::report::utc_fields(std::time::SystemTime::now());
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// A file name for unit `index`: its number, then its relation in safe characters.
pub(crate) fn unit_file_name(index: usize, unit: &CopyUnit) -> String {
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

pub(crate) fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<()> {
    let text = serde_json::to_vec_pretty(manifest).expect("a manifest serializes");
    write_atomically(&dir.join(MANIFEST), &text, false)
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
pub(crate) fn read_journal(dir: &Path) -> Vec<UnitFile> {
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
pub(crate) fn remove_dump(dir: &Path) -> Result<()> {
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

pub(crate) fn dir_size(dir: &Path) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;

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
            r#"{"format": 99, "tsxfer_version": "9.9.9"}"#,
        )
        .unwrap();
        let e = read_manifest(dir.path()).unwrap_err();
        assert!(e.message().contains("format 99"), "{e}");
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
