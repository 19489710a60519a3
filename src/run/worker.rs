//! `tsxfer worker`: one more process copying units of a run another one coordinates.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::load::plan_progress;
use super::migrate::{MigrateOptions, snapshot_alive};
use super::{connect_both, pool, preflight, refusal};
use crate::error::{Error, ErrorKind, Result};
use crate::observe::progress::Progress;
use crate::pg::Source;
use crate::pg::retry::Retry;
use crate::plan::human_bytes;
use crate::plan::unit_book::UnitBook;
use crate::run::pool::{DataFrom, PoolConfig, PoolEnd};
use crate::source::{catalog, extract};
use crate::target::state::{self, Milestone};

/// A name for this process in the run state: host and pid.
pub(super) fn worker_name(role: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{role} {host}:{}", std::process::id())
}

/// `tsxfer worker`: joins the run recorded in the target and copies units with it until
/// none is left. Returns a one-line summary.
pub async fn run_worker(
    opts: &MigrateOptions,
    progress: Arc<Progress>,
    drain: Arc<AtomicBool>,
) -> Result<String> {
    let (src, tgt) = connect_both(
        opts,
        "worker",
        &Retry::new(opts.load.retries, drain.clone()),
    )
    .await?;
    preflight::check_not_source(&src, &tgt)
        .await
        .map_err(refusal)?;
    let waited = Instant::now();
    let run = loop {
        match state::load(&tgt).await? {
            None => {
                return Err(Error::new(
                    ErrorKind::Preflight,
                    "the target has no tsxfer run to join; start one with `tsxfer --source ... --target ...`",
                ));
            }
            Some(r) if r.milestone >= Milestone::Data => {
                return Ok("the run has no unit left to copy".into());
            }
            Some(r) if r.milestone == Milestone::Schema => break r,
            Some(_) if waited.elapsed() > Duration::from_secs(600) => {
                return Err(Error::new(
                    ErrorKind::Preflight,
                    "the run has been restoring its schema for 10 minutes; start the worker again once it copies data",
                ));
            }
            Some(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    };
    if run.source_id != catalog::source_identity(&src).await? {
        return Err(Error::new(
            ErrorKind::Preflight,
            format!(
                "the run in the target copies from another source ({})",
                run.source
            ),
        ));
    }
    if !snapshot_alive(&opts.source, &run.snapshot).await? {
        return Err(Error::new(
            ErrorKind::Preflight,
            "the run's snapshot is gone: its coordinator has stopped; run the coordinator's command again to resume",
        ));
    }
    // The run's units, rebuilt from the source's catalog as of the run's snapshot.
    let facts = catalog::source_facts(&src).await?;
    src.begin_snapshot(Some(&run.snapshot)).await?;
    let reader = Source::connect(&opts.source, "catalog").await?;
    let known = extract::catalog_units(&src, &reader, &facts).await?;
    src.end().await?;
    let book = Arc::new(
        UnitBook::rebuild(&state::recorded_units(&tgt).await?, &known)
            .map_err(|e| state::corrupt(&e))?,
    );
    progress.phase("data");
    plan_progress(&progress, &tgt, &book).await?;
    let me = worker_name("worker");
    let config = PoolConfig {
        from: DataFrom::Source {
            conninfo: opts.source.clone(),
            snapshot: run.snapshot,
        },
        target: opts.load.target.clone(),
        jobs: opts.load.jobs,
        buffer_size: opts.load.buffer_size,
        retries: opts.load.retries,
        worker: me.clone(),
        units: book,
        // The coordinator's --verify is not known here: hash, so that a checksum run
        // finds every unit's checksum whoever copied it.
        checksum: true,
    };
    let end = pool::run(config, progress, drain).await?;
    let (units, rows, bytes) = state::done_by(&tgt, &me).await?;
    Ok(format!(
        "worker {me}: copied {units} unit(s), {rows} rows, {}{}",
        human_bytes(bytes),
        if end == PoolEnd::Drained {
            " (stopped on request)"
        } else {
            ""
        }
    ))
}
