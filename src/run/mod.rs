//! The whole migration, phase by phase: preflight, roles, pre-data schema, TimescaleDB
//! catalog, data, post-data, owners and grants, verify. Whatever happens after
//! `timescaledb_pre_restore()`, `timescaledb_post_restore()` runs before tsxfer exits.
//!
//! A live migration reads the source ([`crate::source::extract`]) and loads the target at once;
//! `tsxfer restore` loads what `tsxfer dump` read earlier. Both load through [`load`].

pub mod dump;
pub mod pool;
pub mod preflight;
pub mod verify;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tracing::info;

use crate::error::{Error, ErrorKind, Result};
use crate::observe::progress::Progress;
use crate::observe::report::{PhaseTime, Report};
use crate::pg::conninfo::ConnInfo;
use crate::pg::retry::Retry;
use crate::pg::{Source, Target};
use crate::quote::ident;
use crate::run::verify::VerifyMode;
use crate::target::state;
use crate::target::state::Milestone;

mod analyze;
mod load;
mod migrate;
pub use migrate::MigrateOptions;
mod restore;
mod schema;
pub use restore::RestoreOptions;
mod status;
pub use status::{clean, describe_plan, status};
mod worker;
use migrate::migrate;
use restore::restore;
pub use worker::run_worker;

/// What every run that loads a target is asked, a migration and a restore alike.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub target: ConnInfo,
    pub jobs: usize,
    pub buffer_size: usize,
    /// Where the schema archives and restore lists are kept while the run lasts.
    pub work_dir: Option<PathBuf>,
    pub pg_bin_dir: Option<PathBuf>,
    /// How many times a unit is tried again after a transient failure.
    pub retries: u32,
    /// Remove what an earlier run left in the target and start over.
    pub restart: bool,
    /// Keep the run state in the target after a verified run.
    pub keep_state: bool,
    /// What the verify phase checks.
    pub verify: VerifyMode,
}

/// A run that loads a target: a live migration, or the restore of a dump.
#[derive(Debug, Clone, Copy)]
pub enum Job<'a> {
    Migrate(&'a MigrateOptions),
    Restore(&'a RestoreOptions),
}

impl Job<'_> {
    pub fn load(&self) -> &LoadOptions {
        match self {
            Job::Migrate(o) => &o.load,
            Job::Restore(o) => &o.load,
        }
    }
}

/// What must be undone whatever happens, kept outside the migration future so it survives
/// an interruption.
#[derive(Default)]
struct Cleanup {
    /// TimescaleDB's schema on the target, while the target is in restoring mode.
    restoring: Option<String>,
    /// Whether the target has been written to (a failure is then no longer a refusal).
    written: bool,
    /// The last milestone the target's run state records (none before it has one): what
    /// a rerun may do, and so what a stopped run tells the operator to run.
    reached: Option<Milestone>,
}

/// What to run to go on after a stop, from the last milestone the run state records and
/// whether the data comes from the live source (whose snapshot ends with this process).
fn resume_hint(reached: Option<Milestone>, from_source: bool) -> &'static str {
    match reached {
        None => "nothing was written; run the same command again",
        Some(Milestone::Started) => {
            "the pre-data schema was half restored, which cannot be taken up: run the same command with --restart to start over"
        }
        Some(Milestone::Schema) if from_source => {
            "run the same command again with --allow-inconsistent to resume"
        }
        Some(_) => "run the same command again to resume",
    }
}

/// What a run keeps as it goes, handed from phase to phase: its report, what must be
/// undone whatever happens, the phases' times, and the flag that asks it to stop.
struct Ledger<'a> {
    report: &'a mut Report,
    cleanup: &'a mut Cleanup,
    phases: &'a mut Phases,
    drain: &'a Arc<AtomicBool>,
}

impl Ledger<'_> {
    /// The same ledger, lent to a callee for a while.
    fn again(&mut self) -> Ledger<'_> {
        Ledger {
            report: &mut *self.report,
            cleanup: &mut *self.cleanup,
            phases: &mut *self.phases,
            drain: self.drain,
        }
    }
}

struct Phases {
    started: Instant,
    current: Option<(String, Instant)>,
    done: Vec<PhaseTime>,
    progress: Arc<Progress>,
}

impl Phases {
    fn enter(&mut self, name: &str) {
        self.finish();
        self.progress.phase(name);
        self.current = Some((name.to_string(), Instant::now()));
    }

    fn finish(&mut self) {
        if let Some((name, t)) = self.current.take() {
            self.done.push(PhaseTime {
                phase: name,
                seconds: t.elapsed().as_secs_f64(),
            });
        }
    }
}

/// Runs the migration or restore until it ends, then cleans up. Setting `drain` stops it
/// at the next unit or phase boundary (units in flight finish); `abort` completing stops
/// it at once (units in flight roll back). The report is returned in every case.
pub async fn run(
    job: Job<'_>,
    progress: Arc<Progress>,
    drain: Arc<AtomicBool>,
    abort: impl Future<Output = ()>,
) -> (Report, Result<()>) {
    let mut report = Report {
        source: match job {
            Job::Migrate(o) => o.source.describe(),
            Job::Restore(o) => format!("the dump in {}", o.dir.display()),
        },
        target: job.load().target.describe(),
        jobs: job.load().jobs,
        verified_by: job.load().verify.checks().map(str::to_string),
        ..Report::default()
    };
    let mut cleanup = Cleanup::default();
    let mut phases = Phases {
        started: Instant::now(),
        current: None,
        done: Vec::new(),
        progress,
    };
    let work = async {
        let ledger = Ledger {
            report: &mut report,
            cleanup: &mut cleanup,
            phases: &mut phases,
            drain: &drain,
        };
        match job {
            Job::Migrate(o) => migrate(o, ledger).await,
            Job::Restore(o) => restore(o, ledger).await,
        }
    };
    let aborted = tokio::select! {
        r = work => Some(r),
        () = abort => None,
    };
    let result = aborted.unwrap_or_else(|| {
        let copying = match cleanup.reached {
            Some(Milestone::Schema) => ": units in flight were rolled back",
            _ => "",
        };
        let hint = resume_hint(cleanup.reached, matches!(job, Job::Migrate(_)));
        Err(Error::new(
            ErrorKind::Interrupted,
            format!("aborted{copying}; {hint}"),
        ))
    });
    // Exit code 3 says nothing was changed: once the target was written to, a refusal
    // met later (a reconnect refused, say) is a connection failure.
    let result = match result {
        Err(e) if cleanup.written && e.kind() == ErrorKind::Preflight => {
            Err(e.with_kind(ErrorKind::Connection))
        }
        r => r,
    };
    let failed_in = phases.current.as_ref().map(|(name, _)| name.clone());
    let result = match (result, failed_in) {
        (Err(e), Some(phase)) if e.kind() != ErrorKind::Interrupted => {
            Err(e.context(format!("{phase} phase")))
        }
        (r, _) => r,
    };
    phases.finish();
    let mut result = result;
    if let Some(schema) = cleanup.restoring.take() {
        match leave_restoring_mode(&job.load().target, &schema, job.load().retries).await {
            Ok(()) => info!("the target left TimescaleDB's restoring mode"),
            Err((e, statement)) => {
                report.warnings.push(format!("{e} {statement}"));
                // What to run by hand is the last line tsxfer prints.
                let first = match result {
                    Err(failed) => failed,
                    Ok(()) => e,
                };
                let message = format!("{first}\n{statement}");
                result = Err(first.reworded(message));
            }
        }
    }
    report.phases = phases.done;
    report.seconds = phases.started.elapsed().as_secs_f64();
    report.data_analyze_seconds = phases.progress.analyze_seconds();
    report.success = result.is_ok();
    report.error = result.as_ref().err().map(|e| e.to_string());
    (report, result)
}

/// Calls `timescaledb_post_restore()` on a fresh connection, retried while the target is
/// away (even after a Ctrl-C: the target must not stay in restoring mode); on failure,
/// the error and the exact command to run by hand.
async fn leave_restoring_mode(
    target: &ConnInfo,
    schema: &str,
    retries: u32,
) -> Result<(), (Error, String)> {
    let sql = format!("SELECT {}.timescaledb_post_restore()", ident(schema));
    let retry = Retry::new(retries, Arc::new(AtomicBool::new(false)));
    let outcome = retry
        .run("leaving TimescaleDB's restoring mode", || async {
            let tgt = Target::connect(target, "post-restore").await?;
            state::restoring_mode(&tgt, schema, "timescaledb_post_restore").await
        })
        .await;
    outcome.map_err(|e| {
        (
            Error::new(
                ErrorKind::Schema,
                format!("the target may still be in TimescaleDB's restoring mode ({e}); run:"),
            ),
            format!("psql \"{}\" -c '{sql};'", target.redacted()),
        )
    })
}

/// Before anything is changed, a failure is a refusal (or bad usage, when it is).
fn refusal(e: Error) -> Error {
    match e.kind() {
        ErrorKind::Usage | ErrorKind::Interrupted => e,
        _ => e.with_kind(ErrorKind::Preflight),
    }
}

/// Connects to both sides before anything is changed, waiting out a server that is
/// starting up, unreachable or out of connection slots for a while.
async fn connect_both(
    opts: &MigrateOptions,
    role: &str,
    retry: &Retry,
) -> Result<(Source, Target)> {
    let src = retry.source(&opts.source, role).await.map_err(refusal)?;
    let tgt = retry
        .target(&opts.load.target, role)
        .await
        .map_err(refusal)?;
    Ok((src, tgt))
}

/// Stops at a phase boundary when the operator asked to stop, saying what to run next
/// (`resume_hint`).
fn check_drain(drain: &AtomicBool, hint: &str) -> Result<()> {
    if drain.load(Ordering::SeqCst) {
        return Err(Error::new(
            ErrorKind::Interrupted,
            format!("stopped on request; {hint}"),
        ));
    }
    Ok(())
}
