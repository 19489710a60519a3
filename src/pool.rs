//! The copy pool: `jobs` workers, each with one source and one target connection, taking
//! units from the run state until none is left. A unit is claimed, copied and marked done
//! in one target transaction. A transient failure (dropped connection, server restart,
//! serialization failure, too many connections) puts the unit back and retries it after
//! an exponential, jittered pause, up to `retries` times; any other failure marks the unit
//! failed and stops the pool from taking new units, while units in flight finish.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::conninfo::ConnInfo;
use crate::copy::{self, CopyOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::pg::{Source, Target};
use crate::progress::Progress;
use crate::state;

/// What a pool needs to run.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub source: ConnInfo,
    pub target: ConnInfo,
    pub jobs: usize,
    pub buffer_size: usize,
    pub retries: u32,
    pub snapshot: String,
    /// Who this process is, recorded with every unit it copies.
    pub worker: String,
}

/// How a pool ended when nothing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolEnd {
    /// No unit is left.
    Finished,
    /// Asked to stop: units in flight were finished, others are left for a later run.
    Drained,
}

/// The pause before attempt `attempt + 1`: 0.5 s doubling per attempt, at most 30 s, plus
/// up to half again at random so that workers hit by the same outage do not return at once.
pub fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1 << attempt.min(6));
    let base = base.min(Duration::from_secs(30));
    let mut h = RandomState::new().build_hasher();
    h.write_u32(attempt);
    let jitter = h.finish() % (base.as_millis() as u64 / 2 + 1);
    base + Duration::from_millis(jitter)
}

struct Shared {
    config: PoolConfig,
    progress: Arc<Progress>,
    drain: Arc<AtomicBool>,
    stop: AtomicBool,
    failure: Mutex<Option<Error>>,
}

impl Shared {
    fn halted(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.drain.load(Ordering::SeqCst)
    }

    fn fail(&self, e: Error) {
        self.stop.store(true, Ordering::SeqCst);
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(e);
        }
    }
}

enum Step {
    Copied,
    NothingFree,
}

/// A failed step: the unit it held (id, relation, attempts so far), if any.
struct Failed {
    unit: Option<(i32, String, i32, crate::plan::CopyUnit)>,
    error: Error,
}

async fn connect(config: &PoolConfig, n: usize) -> Result<(Source, Target, CopyOptions)> {
    let role = format!("copy {n}");
    let src = Source::connect(&config.source, &role).await?;
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
    let options = CopyOptions::new(config.buffer_size, row.get(0), row.get(1), row.get(2));
    Ok((src, tgt, options))
}

/// Claims one unit, copies it and marks it done, all in one target transaction.
async fn one_unit(
    (src, tgt, options): &(Source, Target, CopyOptions),
    shared: &Shared,
    n: usize,
) -> Result<Step, Failed> {
    let bare = |error: Error| Failed { unit: None, error };
    tgt.execute("BEGIN").await.map_err(bare)?;
    let Some(claimed) = state::claim(tgt).await.map_err(bare)? else {
        tgt.execute("ROLLBACK").await.map_err(bare)?;
        return Ok(Step::NothingFree);
    };
    let held = |error: Error| Failed {
        unit: Some((
            claimed.id,
            claimed.unit.relation(),
            claimed.attempts,
            claimed.unit.clone(),
        )),
        error,
    };
    let config = &shared.config;
    shared.progress.unit_started(n, &claimed.unit);
    let outcome = copy::copy_unit(
        src,
        tgt,
        &claimed.unit,
        &config.snapshot,
        *options,
        &shared.progress,
        n,
    )
    .await
    .map_err(held)?;
    state::mark_done(tgt, claimed.id, &outcome, &config.worker)
        .await
        .map_err(held)?;
    tgt.execute("COMMIT").await.map_err(|e| {
        held(e.with_kind(ErrorKind::Copy).context(format!(
            "committing {} on the target",
            claimed.unit.relation()
        )))
    })?;
    if let Err(e) = copy::analyze_copied(tgt, &claimed.unit, options).await {
        warn!(
            "ANALYZE {} after its copy: {e}; the analyze phase does it",
            claimed.unit.relation()
        );
    }
    shared.progress.unit_finished(n, &claimed.unit, &outcome);
    Ok(Step::Copied)
}

/// Whether units are still pending but held by other workers (in this process or not).
async fn others_busy(tgt: &Target) -> Result<bool> {
    Ok(state::counts(tgt).await?.pending > 0)
}

async fn worker(shared: Arc<Shared>, n: usize) {
    let config = &shared.config;
    let mut conns: Option<(Source, Target, CopyOptions)> = None;
    let mut connect_attempts = 0u32;
    while !shared.halted() {
        if conns.is_none() {
            match connect(config, n).await {
                Ok(c) => {
                    connect_attempts = 0;
                    conns = Some(c);
                }
                Err(e) if e.is_retryable() && connect_attempts < config.retries => {
                    connect_attempts += 1;
                    warn!("stream {n}: {e}; connecting again (attempt {connect_attempts})");
                    tokio::time::sleep(backoff(connect_attempts)).await;
                    continue;
                }
                Err(e) => return shared.fail(e),
            }
        }
        let streams = conns.as_ref().expect("connected above");
        match one_unit(streams, &shared, n).await {
            Ok(Step::Copied) => {}
            Ok(Step::NothingFree) => match others_busy(&streams.1).await {
                Ok(true) => tokio::time::sleep(Duration::from_millis(500)).await,
                Ok(false) => return,
                Err(e) => return shared.fail(e),
            },
            Err(Failed { unit, error }) => {
                // The connections may be mid-COPY: drop them, which rolls back.
                conns = None;
                let Some((id, relation, attempts, unit)) = unit else {
                    if error.is_retryable() && connect_attempts < config.retries {
                        connect_attempts += 1;
                        tokio::time::sleep(backoff(connect_attempts)).await;
                        continue;
                    }
                    return shared.fail(error);
                };
                let attempts = attempts as u32 + 1;
                let give_up = !error.is_retryable() || attempts > config.retries;
                shared.progress.unit_failed(n, &unit, !give_up);
                match Target::connect(&config.target, "pool").await {
                    Ok(t) => {
                        if let Err(e) =
                            state::record_failure(&t, id, error.message(), give_up).await
                        {
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
                    return shared.fail(error);
                }
                let pause = backoff(attempts);
                warn!(
                    "{relation}: {error}; trying again in {:.1}s (attempt {} of {})",
                    pause.as_secs_f64(),
                    attempts + 1,
                    config.retries + 1
                );
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Runs `config.jobs` workers until no unit is left, one fails for good, or `drain` is set.
pub async fn run(
    config: PoolConfig,
    progress: Arc<Progress>,
    drain: Arc<AtomicBool>,
) -> Result<PoolEnd> {
    let jobs = config.jobs.max(1);
    let shared = Arc::new(Shared {
        config,
        progress,
        drain,
        stop: AtomicBool::new(false),
        failure: Mutex::new(None),
    });
    let mut set = JoinSet::new();
    for n in 0..jobs {
        set.spawn(worker(shared.clone(), n));
    }
    while let Some(joined) = set.join_next().await {
        if let Err(e) = joined {
            shared.fail(Error::new(
                ErrorKind::Internal,
                format!("a copy worker died: {e}"),
            ));
        }
    }
    if let Some(e) = shared
        .failure
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        return Err(e);
    }
    if shared.drain.load(Ordering::SeqCst) {
        info!("copy pool stopped: units in flight finished");
        return Ok(PoolEnd::Drained);
    }
    Ok(PoolEnd::Finished)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered_within_half() {
        for attempt in 0..12 {
            let base = Duration::from_millis(500)
                .saturating_mul(1 << attempt.min(6))
                .min(Duration::from_secs(30));
            let d = backoff(attempt);
            assert!(
                d >= base && d <= base + base / 2,
                "attempt {attempt}: {d:?}"
            );
        }
        assert!(backoff(1) < backoff(5));
        assert!(backoff(20) <= Duration::from_secs(45));
    }
}
