//! The copy path: source `COPY ... TO STDOUT` → a bounded buffer → target
//! `COPY ... FROM STDIN`, into the target transaction the caller has open. Nothing waits in an unbounded
//! queue: when the target is slower, sending blocks, so the source stream is not polled,
//! so the driver stops reading the source socket.

pub mod checksum;
pub mod framing;
pub mod rows;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_postgres::{CopyInSink, CopyOutStream, Statement};

use crate::copy::checksum::{Checksum, HasherThread};
use crate::error::{Error, ErrorKind, Result, pg_message};
use crate::pg::{Source, Target, TargetTx};
use crate::plan::{CopyUnit, UnitKind};

pub use rows::{NullPlaceholderRewriter, RowCounter};

/// What copying one unit did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnitOutcome {
    pub rows: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Time spent waiting for the target to take the next buffer.
    pub blocked_seconds: f64,
    /// The checksum of the rows as they were sent to the target (table units; see
    /// [`crate::copy::checksum`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
}

/// A COPY error of `unit` on one side (`source` or `target`), with the driver's cause (so
/// that [`crate::error::decide`] retries a transient one).
pub fn copy_error(unit: &CopyUnit, side: &str, err: tokio_postgres::Error) -> Error {
    let text = format!(
        "copying {} {}: the {side} says: {}",
        unit.kind.label(),
        unit.title(),
        pg_message(&err)
    );
    Error::from_pg(err)
        .with_kind(ErrorKind::Copy)
        .reworded(text)
}

/// What the relay reports as it moves a unit. The run's progress implements it (the
/// terminal and the metrics, in `observe`), so the relay is built and benchmarked
/// without either.
pub trait Observer: Sync {
    /// Stream number `stream` began copying `unit`.
    fn started(&self, stream: usize, unit: &CopyUnit);
    /// `bytes` and `rows` of a unit of `kind` moved on stream number `stream`.
    fn moved(&self, stream: usize, kind: UnitKind, bytes: u64, rows: u64);
    /// The relay waited `seconds` for the target to take a buffer.
    fn blocked(&self, seconds: f64);
}

/// Units estimated under this many bytes (and under what is frozen) are copied several
/// to one target transaction: for a chunk of a few rows, the transaction's round trips
/// cost more than its copy.
pub const BATCH_UNIT_BYTES: i64 = 1 << 20;

/// At most this many units share one target transaction. A batch costs five round trips
/// of its own (BEGIN, the claim, the prepared COPY statements, the done marks, COMMIT)
/// besides about one a unit: with 16 units a batch, 5 of every 21 round trips. Each unit
/// holds a lock on its table on both sides until its batch ends, so a stream holds at
/// most this many (and their TOAST tables').
pub const BATCH_UNITS: usize = 64;

/// How units are copied over one pair of connections.
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    /// Bytes gathered before they are handed to the target.
    pub buffer_size: usize,
    /// TRUNCATE on the target connection is PostgreSQL's own: TimescaleDB is not there or
    /// is in restoring mode. Otherwise TimescaleDB's TRUNCATE of a chunk also empties the
    /// chunk's compressed chunk, so chunks are not truncated (nor frozen) then.
    pub plain_truncate: bool,
    /// Units smaller than this are not frozen: committing a TRUNCATE scans the target's
    /// whole buffer pool (about 15 ns a buffer here: 0.7 ms at 512 MB, 13 ms at 8 GB),
    /// which only pays off for a table of at least 1/512 of `shared_buffers`.
    pub freeze_min_bytes: i64,
    /// The target has `pg_stat_force_next_flush()` (PostgreSQL 15 and later).
    pub flush_stats: bool,
    /// Hash the rows as they pass (`--verify checksum`): about half of what the relay
    /// costs in CPU on narrow rows, so it is done only when the checksum is compared.
    pub checksum: bool,
}

impl CopyOptions {
    /// The options of a target connection whose server (`server_version_num`) has
    /// `shared_buffers` bytes of buffer pool.
    pub fn new(
        buffer_size: usize,
        plain_truncate: bool,
        shared_buffers: i64,
        server_version_num: i32,
        checksum: bool,
    ) -> CopyOptions {
        CopyOptions {
            buffer_size,
            plain_truncate,
            freeze_min_bytes: shared_buffers / 512,
            flush_stats: server_version_num >= 150_000,
            checksum,
        }
    }

    /// Units estimated under this many bytes may share a target transaction: none of
    /// them is frozen (which needs the TRUNCATE in the unit's own transaction) nor
    /// analyzed after its copy.
    pub fn batch_below(&self) -> i64 {
        self.freeze_min_bytes.min(BATCH_UNIT_BYTES)
    }

    /// Whether `unit` is loaded with COPY FREEZE after TRUNCATE ONLY of its table.
    pub fn freezes(&self, unit: &CopyUnit) -> bool {
        unit.fills_own_table()
            && unit.estimated_bytes >= self.freeze_min_bytes
            && (self.plain_truncate
                || !matches!(unit.kind, UnitKind::Chunk | UnitKind::CompressedChunk))
    }
}

/// The source side of a table unit as tsxfer hands it on: its COPY stream counted, the
/// placeholders rewritten where the unit needs it, gathered into buffers of
/// `buffer_size` bytes, and its rows hashed as they are handed on.
pub struct Gather {
    counter: RowCounter,
    rewriter: Option<NullPlaceholderRewriter>,
    hasher: Option<HasherThread>,
    buf: BytesMut,
    buffer_size: usize,
    rows_handed: u64,
}

impl Gather {
    /// Gathers `unit`'s stream into buffers of `buffer_size` bytes, hashing its rows when
    /// `checksum` is asked.
    pub fn new(unit: &CopyUnit, buffer_size: usize, checksum: bool) -> Gather {
        Gather {
            counter: RowCounter::new(unit.binary),
            rewriter: unit
                .placeholder_positions()
                .map(|p| NullPlaceholderRewriter::new(&p, unit.columns.len())),
            hasher: checksum.then(|| HasherThread::start(unit.binary)),
            buf: BytesMut::with_capacity(buffer_size),
            buffer_size,
            rows_handed: 0,
        }
    }

    /// Takes one piece the source sent.
    pub fn push(&mut self, piece: &[u8]) {
        self.counter.feed(piece);
        match self.rewriter.as_mut() {
            Some(r) => r.push(piece, &mut self.buf),
            None => self.buf.extend_from_slice(piece),
        }
    }

    /// A buffer to hand on, with the rows completed since the last one: once a full
    /// buffer is gathered, or whatever is left at the `end` of the stream.
    pub fn ready(&mut self, end: bool) -> Option<(Bytes, u64)> {
        let full = self.buf.len() >= self.buffer_size;
        let last = end && !self.buf.is_empty();
        if !full && !last {
            return None;
        }
        let piece = self.buf.split().freeze();
        self.buf.reserve(self.buffer_size);
        let rows = self.counter.rows() - self.rows_handed;
        self.rows_handed = self.counter.rows();
        Some((piece, rows))
    }

    pub fn rows(&self) -> u64 {
        self.counter.rows()
    }

    /// Hashes `piece`, a buffer [`Gather::ready`] gave, on the hashing thread (when the
    /// rows are hashed).
    pub async fn hash(&self, piece: &Bytes) -> Result<()> {
        match &self.hasher {
            Some(h) => h.feed(piece.clone()).await,
            None => Ok(()),
        }
    }

    /// The checksum of the rows hashed (after the placeholder rewrite: what the target
    /// gets), when they are hashed; the hashing thread ends.
    pub async fn checksum(&mut self) -> Result<Option<Checksum>> {
        match self.hasher.take() {
            Some(h) => Ok(Some(h.finish().await?.checksum())),
            None => Ok(None),
        }
    }

    /// Fails unless the stream reached its end marker (`doing` names the work).
    pub fn check_complete(&self, unit: &CopyUnit, doing: &str) -> Result<()> {
        if self.counter.complete() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Copy,
            format!(
                "{doing} {}: the source's COPY stream ended before its end marker",
                unit.title()
            ),
        ))
    }
}

/// Opens the target side of a table unit in the transaction the caller has open: COPY
/// FREEZE into the table emptied in this transaction where `options` allow it, a plain
/// COPY otherwise.
pub async fn target_sink(
    tgt: &TargetTx<'_>,
    unit: &CopyUnit,
    options: CopyOptions,
) -> Result<CopyInSink<Bytes>> {
    open_sink(tgt, unit, options, None).await
}

/// The target's COPY of `unit` as `options` make it.
fn target_copy_sql(unit: &CopyUnit, options: CopyOptions) -> String {
    if options.freezes(unit) {
        unit.frozen_copy_in_sql()
    } else {
        unit.copy_in_sql()
    }
}

/// [`target_sink`], with the COPY already prepared when `prepared` is given.
async fn open_sink(
    tgt: &TargetTx<'_>,
    unit: &CopyUnit,
    options: CopyOptions,
    prepared: Option<&Statement>,
) -> Result<CopyInSink<Bytes>> {
    if options.freezes(unit) {
        tgt.execute(&unit.truncate_sql()).await.map_err(|e| {
            e.with_kind(ErrorKind::Copy)
                .context(format!("emptying {} on the target", unit.title()))
        })?;
    }
    let opened = match prepared {
        Some(statement) => tgt.copy_in(statement).await,
        None => tgt.copy_in(&target_copy_sql(unit, options)).await,
    };
    opened.map_err(|e| {
        e.with_kind(ErrorKind::Copy)
            .context(format!("writing {} into the target", unit.title()))
    })
}

/// The two COPY statements of a table unit, prepared ([`prepare_copies`]).
pub struct Prepared {
    source: Statement,
    target: Statement,
}

/// Prepares the COPY statements of `units` (the table units among them) on both sides at
/// once, before they are copied one after the other in one target transaction: each side
/// then takes one round trip for all of them, where each COPY would otherwise take one
/// of its own to be prepared.
pub async fn prepare_copies(
    src: &Source,
    tgt: &TargetTx<'_>,
    units: &[&CopyUnit],
    options: CopyOptions,
) -> Result<Vec<Option<Prepared>>> {
    let tables: Vec<&CopyUnit> = units
        .iter()
        .copied()
        .filter(|u| u.kind != UnitKind::LargeObjects)
        .collect();
    let source_sql: Vec<String> = tables.iter().map(|u| u.copy_out_sql()).collect();
    let target_sql: Vec<String> = tables.iter().map(|u| target_copy_sql(u, options)).collect();
    let (sources, targets) = futures_util::try_join!(
        futures_util::future::try_join_all(source_sql.iter().map(|sql| src.prepare(sql))),
        futures_util::future::try_join_all(target_sql.iter().map(|sql| tgt.prepare(sql))),
    )
    .map_err(|e| {
        e.with_kind(ErrorKind::Copy)
            .context("preparing the units' COPY")
    })?;
    let mut pairs = sources.into_iter().zip(targets);
    Ok(units
        .iter()
        .map(|u| {
            (u.kind != UnitKind::LargeObjects)
                .then(|| pairs.next())
                .flatten()
                .map(|(source, target)| Prepared { source, target })
        })
        .collect())
}

/// A table unit whose COPY is open on both sides.
struct Opened {
    out: Pin<Box<CopyOutStream>>,
    sink: Pin<Box<CopyInSink<Bytes>>>,
    started: Instant,
}

/// A table unit whose rows all went to the target, its COPY there not yet ended.
struct Relayed {
    sink: Pin<Box<CopyInSink<Bytes>>>,
    gather: Gather,
    bytes: u64,
    blocked: Duration,
    started: Instant,
}

/// Opens the COPY of table unit `unit` on both sides of `lane`, at once (their round
/// trips overlap), in the source's shared snapshot transaction and the target
/// transaction the caller has open.
async fn open_table(
    lane: Lane<'_>,
    unit: &CopyUnit,
    prepared: Option<&Prepared>,
) -> Result<Opened> {
    let started = Instant::now();
    let target_side = open_sink(lane.tgt, unit, lane.options, prepared.map(|p| &p.target));
    let (out, sink) = futures_util::try_join!(open_source(lane, unit, prepared), target_side)?;
    Ok(Opened {
        out: Box::pin(out),
        sink: Box::pin(sink),
        started,
    })
}

/// Opens the source side of table unit `unit` (its COPY out, in the shared snapshot
/// transaction); the unit counts as begun from here.
async fn open_source(
    lane: Lane<'_>,
    unit: &CopyUnit,
    prepared: Option<&Prepared>,
) -> Result<CopyOutStream> {
    let Lane {
        src,
        snapshot,
        progress,
        stream,
        ..
    } = lane;
    progress.started(stream, unit);
    src.enter_snapshot(snapshot)
        .await
        .map_err(|e| e.context(format!("opening the snapshot for {}", unit.title())))?;
    if !unit.binary {
        src.query(checksum::TEXT_SETTINGS, &[]).await?;
    }
    match prepared {
        Some(p) => src.copy_out(&p.source).await,
        None => src.copy_out(&unit.copy_out_sql()).await,
    }
    .map_err(|e| {
        e.with_kind(ErrorKind::Copy)
            .context(format!("reading {} from the source", unit.title()))
    })
}

/// Moves every row of an opened unit from the source to the target.
async fn relay_table(lane: Lane<'_>, unit: &CopyUnit, opened: Opened) -> Result<Relayed> {
    let Opened {
        mut out,
        mut sink,
        started,
    } = opened;
    let mut gather = Gather::new(unit, lane.options.buffer_size, lane.options.checksum);
    let mut bytes = 0u64;
    let mut blocked = Duration::ZERO;
    loop {
        let next = out.next().await;
        let end = next.is_none();
        if let Some(chunk) = next {
            let chunk = chunk.map_err(|e| copy_error(unit, "source", e))?;
            bytes += chunk.len() as u64;
            gather.push(&chunk);
        }
        if let Some((piece, rows)) = gather.ready(end) {
            let len = piece.len() as u64;
            gather.hash(&piece).await?;
            let wait = Instant::now();
            sink.send(piece)
                .await
                .map_err(|e| copy_error(unit, "target", e))?;
            let waited = wait.elapsed();
            blocked += waited;
            lane.progress.blocked(waited.as_secs_f64());
            lane.progress.moved(lane.stream, unit.kind, len, rows);
        }
        if end {
            break;
        }
    }
    gather.check_complete(unit, "copying")?;
    Ok(Relayed {
        sink,
        gather,
        bytes,
        blocked,
        started,
    })
}

/// Ends a relayed unit's COPY on the target and checks the target took every row read.
async fn finish_table(unit: &CopyUnit, relayed: Relayed) -> Result<UnitOutcome> {
    let Relayed {
        mut sink,
        mut gather,
        bytes,
        blocked,
        started,
    } = relayed;
    let written = sink
        .as_mut()
        .finish()
        .await
        .map_err(|e| copy_error(unit, "target", e))?;
    if written != gather.rows() {
        return Err(Error::new(
            ErrorKind::Copy,
            format!(
                "copying {}: {} rows read from the source but the target took {written}",
                unit.title(),
                gather.rows()
            ),
        ));
    }
    Ok(UnitOutcome {
        rows: written,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        blocked_seconds: blocked.as_secs_f64(),
        checksum: gather.checksum().await?,
    })
}

/// Copies one table unit, its rows as of `snapshot`, into the target transaction the
/// caller has open (and commits). On error the caller must drop both connections: they
/// may be mid-COPY.
async fn copy_table(
    lane: Lane<'_>,
    unit: &CopyUnit,
    prepared: Option<&Prepared>,
) -> Result<UnitOutcome> {
    let opened = open_table(lane, unit, prepared).await?;
    let relayed = relay_table(lane, unit, opened).await?;
    let outcome = finish_table(unit, relayed).await?;
    lane.src.unit_read().await?;
    Ok(outcome)
}

/// Why a batch of units failed: the unit it failed on, how many of the batch had begun
/// by then (the units after the failing one may have), and the error.
#[derive(Debug)]
pub struct BatchFailure {
    pub at: usize,
    pub begun: usize,
    pub error: Error,
}

/// Copies the table units `units` one after the other into the target transaction the
/// caller has open. The two sides run apart: the source reads unit after unit (each
/// COPY sent right behind the one before it) into a queue of at most `buffer_size`
/// bytes, while the target writes what is queued, each unit's COPY opened while the
/// one before ends. For units of a few rows, the waits for replies are what copying
/// costs; apart, each side waits only for its own server, and a source that is ahead
/// no longer waits for the target's replies, nor the target for the source's. The
/// source's shared snapshot transaction is renewed, when due, only after the whole
/// batch: the driver hands a request its reply only once the replies before it are
/// read, so a COMMIT sent behind the next unit's COPY, whose rows nobody reads yet,
/// would never be answered. On error the caller must drop both connections: they may
/// be mid-COPY.
pub async fn copy_tables(
    lane: Lane<'_>,
    units: &[&CopyUnit],
    prepared: &[Option<Prepared>],
) -> Result<Vec<UnitOutcome>, BatchFailure> {
    if units.is_empty() {
        return Ok(Vec::new());
    }
    // Enough to keep the source a few small units ahead; a unit bigger than its
    // estimate goes through in pieces of at most `buffer_size` bytes.
    let (queue, queued) = tokio::sync::mpsc::channel(QUEUED_PIECES);
    let room = Arc::new(tokio::sync::Semaphore::new(lane.options.buffer_size));
    let begun = AtomicUsize::new(0);
    let read = read_ahead(lane, units, prepared, queue, &room, &begun);
    let written = write_behind(lane, units, prepared, queued, &begun);
    let (_, outcomes) = futures_util::try_join!(read, written)?;
    lane.src.unit_read().await.map_err(|error| BatchFailure {
        at: units.len() - 1,
        begun: units.len(),
        error,
    })?;
    Ok(outcomes)
}

/// Pieces (and unit ends) the source side of [`copy_tables`] may have queued at once.
const QUEUED_PIECES: usize = 64;

/// What the source side of [`copy_tables`] hands the target side, in order.
enum FromSource {
    /// Rows of the unit being read, as the target gets them, with how many rows they
    /// complete; the permit holds their bytes' room in the queue.
    Piece(Bytes, u64, tokio::sync::OwnedSemaphorePermit),
    /// The unit was read whole.
    End(ReadWhole),
}

/// A table unit read whole from the source.
struct ReadWhole {
    gather: Gather,
    bytes: u64,
    started: Instant,
}

/// The source side of [`copy_tables`]: reads every unit in turn and queues its pieces,
/// the next unit's COPY sent while this one is read. Counts in `begun` the units opened.
/// Stops early, without an error of its own, when the target side is gone (its error
/// is the batch's).
async fn read_ahead(
    lane: Lane<'_>,
    units: &[&CopyUnit],
    prepared: &[Option<Prepared>],
    queue: tokio::sync::mpsc::Sender<FromSource>,
    room: &Arc<tokio::sync::Semaphore>,
    begun: &AtomicUsize,
) -> Result<(), BatchFailure> {
    let prepared_for = |at: usize| prepared.get(at).and_then(Option::as_ref);
    let failed = |at: usize| {
        move |error: Error| BatchFailure {
            at,
            begun: begun.load(Ordering::SeqCst),
            error,
        }
    };
    begun.store(1, Ordering::SeqCst);
    let mut out = Box::pin(
        open_source(lane, units[0], prepared_for(0))
            .await
            .map_err(failed(0))?,
    );
    for (at, unit) in units.iter().enumerate() {
        let whole = read_unit(lane, unit, out.as_mut(), &queue, room);
        let (whole, opened) = match units.get(at + 1) {
            Some(next) => {
                let open = async {
                    begun.store(at + 2, Ordering::SeqCst);
                    open_source(lane, next, prepared_for(at + 1)).await
                };
                let (whole, opened) = futures_util::join!(whole, open);
                let whole = whole.map_err(failed(at))?;
                (whole, Some(opened.map_err(failed(at + 1))?))
            }
            None => (whole.await.map_err(failed(at))?, None),
        };
        let Some(whole) = whole else {
            return Ok(());
        };
        if queue.send(FromSource::End(whole)).await.is_err() {
            return Ok(());
        }
        match opened {
            Some(o) => out = Box::pin(o),
            None => break,
        }
    }
    Ok(())
}

/// Reads one opened unit's rows into the queue, each piece once there is room for it;
/// `None` when the target side is gone.
async fn read_unit(
    lane: Lane<'_>,
    unit: &CopyUnit,
    mut out: Pin<&mut CopyOutStream>,
    queue: &tokio::sync::mpsc::Sender<FromSource>,
    room: &Arc<tokio::sync::Semaphore>,
) -> Result<Option<ReadWhole>> {
    let started = Instant::now();
    let mut gather = Gather::new(unit, lane.options.buffer_size, lane.options.checksum);
    let mut bytes = 0u64;
    loop {
        let next = out.next().await;
        let end = next.is_none();
        if let Some(chunk) = next {
            let chunk = chunk.map_err(|e| copy_error(unit, "source", e))?;
            bytes += chunk.len() as u64;
            gather.push(&chunk);
        }
        if let Some((piece, rows)) = gather.ready(end) {
            gather.hash(&piece).await?;
            // A piece is at most a buffer: it always fits once the queue is empty.
            let cost = piece.len().min(lane.options.buffer_size);
            let permit = room
                .clone()
                .acquire_many_owned(u32::try_from(cost).unwrap_or(u32::MAX))
                .await
                .map_err(|e| Error::new(ErrorKind::Internal, format!("the copy queue: {e}")))?;
            if queue
                .send(FromSource::Piece(piece, rows, permit))
                .await
                .is_err()
            {
                return Ok(None);
            }
        }
        if end {
            break;
        }
    }
    gather.check_complete(unit, "copying")?;
    Ok(Some(ReadWhole {
        gather,
        bytes,
        started,
    }))
}

/// The target side of [`copy_tables`]: writes each unit's queued pieces, then ends its
/// COPY while the next one's opens.
async fn write_behind(
    lane: Lane<'_>,
    units: &[&CopyUnit],
    prepared: &[Option<Prepared>],
    mut queued: tokio::sync::mpsc::Receiver<FromSource>,
    begun: &AtomicUsize,
) -> Result<Vec<UnitOutcome>, BatchFailure> {
    let statement = |at: usize| prepared.get(at).and_then(Option::as_ref).map(|p| &p.target);
    let failed = |at: usize| {
        move |error: Error| BatchFailure {
            at,
            begun: begun.load(Ordering::SeqCst).max(at + 1),
            error,
        }
    };
    let mut sink = Box::pin(
        open_sink(lane.tgt, units[0], lane.options, statement(0))
            .await
            .map_err(failed(0))?,
    );
    let mut outcomes = Vec::with_capacity(units.len());
    for (at, unit) in units.iter().enumerate() {
        let relayed = write_unit(lane, unit, sink, &mut queued)
            .await
            .map_err(failed(at))?;
        let Some(next) = units.get(at + 1) else {
            outcomes.push(finish_table(unit, relayed).await.map_err(failed(at))?);
            break;
        };
        let (outcome, opened) = futures_util::join!(
            finish_table(unit, relayed),
            open_sink(lane.tgt, next, lane.options, statement(at + 1))
        );
        outcomes.push(outcome.map_err(failed(at))?);
        sink = Box::pin(opened.map_err(failed(at + 1))?);
    }
    Ok(outcomes)
}

/// Sends one unit's queued pieces into its open COPY on the target, up to the unit's end.
async fn write_unit(
    lane: Lane<'_>,
    unit: &CopyUnit,
    mut sink: Pin<Box<CopyInSink<Bytes>>>,
    queued: &mut tokio::sync::mpsc::Receiver<FromSource>,
) -> Result<Relayed> {
    let mut blocked = Duration::ZERO;
    loop {
        match queued.recv().await {
            Some(FromSource::Piece(piece, rows, room)) => {
                let len = piece.len() as u64;
                let wait = Instant::now();
                sink.send(piece)
                    .await
                    .map_err(|e| copy_error(unit, "target", e))?;
                drop(room);
                let waited = wait.elapsed();
                blocked += waited;
                lane.progress.blocked(waited.as_secs_f64());
                lane.progress.moved(lane.stream, unit.kind, len, rows);
            }
            Some(FromSource::End(whole)) => {
                return Ok(Relayed {
                    sink,
                    gather: whole.gather,
                    bytes: whole.bytes,
                    blocked,
                    started: whole.started,
                });
            }
            None => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!("copying {}: the source side stopped", unit.title()),
                ));
            }
        }
    }
}

/// ANALYZE of a copied unit's table, once its transaction has committed, while its pages
/// are still in the target's buffers; the analyze phase then only takes what this left
/// (see sql/target_analyze.sql). An inheritance parent is left for that phase: its
/// ANALYZE reads and locks its children, which other units may still be loading.
pub async fn analyze_copied(tgt: &Target, unit: &CopyUnit, options: &CopyOptions) -> Result<()> {
    // A small table is read again from the buffers whenever it is analyzed: it is left to
    // the analyze phase, which takes many in one statement (round trips, not reads, are
    // what thousands of small chunks cost).
    if !unit.fills_own_table() || unit.estimated_bytes < options.freeze_min_bytes {
        return Ok(());
    }
    if unit.kind == UnitKind::Table {
        let parent: bool = tgt
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhparent = pg_catalog.to_regclass($1))",
                &[&unit.relation()],
            )
            .await?
            .get(0);
        if parent {
            return Ok(());
        }
    }
    // The unit's inserts wait in this session's statistics until their next flush (at
    // most once a second). Flushed after the ANALYZE, they would count as changes since
    // it, and autovacuum would analyze the table once more.
    if options.flush_stats {
        tgt.execute("SELECT pg_catalog.pg_stat_force_next_flush()")
            .await?;
    }
    tgt.execute(&format!("ANALYZE {}", unit.relation())).await
}

/// Copies the large objects of `unit` (all of them, or its range of OIDs) as of
/// `snapshot`, in slices of `buffer_size` bytes, into the target transaction the caller
/// has open. Owners and grants are set with the other privileges.
pub async fn copy_large_objects(
    src: &Source,
    tgt: &TargetTx<'_>,
    unit: &CopyUnit,
    snapshot: &str,
    buffer_size: usize,
) -> Result<UnitOutcome> {
    debug_assert!(buffer_size > 0);
    let started = Instant::now();
    let slice = i32::try_from(buffer_size).unwrap_or(i32::MAX);
    src.enter_snapshot(snapshot).await?;
    let oids = src
        .query(
            &format!(
                "SELECT oid, pg_catalog.obj_description(oid, 'pg_largeobject')
                 FROM pg_catalog.pg_largeobject_metadata WHERE {} ORDER BY oid",
                unit.large_object_condition()
            ),
            &[],
        )
        .await?;
    let lo_error = |side: &str, oid: u32, e: Error| {
        e.with_kind(ErrorKind::Copy)
            .context(format!("copying large object {oid}: the {side} says"))
    };
    let mut bytes = 0u64;
    for row in &oids {
        let oid: u32 = row.get(0);
        tgt.query_one("SELECT pg_catalog.lo_create($1)", &[&oid])
            .await
            .map_err(|e| lo_error("target", oid, e))?;
        if let Some(comment) = row.get::<_, Option<String>>(1) {
            tgt.execute(&format!(
                "COMMENT ON LARGE OBJECT {oid} IS {}",
                crate::quote::literal(&comment)
            ))
            .await
            .map_err(|e| lo_error("target", oid, e))?;
        }
        let mut offset: i64 = 0;
        loop {
            let piece: Vec<u8> = src
                .query_one(
                    "SELECT pg_catalog.lo_get($1, $2, $3)",
                    &[&oid, &offset, &slice],
                )
                .await
                .map_err(|e| lo_error("source", oid, e))?
                .get(0);
            if piece.is_empty() {
                break;
            }
            tgt.query_one(
                "SELECT pg_catalog.lo_put($1, $2, $3)",
                &[&oid, &offset, &piece],
            )
            .await
            .map_err(|e| lo_error("target", oid, e))?;
            offset += piece.len() as i64;
            bytes += piece.len() as u64;
            if piece.len() < buffer_size {
                break;
            }
        }
    }
    src.unit_read().await?;
    Ok(UnitOutcome {
        rows: oids.len() as u64,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        blocked_seconds: 0.0,
        checksum: None,
    })
}

/// Where units are copied: a stream's two sessions, the run's snapshot, the target's
/// copy options, and who watches stream number `stream`.
#[derive(Clone, Copy)]
pub struct Lane<'a> {
    pub src: &'a Source,
    pub tgt: &'a TargetTx<'a>,
    pub snapshot: &'a str,
    pub options: CopyOptions,
    pub progress: &'a dyn Observer,
    pub stream: usize,
}

/// Copies `unit`, whatever its kind, on `lane` (its COPY statements `prepared` ahead, or
/// not).
pub async fn copy_unit(
    lane: Lane<'_>,
    unit: &CopyUnit,
    prepared: Option<&Prepared>,
) -> Result<UnitOutcome> {
    if unit.kind == UnitKind::LargeObjects {
        lane.progress.started(lane.stream, unit);
        let outcome = copy_large_objects(
            lane.src,
            lane.tgt,
            unit,
            lane.snapshot,
            lane.options.buffer_size,
        )
        .await?;
        lane.progress
            .moved(lane.stream, unit.kind, outcome.bytes, outcome.rows);
        Ok(outcome)
    } else {
        copy_table(lane, unit, prepared).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_big_enough_tables_are_frozen_and_chunks_only_under_plain_truncate() {
        let options = CopyOptions::new(1 << 20, true, 512 << 20, 150_000, true);
        let mut unit = CopyUnit::table(1, "s".into(), "t".into(), UnitKind::Chunk);
        unit.estimated_bytes = 1 << 20;
        assert!(options.freezes(&unit));
        unit.estimated_bytes -= 1;
        assert!(!options.freezes(&unit));
        unit.estimated_bytes = 1 << 30;
        let hooked = CopyOptions::new(1 << 20, false, 512 << 20, 150_000, true);
        assert!(!hooked.freezes(&unit));
        unit.kind = UnitKind::Table;
        assert!(hooked.freezes(&unit));
        unit.kind = UnitKind::Hypertable;
        assert!(!options.freezes(&unit));
    }

    #[test]
    fn units_small_enough_to_share_a_transaction_are_never_frozen() {
        for shared_buffers in [0, 16 << 20, 512 << 20, 8 << 30] {
            let options = CopyOptions::new(1 << 20, true, shared_buffers, 150_000, false);
            let below = options.batch_below();
            assert!(below <= BATCH_UNIT_BYTES);
            let mut unit = CopyUnit::table(1, "s".into(), "t".into(), UnitKind::Table);
            unit.estimated_bytes = (below - 1).max(0);
            assert!(below == 0 || !options.freezes(&unit), "{shared_buffers}");
            unit.estimated_bytes = below;
            assert_eq!(options.freezes(&unit), below == options.freeze_min_bytes);
        }
    }
}
