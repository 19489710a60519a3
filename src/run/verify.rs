//! Verification: whether the target holds the rows the source sent, by count or by
//! content. A run's verify phase reads every copied unit back from the target and
//! compares it with what passed through tsxfer ([`check_copied`]); `tsxfer verify`
//! compares an existing pair of databases, reading both ([`compare`]).
//!
//! One file because both halves read rows back the same way ([`hash_rows`], the same
//! statements) and say a difference in the same words, which must not drift apart.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::{StreamExt, pin_mut};
use tokio::task::JoinSet;
use tokio_postgres::error::SqlState;

use super::analyze;
use crate::copy::UnitOutcome;
use crate::copy::checksum::{self, Checksum, HasherThread};
use crate::error::{Error, ErrorKind, Result};
use crate::observe::progress::Progress;
use crate::observe::report::{Report, UnitReport};
use crate::pg::conninfo::ConnInfo;
use crate::pg::{Source, Target, TargetTx};
use crate::plan::{CopyUnit, UnitKind};
use crate::quote;
use crate::source::catalog;
use crate::source::filter::{self, Filters};

/// What a run checks once its data is copied (`--verify`). The default is `count`:
/// reading every unit back for its checksum cost more than 15% of a run's wall time on
/// the benches (README, Verification).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyMode {
    /// Nothing.
    Off,
    /// Every unit's row count on the target against the rows read from the source.
    #[default]
    Count,
    /// Counts, and every unit's rows read back from the target against the checksum of
    /// the rows that passed through tsxfer.
    Checksum,
}

impl VerifyMode {
    /// What a run under this mode checks every unit by, for its result line; `None`
    /// when it checks nothing.
    pub fn checks(self) -> Option<&'static str> {
        match self {
            VerifyMode::Off => None,
            VerifyMode::Count => Some("row count"),
            VerifyMode::Checksum => Some("row count and checksum"),
        }
    }
}

/// The rows of `unit` read on either side for comparison, in the unit's COPY format:
/// a table's own rows (not its inheritance children's), all of a table copied in parts,
/// and for a table that became a hypertable on the target, every row of the hypertable.
pub fn read_back_sql(unit: &CopyUnit) -> String {
    let columns: Vec<String> = unit.columns.iter().map(|c| quote::ident(c)).collect();
    let format = if unit.binary { "binary" } else { "text" };
    let relation = unit.relation();
    if unit.into_hypertable {
        format!(
            "COPY (SELECT {} FROM {relation}) TO STDOUT (FORMAT {format})",
            columns.join(", ")
        )
    } else if let Some(cond) = &unit.filter {
        format!(
            "COPY (SELECT {} FROM ONLY {relation} {cond}) TO STDOUT (FORMAT {format})",
            columns.join(", ")
        )
    } else if columns.is_empty() {
        format!("COPY {relation} TO STDOUT (FORMAT {format})")
    } else {
        format!(
            "COPY {relation} ({}) TO STDOUT (FORMAT {format})",
            columns.join(", ")
        )
    }
}

/// Rows, bytes and checksum of what `copy_out` (a `COPY ... TO STDOUT`) sends.
pub async fn hash_rows(
    copy_out: impl std::future::Future<Output = Result<tokio_postgres::CopyOutStream>>,
    binary: bool,
) -> Result<Hashed> {
    let stream = copy_out.await?;
    pin_mut!(stream);
    let thread = HasherThread::start(binary);
    let mut bytes = 0u64;
    while let Some(piece) = stream.next().await {
        let piece = piece?;
        bytes += piece.len() as u64;
        thread.feed(piece).await?;
    }
    let hasher = thread.finish().await?;
    Ok(Hashed {
        rows: hasher.rows(),
        bytes,
        checksum: hasher.checksum(),
    })
}

/// What [`hash_rows`] read.
pub struct Hashed {
    pub rows: u64,
    pub bytes: u64,
    pub checksum: Checksum,
}

/// What the target holds of one copied unit: `None` when the target has no such table.
struct Found {
    rows: Option<i64>,
    checksum: Option<Checksum>,
}

/// Units one count statement of the verify phase reads at most: one round trip for
/// many small chunks (issue 17).
const COUNT_BATCH: usize = 100;

/// Bytes (as copied) one count statement reads at most, past its first unit: counting a
/// large table takes a while, and a batch of them would hold one lane while the others
/// have nothing left.
const COUNT_BATCH_BYTES: u64 = 64 << 20;

/// One statement that reads every count of `counts` (each a `SELECT` of one value, such
/// as [`CopyUnit::count_sql`]) as one row, a column each.
pub fn count_batch_sql(counts: &[&str]) -> String {
    let columns: Vec<String> = counts.iter().map(|c| format!("({c})")).collect();
    format!("SELECT {}", columns.join(", "))
}

/// Whether `e` says a relation does not exist (the target lost a table the run copied).
fn no_such_table(e: &Error) -> bool {
    e.has_sqlstate(&[SqlState::UNDEFINED_TABLE])
}

/// The value of column `i` of a count row.
fn count_value(row: &tokio_postgres::SimpleQueryRow, i: usize) -> Result<i64> {
    row.get(i).and_then(|v| v.parse().ok()).ok_or_else(|| {
        Error::new(
            ErrorKind::Internal,
            format!("a count of the verify phase read {:?}", row.get(i)),
        )
    })
}

/// Reads the counts `sqls` on the target in one round trip; when the server declines
/// the batch (a table missing, say), each count alone, so the others are still read and
/// the missing one is found and named.
async fn read_counts(tgt: &Target, sqls: &[&str]) -> Result<Vec<Option<i64>>> {
    if sqls.len() > 1 {
        match tgt.simple_rows(&count_batch_sql(sqls)).await {
            Ok(rows) => {
                let row = rows.first().ok_or_else(|| {
                    Error::new(ErrorKind::Internal, "a count batch returned no row")
                })?;
                return (0..sqls.len())
                    .map(|i| count_value(row, i).map(Some))
                    .collect();
            }
            Err(e) if e.sqlstate().is_some() && !e.is_retryable() => {}
            Err(e) => return Err(e),
        }
    }
    let mut out = Vec::with_capacity(sqls.len());
    for sql in sqls {
        match tgt.simple_rows(sql).await {
            Ok(rows) => {
                let row = rows
                    .first()
                    .ok_or_else(|| Error::new(ErrorKind::Internal, "a count returned no row"))?;
                out.push(Some(count_value(row, 0)?));
            }
            Err(e) if no_such_table(&e) => out.push(None),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Reads one unit back from the target for its rows' checksum.
async fn read_content(tgt: &mut Target, unit: &CopyUnit) -> Result<Found> {
    let tx = tgt.begin_reading(None).await?;
    if !unit.binary {
        tx.execute(checksum::TEXT_SETTINGS).await?;
    }
    let read = match hash_rows(tx.copy_out(&read_back_sql(unit)), unit.binary).await {
        Ok(read) => read,
        Err(e) if no_such_table(&e) => {
            tx.rollback().await?;
            return Ok(Found {
                rows: None,
                checksum: None,
            });
        }
        Err(e) => {
            return Err(e.context(format!("reading {} back from the target", unit.relation())));
        }
    };
    tx.commit().await?;
    Ok(Found {
        rows: Some(read.rows as i64),
        checksum: Some(read.checksum),
    })
}

/// One line for a unit that does not match.
pub fn mismatch_line(
    report: &UnitReport,
    target_rows: i64,
    target_checksum: Option<Checksum>,
) -> Option<String> {
    mismatch_between(report, "sent", target_rows, target_checksum)
}

/// [`mismatch_line`], saying what the source did (`sent` in a run, `holds` comparing).
fn mismatch_between(
    report: &UnitReport,
    source_did: &str,
    target_rows: i64,
    target_checksum: Option<Checksum>,
) -> Option<String> {
    let expected = report.outcome.rows;
    let rows_differ = target_rows < 0 || target_rows as u64 != expected;
    let sums = report.outcome.checksum.zip(target_checksum);
    let sums_differ = sums.is_some_and(|(a, b)| a != b);
    if !rows_differ && !sums_differ {
        return None;
    }
    let what = report.kind.label();
    Some(match sums {
        Some((source, target)) => format!(
            "{what} {}: the source {source_did} {expected} rows with checksum {}, the target holds {target_rows} rows with checksum {}",
            report.relation,
            source.hex(),
            target.hex()
        ),
        None => format!(
            "{what} {}: {expected} rows in the source snapshot, {target_rows} on the target",
            report.relation
        ),
    })
}

/// The line for a copied unit whose table the target no longer has.
fn missing_line(report: &UnitReport) -> String {
    format!(
        "{} {}: {} rows in the source snapshot; the target has no such table",
        report.kind.label(),
        report.relation,
        report.outcome.rows
    )
}

/// What one lane of the verify phase reads next: a unit by content, or many counts.
enum Read {
    Content(usize, CopyUnit),
    /// By index in `done`, each count's statement and its unit.
    Counts(Vec<(usize, String, CopyUnit)>),
}

impl Read {
    fn units(&self) -> Vec<&CopyUnit> {
        match self {
            Read::Content(_, unit) => vec![unit],
            Read::Counts(batch) => batch.iter().map(|(_, _, unit)| unit).collect(),
        }
    }
}

/// The next [`Read`] off `queue` (its end is read first): a unit to read by content
/// alone; counts up to [`COUNT_BATCH`] and [`COUNT_BATCH_BYTES`] together.
fn next_read(queue: &Mutex<Vec<Queued>>) -> Option<Read> {
    let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
    let first = q.pop()?;
    let Some(sql) = first.count else {
        return Some(Read::Content(first.index, first.unit));
    };
    let mut bytes = first.bytes;
    let mut batch = vec![(first.index, sql, first.unit)];
    while batch.len() < COUNT_BATCH {
        match q.last() {
            Some(next) if next.count.is_some() && bytes + next.bytes <= COUNT_BATCH_BYTES => {
                let next = q.pop().expect("just seen");
                bytes += next.bytes;
                batch.push((next.index, next.count.expect("just seen"), next.unit));
            }
            _ => break,
        }
    }
    Some(Read::Counts(batch))
}

/// A unit waiting for the verify phase.
struct Queued {
    index: usize,
    unit: CopyUnit,
    bytes: u64,
    /// Its count's statement, when it is read by count.
    count: Option<String>,
}

/// What the verify phase of a run found.
#[derive(Debug, Default)]
pub struct Verified {
    /// One line per mismatch.
    pub mismatches: Vec<String>,
    /// Tables the server would not ANALYZE.
    pub analyze_warnings: Vec<String>,
    /// Units left unread because the operator asked to stop: the mismatches are not the
    /// whole answer.
    pub cut_short: bool,
}

/// The verify phase of a run: reads every done unit back from the target over `jobs`
/// connections (a table copied in parts once, against its parts added up) and compares
/// it with what passed through tsxfer. Fills each report's target rows and checksum;
/// returns one line per mismatch (a table the target no longer has is one). Units copied
/// without a checksum (large objects, or by a run under `--verify=count`) are compared
/// by count, many counts to a statement (one round trip, in one snapshot; a batch the
/// server declines is read again count by count).
/// `counts_apart` holds, by (schema, table), the count to use for tables whose rows the
/// target cannot read back as COPY sent them (hypercore chunks): those are compared by
/// count. `analyze_first` holds, by (schema, table), the tables still to ANALYZE: each
/// lane analyzes those of what it reads next just before reading it, on the same
/// connection. Once `drain` is set, the lanes take no new read (a checksum read of a
/// big table can take long) and what is left unread is [`Verified::cut_short`].
pub async fn check_copied(
    target: &ConnInfo,
    jobs: usize,
    mode: VerifyMode,
    done: &mut [(CopyUnit, UnitReport)],
    counts_apart: &HashMap<(String, String), String>,
    analyze_first: HashSet<(String, String)>,
    drain: &Arc<AtomicBool>,
) -> Result<Verified> {
    if mode == VerifyMode::Off {
        return Ok(Verified::default());
    }
    // Popped largest first, so that the lanes end together.
    let mut work: Vec<Queued> = done
        .iter()
        .enumerate()
        .map(|(i, (unit, report))| {
            let apart = counts_apart
                .get(&(unit.schema.clone(), unit.name.clone()))
                .cloned();
            let by_content = mode == VerifyMode::Checksum
                && unit.kind != UnitKind::LargeObjects
                && report.outcome.checksum.is_some()
                && apart.is_none();
            Queued {
                index: i,
                unit: unit.clone(),
                bytes: report.outcome.bytes,
                count: (!by_content).then(|| apart.unwrap_or_else(|| unit.count_sql())),
            }
        })
        .collect();
    work.sort_by_key(|q| q.bytes);
    let lanes = jobs.min(work.len()).max(1);
    let queue = Arc::new(Mutex::new(work));
    let analyze_first = Arc::new(analyze_first);
    let mut set = JoinSet::new();
    for _ in 0..lanes {
        let queue = queue.clone();
        let target = target.clone();
        let analyze_first = analyze_first.clone();
        let drain = drain.clone();
        set.spawn(async move {
            let mut tgt = Target::connect(&target, "verify").await?;
            let mut found = Vec::new();
            let mut refused = Vec::new();
            while !drain.load(Ordering::SeqCst)
                && let Some(read) = next_read(&queue)
            {
                let tables: Vec<String> = read
                    .units()
                    .into_iter()
                    .filter(|u| analyze_first.contains(&(u.schema.clone(), u.name.clone())))
                    .map(CopyUnit::relation)
                    .collect();
                match read {
                    Read::Content(i, unit) => {
                        refused.extend(analyze::analyze_tables(&tgt, &tables).await?);
                        found.push((i, read_content(&mut tgt, &unit).await?));
                    }
                    Read::Counts(batch) => {
                        let sqls: Vec<&str> = batch.iter().map(|(_, s, _)| s.as_str()).collect();
                        // The counts go out right behind the ANALYZE (one round trip),
                        // which the server runs first.
                        let (declined, counts) = futures_util::try_join!(
                            analyze::analyze_tables(&tgt, &tables),
                            read_counts(&tgt, &sqls)
                        )?;
                        refused.extend(declined);
                        found.extend(batch.iter().zip(counts).map(|((i, _, _), rows)| {
                            (
                                *i,
                                Found {
                                    rows,
                                    checksum: None,
                                },
                            )
                        }));
                    }
                }
            }
            Ok::<_, Error>((found, refused))
        });
    }
    let mut verified = Verified::default();
    let mismatches = &mut verified.mismatches;
    while let Some(joined) = set.join_next().await {
        let (found, refused) = joined
            .map_err(|e| Error::new(ErrorKind::Internal, format!("a verify worker died: {e}")))??;
        verified.analyze_warnings.extend(refused);
        for (i, f) in found {
            let report = &mut done[i].1;
            report.target_rows = f.rows;
            report.target_checksum = f.checksum;
            mismatches.extend(match f.rows {
                Some(rows) => mismatch_line(report, rows, f.checksum),
                None => Some(missing_line(report)),
            });
        }
    }
    verified.cut_short = !queue.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
    verified.mismatches.sort();
    verified.analyze_warnings.sort();
    Ok(verified)
}

/// What `tsxfer verify` compares.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub source: ConnInfo,
    pub target: ConnInfo,
    pub jobs: usize,
    /// `-n`, `-N`, `-t`, `-T` (`--exclude-table-data` leaves a table's rows out too).
    pub filters: Filters,
}

/// One comparison: the rows of `unit` read on both sides.
#[derive(Debug, Clone)]
struct Comparison {
    unit: CopyUnit,
    /// What is read on the source, and on the target unless [`target_side`] reads more.
    source_sql: String,
    /// For a plain table: whether it has inheritance children on the source (given its
    /// name as `$1`).
    children_sql: Option<String>,
}

/// The rows `tsxfer verify` reads of a unit on the source, the same on the target: a
/// table's own rows; a chunk's rows as queries see them (decompressed when the chunk is
/// compressed, on either side); a hypertable's rows through the hypertable; every large
/// object's oid, comment and bytes, in slices.
fn compare_sql(unit: &CopyUnit) -> String {
    let columns: Vec<String> = unit.columns.iter().map(|c| quote::ident(c)).collect();
    let format = if unit.binary { "binary" } else { "text" };
    let rel = unit.relation();
    match unit.kind {
        UnitKind::LargeObjects => unit.large_objects_copy_out_sql(),
        UnitKind::Chunk | UnitKind::Hypertable => format!(
            "COPY (SELECT {} FROM {rel}) TO STDOUT (FORMAT {format})",
            columns.join(", ")
        ),
        _ => {
            let cond = unit.filter.as_deref().unwrap_or("");
            format!(
                "COPY (SELECT {} FROM ONLY {rel} {cond}) TO STDOUT (FORMAT {format})",
                columns.join(", ")
            )
        }
    }
}

/// The units of the source `filters` keep: a chunk goes with its hypertable; compressed
/// chunks' internal tables and the internal hypertables that hold them are left out
/// (their chunks' rows are compared, which does not depend on whether a chunk is
/// compressed on either side).
async fn selected_units(
    src: &Source,
    units: Vec<CopyUnit>,
    filters: &Filters,
    timescaledb: bool,
) -> Result<Vec<CopyUnit>> {
    let mut owner: HashMap<u32, u32> = HashMap::new();
    let mut internal: HashSet<u32> = HashSet::new();
    if timescaledb {
        for r in src
            .query(
                "SELECT pg_catalog.format('%I.%I', schema_name, table_name)::regclass::oid
                 FROM _timescaledb_catalog.hypertable WHERE compression_state = 2",
                &[],
            )
            .await?
        {
            internal.insert(r.get(0));
        }
        for r in src
            .query(
                "SELECT pg_catalog.format('%I.%I', c.schema_name, c.table_name)::regclass::oid,
                        pg_catalog.format('%I.%I', h.schema_name, h.table_name)::regclass::oid
                 FROM _timescaledb_catalog.chunk c
                 JOIN _timescaledb_catalog.hypertable h ON h.id = c.hypertable_id
                 WHERE NOT c.dropped",
                &[],
            )
            .await?
        {
            owner.insert(r.get(0), r.get(1));
        }
    }
    let mut units: Vec<CopyUnit> = units
        .into_iter()
        .filter(|u| u.kind != UnitKind::CompressedChunk && !internal.contains(&u.oid))
        .collect();
    if filters.is_empty() {
        return Ok(units);
    }
    let matching = |patterns: &Vec<String>| {
        let patterns = patterns.clone();
        async move {
            let mut oids = HashSet::new();
            for p in &patterns {
                oids.extend(filter::matching_relations(src, p).await?);
            }
            Ok::<_, Error>(oids)
        }
    };
    let tables = matching(&filters.tables).await?;
    let excluded = matching(&filters.exclude_tables).await?;
    let no_data = matching(&filters.exclude_table_data).await?;
    let schema_of: HashMap<u32, String> = units.iter().map(|u| (u.oid, u.schema.clone())).collect();
    let schemas: Vec<String> = schema_of
        .values()
        .cloned()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let schemas_matching = |patterns: &Vec<String>| {
        let patterns = patterns.clone();
        let schemas = schemas.clone();
        async move {
            let mut out = HashSet::new();
            for p in &patterns {
                let (_, name) = filter::pattern_regex(p);
                for r in src
                    .query(
                        "SELECT s FROM unnest($1::text[]) AS s WHERE s ~ $2",
                        &[&schemas, &name],
                    )
                    .await?
                {
                    out.insert(r.get::<_, String>(0));
                }
            }
            Ok::<_, Error>(out)
        }
    };
    let in_schemas = schemas_matching(&filters.schemas).await?;
    let out_schemas = schemas_matching(&filters.exclude_schemas).await?;
    units.retain(|u| {
        if u.kind == UnitKind::LargeObjects {
            return !filters.includes_only_some();
        }
        let table = owner.get(&u.oid).copied().unwrap_or(u.oid);
        let schema = schema_of.get(&table).unwrap_or(&u.schema);
        (filters.tables.is_empty() || tables.contains(&table))
            && (filters.schemas.is_empty() || in_schemas.contains(schema))
            && !excluded.contains(&table)
            && !no_data.contains(&table)
            && !out_schemas.contains(schema)
    });
    Ok(units)
}

/// Opens a read-only repeatable-read transaction on the target, on `snapshot` when
/// given, with the settings rows are read back in.
async fn begin_target<'a>(tgt: &'a mut Target, snapshot: Option<&str>) -> Result<TargetTx<'a>> {
    let tx = tgt.begin_reading(snapshot).await?;
    tx.execute(checksum::TEXT_SETTINGS).await?;
    Ok(tx)
}

/// Whether `unit`'s table exists on the target, and if it is a plain table of the
/// source that has children there only (a hypertable made by `--hypertable`), the
/// statement that reads it whole.
async fn target_side(
    tgt: &TargetTx<'_>,
    c: &Comparison,
    source_children: bool,
) -> Result<Option<String>> {
    if c.unit.kind == UnitKind::LargeObjects {
        return Ok(Some(c.source_sql.clone()));
    }
    let row = tgt
        .query_one(
            "SELECT c.oid IS NOT NULL,
                    EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid)
             FROM (SELECT pg_catalog.to_regclass($1) AS oid) c",
            &[&c.unit.relation()],
        )
        .await?;
    let (exists, children): (bool, bool) = (row.get(0), row.get(1));
    if !exists {
        return Ok(None);
    }
    if children && !source_children && matches!(c.unit.kind, UnitKind::Table | UnitKind::Partition)
    {
        let mut whole = c.unit.clone();
        whole.kind = UnitKind::Hypertable;
        return Ok(Some(compare_sql(&whole)));
    }
    Ok(Some(c.source_sql.clone()))
}

/// One lane of `tsxfer verify`: compares units off the queue until none is left.
async fn compare_lane(
    opts: Arc<CompareOptions>,
    snapshots: Arc<(String, String)>,
    queue: Arc<Mutex<Vec<Comparison>>>,
    progress: Arc<Progress>,
    lane: usize,
) -> Result<Vec<(UnitReport, Option<String>)>> {
    let src = Source::connect(&opts.source, &format!("verify {lane}")).await?;
    let mut tgt = Target::connect(&opts.target, &format!("verify {lane}")).await?;
    src.begin_snapshot(Some(&snapshots.0)).await?;
    src.query(checksum::TEXT_SETTINGS, &[]).await?;
    let tgt = begin_target(&mut tgt, Some(&snapshots.1)).await?;
    let mut out = Vec::new();
    loop {
        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let Some(c) = next else { break };
        let started = Instant::now();
        progress.unit_started(lane, &c.unit);
        let children = match &c.children_sql {
            Some(sql) => src.query_one(sql, &[&c.unit.relation()]).await?.get(0),
            None => false,
        };
        let read = hash_rows(src.copy_out(&c.source_sql), c.unit.binary)
            .await
            .map_err(|e| e.context(format!("reading {} on the source", c.unit.title())))?;
        let rows = read.rows;
        let outcome = UnitOutcome {
            rows,
            bytes: read.bytes,
            seconds: 0.0,
            blocked_seconds: 0.0,
            checksum: Some(read.checksum),
        };
        let mut report = UnitReport::new(&c.unit, outcome);
        let line = match target_side(&tgt, &c, children).await? {
            None => Some(format!(
                "{} {}: the source holds {rows} rows; the target has no such table",
                c.unit.kind.label(),
                c.unit.relation()
            )),
            Some(sql) => {
                let read = hash_rows(tgt.copy_out(&sql), c.unit.binary)
                    .await
                    .map_err(|e| e.context(format!("reading {} on the target", c.unit.title())))?;
                let n = read.rows as i64;
                report.target_rows = Some(n);
                report.target_checksum = Some(read.checksum);
                mismatch_between(&report, "holds", n, Some(read.checksum))
            }
        };
        report.outcome.seconds = started.elapsed().as_secs_f64();
        progress.unit_progress(lane, c.unit.kind, read.bytes, rows);
        progress.unit_finished(lane, &c.unit, &report.outcome);
        out.push((report, line));
    }
    src.end().await?;
    tgt.commit().await?;
    Ok(out)
}

/// `tsxfer verify`: compares the rows of the source and the target, unit by unit (tables,
/// partitions, chunks, hypertables as a whole, large objects), each side read in one
/// snapshot of its own over `jobs` pairs of connections. Nothing is written anywhere.
pub async fn compare(
    opts: &CompareOptions,
    progress: Arc<Progress>,
    report: &mut Report,
) -> Result<()> {
    let started = Instant::now();
    progress.phase("preflight");
    let src = Source::connect(&opts.source, "verify").await?;
    let sizer = Source::connect(&opts.source, "verify sizes").await?;
    let mut tgt = Target::connect(&opts.target, "verify").await?;
    let facts = catalog::source_facts(&src).await?;
    src.begin_snapshot(None).await?;
    let source_snapshot: String = src
        .query_one("SELECT pg_catalog.pg_export_snapshot()", &[])
        .await?
        .get(0);
    let tgt = begin_target(&mut tgt, None).await?;
    let target_snapshot: String = tgt
        .query_one("SELECT pg_catalog.pg_export_snapshot()", &[])
        .await?
        .get(0);
    report.snapshot = Some(source_snapshot.clone());
    let units = catalog::copy_units(&src, &sizer, &facts).await?;
    let mut units = selected_units(
        &src,
        units,
        &opts.filters,
        facts.extension("timescaledb").is_some(),
    )
    .await?;
    units.sort_by_key(|u| u.estimated_bytes);
    progress.planned(&units);
    let children_sql = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhparent = pg_catalog.to_regclass($1))";
    let work: Vec<Comparison> = units
        .into_iter()
        .map(|unit| Comparison {
            source_sql: compare_sql(&unit),
            children_sql: matches!(unit.kind, UnitKind::Table | UnitKind::Partition)
                .then(|| children_sql.to_string()),
            unit,
        })
        .collect();
    progress.phase("verify");
    let lanes = opts.jobs.min(work.len()).max(1);
    let queue = Arc::new(Mutex::new(work));
    let shared = Arc::new(opts.clone());
    let snapshots = Arc::new((source_snapshot, target_snapshot));
    let mut set = JoinSet::new();
    for lane in 0..lanes {
        set.spawn(compare_lane(
            shared.clone(),
            snapshots.clone(),
            queue.clone(),
            progress.clone(),
            lane,
        ));
    }
    let mut first_error = None;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(found)) => {
                for (unit, line) in found {
                    report.units.push(unit);
                    report.mismatches.extend(line);
                }
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(Error::new(
                    ErrorKind::Internal,
                    format!("a verify worker died: {e}"),
                ));
            }
        }
    }
    src.end().await?;
    tgt.commit().await?;
    report.seconds = started.elapsed().as_secs_f64();
    if let Some(e) = first_error {
        return Err(e);
    }
    report.units.sort_by(|a, b| a.relation.cmp(&b.relation));
    report.mismatches.sort();
    differ(&report.mismatches)
}

/// Fails with exit 5's kind when `mismatches` (one line per unit that differs) is not
/// empty, naming how many and the first.
pub fn differ(mismatches: &[String]) -> Result<()> {
    match mismatches.first() {
        None => Ok(()),
        Some(first) => Err(Error::new(
            ErrorKind::Verify,
            format!(
                "{} unit(s) differ between source and target (first: {first})",
                mismatches.len()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_read_back_whole_and_through_a_new_hypertable() {
        let mut u = CopyUnit::table(1, "s".into(), "T".into(), UnitKind::Table);
        u.columns = vec!["a".into(), "b c".into()];
        assert_eq!(
            read_back_sql(&u),
            "COPY \"s\".\"T\" (\"a\", \"b c\") TO STDOUT (FORMAT binary)"
        );
        u.pages = Some(crate::plan::Pages {
            part: 2,
            parts: 3,
            from: 10,
            to: Some(20),
        });
        assert!(!read_back_sql(&u).contains("ctid"), "all parts at once");
        u.into_hypertable = true;
        u.binary = false;
        assert_eq!(
            read_back_sql(&u),
            "COPY (SELECT \"a\", \"b c\" FROM \"s\".\"T\") TO STDOUT (FORMAT text)"
        );
        u.into_hypertable = false;
        u.filter = Some("WHERE a > 1".into());
        assert_eq!(
            read_back_sql(&u),
            "COPY (SELECT \"a\", \"b c\" FROM ONLY \"s\".\"T\" WHERE a > 1) TO STDOUT (FORMAT text)"
        );
    }

    #[test]
    fn many_counts_are_one_statement_of_one_row() {
        let mut a = CopyUnit::table(1, "s".into(), "a b".into(), UnitKind::Chunk);
        a.filter = Some("WHERE x > 1".into());
        let b = CopyUnit::table(2, "s".into(), "B".into(), UnitKind::Table);
        let (a, b) = (a.count_sql(), b.count_sql());
        assert_eq!(
            count_batch_sql(&[&a, &b]),
            "SELECT (SELECT count(*) FROM ONLY \"s\".\"a b\" WHERE x > 1), (SELECT count(*) FROM ONLY \"s\".\"B\")"
        );
    }

    #[test]
    fn counts_are_batched_up_to_a_number_and_a_size_and_contents_read_alone() {
        let queued = |index: usize, bytes: u64, count: bool| Queued {
            index,
            unit: CopyUnit::table(
                index as u32,
                "s".into(),
                format!("t{index}"),
                UnitKind::Table,
            ),
            bytes,
            count: count.then(|| format!("SELECT {index}")),
        };
        // Popped from the end: two big tables, one by content, then 250 small ones.
        let mut q: Vec<Queued> = (0..250).map(|i| queued(i, 10, true)).collect();
        q.push(queued(250, 1, false));
        q.push(queued(251, COUNT_BATCH_BYTES, true));
        q.push(queued(252, COUNT_BATCH_BYTES, true));
        let q = Mutex::new(q);
        let mut sizes = Vec::new();
        while let Some(read) = next_read(&q) {
            sizes.push(match read {
                Read::Content(i, _) => {
                    assert_eq!(i, 250);
                    0
                }
                Read::Counts(batch) => batch.len(),
            });
        }
        assert_eq!(sizes, vec![1, 1, 0, COUNT_BATCH, COUNT_BATCH, 50]);
    }

    #[test]
    fn a_mismatch_names_the_unit_both_counts_and_both_checksums() {
        let mut u = CopyUnit::table(1, "s".into(), "t".into(), UnitKind::Chunk);
        u.columns = vec!["a".into()];
        let report = UnitReport::new(
            &u,
            crate::copy::UnitOutcome {
                rows: 3,
                checksum: Some(Checksum(1)),
                ..Default::default()
            },
        );
        assert_eq!(mismatch_line(&report, 3, Some(Checksum(1))), None);
        assert_eq!(mismatch_line(&report, 3, None), None, "count only");
        let line = mismatch_line(&report, 3, Some(Checksum(2))).unwrap();
        assert!(
            line.starts_with("chunk \"s\".\"t\": the source sent 3 rows"),
            "{line}"
        );
        assert!(line.contains(&Checksum(1).hex()) && line.contains(&Checksum(2).hex()));
        let line = mismatch_line(&report, 4, None).unwrap();
        assert!(line.contains("3 rows in the source snapshot, 4 on the target"));
    }
}
