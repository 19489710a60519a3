//! The copy pool: `jobs` workers, each with one source and one target connection, taking
//! units from the run state until none is left. A unit is claimed, copied and marked done
//! in one target transaction; small units share one (up to [`copy::BATCH_UNITS`] of them),
//! and commit together or not at all. A failure [`crate::error::decide`] finds worth retrying
//! (dropped connection, server restart, serialization failure, too many connections) puts
//! the unit back and retries it after [`crate::pg::retry`]'s pause, up to `retries` times, on
//! connections made again the same way; any other failure marks the unit failed and stops
//! the pool from taking new units, while units in flight finish. A pause ends at once when
//! the operator asks the run to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::copy::{self, CopyOptions};
use crate::dump::DumpReader;
use crate::error::{Error, ErrorKind, Result};
use crate::observe::progress::Progress;
use crate::pg::conninfo::ConnInfo;
use crate::pg::retry::{self, Retry};
use crate::pg::{Source, Target, TargetTx};
use crate::plan::UnitKind;
use crate::plan::unit_book::UnitBook;
use crate::target::state;

/// Where the units' rows come from.
#[derive(Clone)]
pub enum DataFrom {
    /// The live source, as of the run's snapshot.
    Source {
        conninfo: ConnInfo,
        snapshot: String,
    },
    /// The unit files of a `tsxfer dump`.
    Dump(Arc<DumpReader>),
}

/// What a pool needs to run.
#[derive(Clone)]
pub struct PoolConfig {
    pub from: DataFrom,
    pub target: ConnInfo,
    pub jobs: usize,
    pub buffer_size: usize,
    pub retries: u32,
    /// Who this process is, recorded with every unit it copies.
    pub worker: String,
    /// The run's units by their id in the run state.
    pub units: Arc<UnitBook>,
    /// Hash each unit's rows as they pass, for `--verify checksum`.
    pub checksum: bool,
}

/// How a pool ended when nothing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolEnd {
    /// No unit is left.
    Finished,
    /// Asked to stop: units in flight were finished, others are left for a later run.
    Drained,
}

/// When a set of workers stops taking work: when asked to (`drain`), or at the first
/// failure, which it keeps.
pub struct Stop {
    drain: Arc<AtomicBool>,
    failed: AtomicBool,
    failure: Mutex<Option<Error>>,
}

impl Stop {
    pub fn new(drain: Arc<AtomicBool>) -> Stop {
        Stop {
            drain,
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
        }
    }

    pub fn halted(&self) -> bool {
        self.failed.load(Ordering::SeqCst) || self.drained()
    }

    /// The flag that asks the set to stop, for pauses that must end when it is set.
    pub fn drain_flag(&self) -> Arc<AtomicBool> {
        self.drain.clone()
    }

    pub fn drained(&self) -> bool {
        self.drain.load(Ordering::SeqCst)
    }

    pub fn fail(&self, e: Error) {
        self.failed.store(true, Ordering::SeqCst);
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(e);
        }
    }
}

/// Runs `jobs` workers (`worker(n)` is number n) until every one has ended; a worker that
/// dies fails the set. Returns the first failure.
pub async fn run_workers<F>(
    jobs: usize,
    stop: &Stop,
    what: &str,
    worker: impl Fn(usize) -> F,
) -> Result<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let mut set = JoinSet::new();
    for n in 0..jobs.max(1) {
        set.spawn(worker(n));
    }
    while let Some(joined) = set.join_next().await {
        if let Err(e) = joined {
            stop.fail(Error::new(
                ErrorKind::Internal,
                format!("a {what} worker died: {e}"),
            ));
        }
    }
    match stop
        .failure
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

struct Shared {
    config: PoolConfig,
    progress: Arc<Progress>,
    stop: Stop,
}

enum Step {
    Copied,
    NothingFree,
}

/// A failed step: the unit that failed (id, relation, attempts so far), if any, and
/// whether it shared its transaction with other units.
struct Failed {
    unit: Option<(i32, String, i32, crate::plan::CopyUnit)>,
    batched: bool,
    error: Error,
}

/// A stream's connections (a source one only when copying from a live source) and how
/// its target takes units.
async fn connect(config: &PoolConfig, n: usize) -> Result<(Option<Source>, Target, CopyOptions)> {
    let role = format!("copy {n}");
    let src = match &config.from {
        DataFrom::Source { conninfo, .. } => Some(Source::connect(conninfo, &role).await?),
        DataFrom::Dump(_) => None,
    };
    let tgt = Target::connect(&config.target, &role).await?;
    tgt.execute("SET synchronous_commit = off").await?;
    // TimescaleDB's restoring mode is a database setting, read when a session starts.
    let row = tgt
        .query_one(
            "SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'timescaledb')
                    OR current_setting('timescaledb.restoring', true) = 'on',
                    pg_catalog.pg_size_bytes(current_setting('shared_buffers')),
                    current_setting('server_version_num')::int",
            &[],
        )
        .await?;
    let options = CopyOptions::new(
        config.buffer_size,
        row.get(0),
        row.get(1),
        row.get(2),
        config.checksum,
    );
    Ok((src, tgt, options))
}

/// Copies the claimed units into the target transaction that is open, one after the
/// other; table units from a live source are pipelined ([`copy::copy_tables`]).
async fn copy_claimed(
    src: Option<&Source>,
    tgt: &TargetTx<'_>,
    units: &[&crate::plan::CopyUnit],
    prepared: &[Option<copy::Prepared>],
    options: CopyOptions,
    shared: &Shared,
    n: usize,
) -> Result<Vec<copy::UnitOutcome>, copy::BatchFailure> {
    let alone = |at: usize| {
        move |error: Error| copy::BatchFailure {
            at,
            begun: at + 1,
            error,
        }
    };
    match (&shared.config.from, src) {
        (DataFrom::Source { snapshot, .. }, Some(src)) => {
            let lane = copy::Lane {
                src,
                tgt,
                snapshot,
                options,
                progress: shared.progress.as_ref(),
                stream: n,
            };
            if units.iter().all(|u| u.kind != UnitKind::LargeObjects) {
                return copy::copy_tables(lane, units, prepared).await;
            }
            let mut outcomes = Vec::with_capacity(units.len());
            for (at, unit) in units.iter().enumerate() {
                let prepared = prepared.get(at).and_then(Option::as_ref);
                outcomes.push(
                    copy::copy_unit(lane, unit, prepared)
                        .await
                        .map_err(alone(at))?,
                );
            }
            Ok(outcomes)
        }
        (DataFrom::Dump(reader), _) => {
            let mut outcomes = Vec::with_capacity(units.len());
            for (at, unit) in units.iter().enumerate() {
                shared.progress.unit_started(n, unit);
                outcomes.push(
                    reader
                        .load_unit(tgt, unit, options, &shared.progress, n)
                        .await
                        .map_err(alone(at))?,
                );
            }
            Ok(outcomes)
        }
        (DataFrom::Source { .. }, None) => Err(alone(0)(Error::new(
            ErrorKind::Internal,
            "a copy stream has no source connection",
        ))),
    }
}

/// Claims units (one, or up to `most` small ones: [`state::claim`]), copies them and
/// marks them done, all in one target transaction: they commit together or not at all. When one fails, the units copied before it in the transaction are rolled back
/// with it and go back to the queue as they were; the failure is the failing unit's.
async fn one_batch(
    src: Option<&Source>,
    tgt: &mut Target,
    options: CopyOptions,
    shared: &Shared,
    n: usize,
    most: usize,
) -> Result<Step, Failed> {
    let bare = |error: Error| Failed {
        unit: None,
        batched: false,
        error,
    };
    let tx = tgt.begin().await.map_err(bare)?;
    let claimed = state::claim(&tx, options.batch_below(), most)
        .await
        .map_err(bare)?;
    if claimed.is_empty() {
        tx.rollback().await.map_err(bare)?;
        return Ok(Step::NothingFree);
    }
    let config = &shared.config;
    let mut units = Vec::with_capacity(claimed.len());
    for c in &claimed {
        let Some(unit) = config.units.get(c.id) else {
            return Err(bare(state::corrupt(&format!(
                "unit {} is not one of the run's units",
                c.id
            ))));
        };
        units.push(unit);
    }
    let batched = claimed.len() > 1;
    let held = |at: usize, error: Error| Failed {
        unit: Some((
            claimed[at].id,
            units[at].title(),
            claimed[at].attempts,
            units[at].clone(),
        )),
        batched,
        error,
    };
    let prepared = match (batched, src) {
        (true, Some(src)) => copy::prepare_copies(src, &tx, &units, options)
            .await
            .map_err(|e| held(0, e))?,
        _ => Vec::new(),
    };
    let outcomes = match copy_claimed(src, &tx, &units, &prepared, options, shared, n).await {
        Ok(outcomes) => outcomes,
        Err(f) => {
            for (i, other) in units[..f.begun.min(units.len())].iter().enumerate() {
                if i != f.at {
                    shared.progress.unit_rolled_back(n, other);
                }
            }
            return Err(held(f.at, f.error));
        }
    };
    let done: Vec<(i32, &copy::UnitOutcome)> =
        claimed.iter().map(|c| c.id).zip(&outcomes).collect();
    let marked = async {
        state::mark_done(&tx, &done, &config.worker).await?;
        tx.commit().await
    };
    if let Err(e) = marked.await {
        // The commit is the first unit's failure; the others go back as they were.
        for later in &units[1..] {
            shared.progress.unit_rolled_back(n, later);
        }
        let what = match units.len() {
            1 => units[0].title(),
            k => format!("{} and {} more units", units[0].title(), k - 1),
        };
        return Err(held(
            0,
            e.with_kind(ErrorKind::Copy)
                .context(format!("committing {what} on the target")),
        ));
    }
    for (unit, outcome) in units.iter().zip(&outcomes) {
        let analyzing = std::time::Instant::now();
        if let Err(e) = copy::analyze_copied(&*tgt, unit, &options).await {
            warn!(
                "ANALYZE {} after its copy: {e}; the analyze phase does it",
                unit.title()
            );
        }
        shared.progress.analyzed(analyzing.elapsed().as_secs_f64());
        shared.progress.unit_finished(n, unit, outcome);
    }
    Ok(Step::Copied)
}

/// Whether units are still pending but held by other workers (in this process or not).
async fn others_busy(tgt: &Target) -> Result<bool> {
    Ok(state::counts(tgt).await?.pending > 0)
}

async fn worker(shared: Arc<Shared>, n: usize) {
    let config = &shared.config;
    let retry = Retry::new(config.retries, shared.stop.drain.clone());
    let mut conns: Option<(Option<Source>, Target, CopyOptions)> = None;
    // Failures in a row that held no unit (the target went away between units).
    let mut bare_failures = 0u32;
    // After a failure in a shared transaction, units are taken one at a time for a
    // while, so that one unit that fails does not take its neighbours down again.
    let mut single_claims = 0usize;
    while !shared.stop.halted() {
        if conns.is_none() {
            match retry
                .run(&format!("stream {n}"), || connect(config, n))
                .await
            {
                Ok(c) => conns = Some(c),
                Err(_) if shared.stop.drained() => return,
                Err(e) => return shared.stop.fail(e),
            }
        }
        let (src, tgt, options) = conns.as_mut().expect("connected above");
        let most = if single_claims > 0 {
            single_claims -= 1;
            1
        } else {
            copy::BATCH_UNITS
        };
        let failed = match one_batch(src.as_ref(), tgt, *options, &shared, n, most).await {
            Ok(Step::Copied) => {
                bare_failures = 0;
                continue;
            }
            Ok(Step::NothingFree) => match others_busy(tgt).await {
                Ok(true) => {
                    retry::pause(&shared.stop.drain, Duration::from_millis(500)).await;
                    continue;
                }
                Ok(false) => return,
                Err(error) => Failed {
                    unit: None,
                    batched: false,
                    error,
                },
            },
            Err(f) => f,
        };
        // The connections may be mid-COPY: drop them, which rolls back.
        conns = None;
        let Failed {
            unit,
            batched,
            error,
        } = failed;
        if batched {
            single_claims = copy::BATCH_UNITS;
        }
        let Some((id, relation, attempts, unit)) = unit else {
            bare_failures += 1;
            if !error.is_retryable() || bare_failures > config.retries {
                return shared.stop.fail(error);
            }
            match retry
                .wait(&format!("stream {n}"), &error, bare_failures)
                .await
            {
                Ok(()) => continue,
                Err(_) => return,
            }
        };
        let attempts = attempts as u32 + 1;
        let give_up = !error.is_retryable() || attempts > config.retries;
        shared.progress.unit_failed(n, &unit, !give_up);
        match Target::connect(&config.target, "pool").await {
            Ok(t) => {
                if let Err(e) = state::record_failure(&t, id, error.message(), give_up).await {
                    warn!("could not record the failure of {relation}: {e}");
                }
            }
            Err(e) => warn!("could not record the failure of {relation}: {e}"),
        }
        if give_up {
            let error = if error.is_retryable() {
                error.context(format!("gave up after {attempts} attempts"))
            } else {
                error
            };
            return shared.stop.fail(error);
        }
        if retry.wait(&relation, &error, attempts).await.is_err() {
            return;
        }
    }
}

/// Runs `config.jobs` workers until no unit is left, one fails for good, or `drain` is set.
pub async fn run(
    config: PoolConfig,
    progress: Arc<Progress>,
    drain: Arc<AtomicBool>,
) -> Result<PoolEnd> {
    let jobs = config.jobs;
    let shared = Arc::new(Shared {
        config,
        progress,
        stop: Stop::new(drain),
    });
    run_workers(jobs, &shared.stop, "copy", |n| worker(shared.clone(), n)).await?;
    if shared.stop.drained() {
        info!("copy pool stopped: units in flight finished");
        return Ok(PoolEnd::Drained);
    }
    Ok(PoolEnd::Finished)
}
