//! The whole migration, phase by phase: preflight, roles, pre-data schema, TimescaleDB
//! catalog, data, post-data, owners and grants, verify. Whatever happens after
//! `timescaledb_pre_restore()`, `timescaledb_post_restore()` runs before tsxfer exits.
//!
//! A live migration reads the source ([`crate::extract`]) and loads the target at once;
//! `tsxfer restore` loads what `tsxfer dump` read earlier. Both load through [`load`].

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::task::JoinSet;
use tokio_postgres::error::SqlState;
use tracing::info;

use crate::budget;
use crate::catalog;
use crate::catalog_rows;
use crate::conninfo::ConnInfo;
use crate::convert;
use crate::error::{Error, ErrorKind, Result};
use crate::extract::{self, Asked, Extract};
use crate::filter::{self, Filters};
use crate::offline;
use crate::pg::{Source, Target};
use crate::plan::{self, CopyUnit, UnitKind, human_bytes};
use crate::pool::{self, DataFrom, PoolConfig, PoolEnd};
use crate::preflight::{self, PreflightReport};
use crate::privileges;
use crate::progress::Progress;
use crate::quote::ident;
use crate::report::{PhaseTime, Report, UnitReport};
use crate::reset;
use crate::retry::Retry;
use crate::roles;
use crate::schema::{self, Archives};
use crate::state::{self, Milestone, RunState};
use crate::unit_book::UnitBook;
use crate::verify::{self, VerifyMode};

/// Everything a migration needs to know, validated.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    pub source: ConnInfo,
    pub target: ConnInfo,
    pub jobs: usize,
    pub buffer_size: usize,
    pub work_dir: Option<PathBuf>,
    pub pg_bin_dir: Option<PathBuf>,
    /// How many times a unit is tried again after a transient failure.
    pub retries: u32,
    /// Remove what an earlier run left in the target and start over.
    pub restart: bool,
    /// Resume even though the earlier run's snapshot is gone.
    pub allow_inconsistent: bool,
    /// Keep the run state in the target after a verified run.
    pub keep_state: bool,
    /// Plain tables to make hypertables on the target.
    pub hypertables: Vec<convert::HypertableSpec>,
    /// pg_dump-style schema and table filters.
    pub filters: Filters,
    /// Plain tables bigger than this (and than their share of the data) are copied in
    /// parts of about this size (0: never).
    pub split_bytes: i64,
    /// What the verify phase checks.
    pub verify: VerifyMode,
}

impl MigrateOptions {
    /// What the run is asked to copy ([`filter::selection`]).
    fn selection(&self) -> String {
        filter::selection(&self.filters, &self.hypertables, self.split_bytes)
    }
}

/// What `tsxfer restore` needs to know, validated.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The directory `tsxfer dump` wrote.
    pub dir: PathBuf,
    pub target: ConnInfo,
    pub jobs: usize,
    pub buffer_size: usize,
    pub work_dir: Option<PathBuf>,
    pub pg_bin_dir: Option<PathBuf>,
    pub retries: u32,
    pub restart: bool,
    pub keep_state: bool,
    pub verify: VerifyMode,
}

/// A run that loads a target: a live migration, or the restore of a dump.
#[derive(Debug, Clone, Copy)]
pub enum Job<'a> {
    Migrate(&'a MigrateOptions),
    Restore(&'a RestoreOptions),
}

impl Job<'_> {
    fn target(&self) -> &ConnInfo {
        match self {
            Job::Migrate(o) => &o.target,
            Job::Restore(o) => &o.target,
        }
    }

    fn jobs(&self) -> usize {
        match self {
            Job::Migrate(o) => o.jobs,
            Job::Restore(o) => o.jobs,
        }
    }

    fn retries(&self) -> u32 {
        match self {
            Job::Migrate(o) => o.retries,
            Job::Restore(o) => o.retries,
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
        target: job.target().describe(),
        jobs: job.jobs(),
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
        match job {
            Job::Migrate(o) => migrate(o, &mut report, &mut cleanup, &mut phases, &drain).await,
            Job::Restore(o) => restore(o, &mut report, &mut cleanup, &mut phases, &drain).await,
        }
    };
    let result = tokio::select! {
        r = work => r,
        () = abort => Err(Error::new(
            ErrorKind::Interrupted,
            match job {
                Job::Migrate(_) => "aborted: units in flight were rolled back; run the same command again with --allow-inconsistent to resume",
                Job::Restore(_) => "aborted: units in flight were rolled back; run the same command again to resume",
            },
        )),
    };
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
        match leave_restoring_mode(job.target(), &schema, job.retries()).await {
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
    let tgt = retry.target(&opts.target, role).await.map_err(refusal)?;
    Ok((src, tgt))
}

/// Stops at a phase boundary when the operator asked to stop.
fn check_drain(drain: &AtomicBool) -> Result<()> {
    if drain.load(Ordering::SeqCst) {
        return Err(Error::new(
            ErrorKind::Interrupted,
            "stopped on request; run the same command again (with --allow-inconsistent) to resume",
        ));
    }
    Ok(())
}

/// Whether a snapshot can still be imported (its exporting transaction is open).
async fn snapshot_alive(source: &ConnInfo, snapshot: &str) -> Result<bool> {
    let probe = Source::connect(source, "snapshot probe").await?;
    Ok(probe.begin_snapshot(Some(snapshot)).await.is_ok())
}

/// The run an earlier attempt left in the target, if any (none after `--restart`, which
/// removes it with everything it made). `--restart` drops nothing unless the recorded run
/// came from this command's source (`source_id`): a target that holds another source's
/// run is not this migration's to empty.
async fn earlier_run(
    tgt: &Target,
    restart: bool,
    source_id: &str,
    report: &mut Report,
) -> Result<Option<RunState>> {
    let prior = state::load(tgt).await.map_err(refusal)?;
    if let Some(p) = prior
        .as_ref()
        .filter(|p| restart && p.source_id != source_id)
    {
        return Err(Error::new(
            ErrorKind::Preflight,
            format!(
                "--restart refused: the run recorded in the target copies from another source ({}), so nothing was dropped; start over from that source, or empty the target yourself",
                p.source
            ),
        ));
    }
    if prior.is_some() && restart {
        let warnings = reset::empty_target(tgt).await?;
        report.warnings.extend(warnings);
        info!("--restart: the previous run's objects and state were removed from the target");
        return Ok(None);
    }
    Ok(prior)
}

/// Whether the run in the target can be resumed with what `source_id` names.
fn check_resumable(prior: &RunState, source_id: &str) -> Result<()> {
    if prior.source_id != source_id {
        return Err(Error::new(
            ErrorKind::Preflight,
            format!(
                "the target holds a run from another source ({}); finish it from there, or start over with --restart",
                prior.source
            ),
        ));
    }
    if prior.milestone == Milestone::Started {
        return Err(Error::new(
            ErrorKind::Preflight,
            "the previous run stopped while it was restoring the schema; start over with --restart",
        ));
    }
    Ok(())
}

/// A private working directory for schema archives and restore lists.
fn work_dir(dir: Option<&std::path::Path>) -> Result<tempfile::TempDir> {
    match dir {
        Some(d) => tempfile::Builder::new().prefix("tsxfer-").tempdir_in(d),
        None => tempfile::Builder::new().prefix("tsxfer-").tempdir(),
    }
    .map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("cannot make a working directory: {e}"),
        )
    })
}

async fn migrate(
    opts: &MigrateOptions,
    report: &mut Report,
    cleanup: &mut Cleanup,
    phases: &mut Phases,
    drain: &Arc<AtomicBool>,
) -> Result<()> {
    phases.enter("preflight");
    // Nothing has been changed yet: any failure here is a refusal.
    let retry = Retry::new(opts.retries, drain.clone());
    let (src, tgt) = connect_both(opts, "coordinator", &retry).await?;
    preflight::check_not_source(&src, &tgt)
        .await
        .map_err(refusal)?;
    let source_id = catalog::source_identity(&src).await.map_err(refusal)?;
    let prior = earlier_run(&tgt, opts.restart, &source_id, report).await?;
    let pre = preflight::check(&src, &tgt, &opts.target, prior.is_some())
        .await
        .map_err(refusal)?;
    report.warnings.extend(pre.warnings.iter().cloned());
    let selection = opts.selection();
    if let Some(p) = &prior {
        check_resumable(p, &source_id)?;
        let recorded = p.options.get("selection").and_then(|v| v.as_str());
        if let Some(recorded) = recorded.filter(|r| *r != selection) {
            return Err(filter::other_selection(
                "the run in the target",
                recorded,
                &selection,
            ));
        }
    }
    let conversions = convert::validate(&src, &opts.hypertables)
        .await
        .map_err(refusal)?;
    filter::check_exclusions(&src, &opts.filters).await?;
    convert::check_source_kind(&conversions, &pre.source)?;
    convert::check_target_kind(&conversions, &pre.target)?;
    let tools = schema::find_tools(opts.pg_bin_dir.as_deref(), pre.source.major())?;
    let (jobs, capped) = budget::streams(
        opts.jobs,
        Some(&budget::source_room(&src).await?),
        &budget::target_room(&tgt).await?,
    )?;
    if let Some(w) = capped {
        tracing::warn!("{w}");
        report.warnings.push(w);
    }
    report.jobs = jobs;

    // One snapshot for everything: pg_dump and every COPY stream import it while this
    // transaction holds it open.
    src.begin_snapshot(None).await?;
    let snapshot: String = src
        .query_one("SELECT pg_catalog.pg_export_snapshot()", &[])
        .await?
        .get(0);
    report.snapshot = Some(snapshot.clone());
    info!(
        "source {} (PostgreSQL {}), snapshot {snapshot}",
        opts.source.describe(),
        pre.source.version
    );
    let reader = retry.source(&opts.source, "catalog").await?;
    if let Some(p) = &prior {
        if snapshot_alive(&opts.source, &p.snapshot).await? {
            return Err(Error::new(
                ErrorKind::Preflight,
                "a run on this target is still going (its snapshot is alive); help it with `tsxfer worker`, or stop it first",
            ));
        }
        let counts = state::counts(&tgt).await?;
        if !opts.allow_inconsistent && p.milestone < Milestone::Data {
            return Err(Error::new(
                ErrorKind::Preflight,
                format!(
                    "the previous run's snapshot is gone with its process, so a resumed copy would no longer come from one consistent snapshot of the source ({} of {} units were copied from the old one); run again with --allow-inconsistent to go on, or with --restart to start over",
                    counts.done,
                    counts.done + counts.pending + counts.failed
                ),
            ));
        }
        if p.milestone < Milestone::Data {
            report.warnings.push(format!(
                "resumed a run started {}: {} unit(s) were copied from its snapshot, the rest from a new one, so the copy is not from one consistent snapshot of the source",
                p.started_at, counts.done
            ));
        }
        state::set_snapshot(&tgt, &snapshot).await?;
        info!(
            "resuming the run started {} (reached: {})",
            p.started_at,
            p.milestone.name()
        );
    }

    phases.enter("schema dump");
    let work = work_dir(opts.work_dir.as_deref())?;
    let archives = Archives {
        tools,
        dir: work.path().to_path_buf(),
        work: work.path().to_path_buf(),
        restore_pgoptions: schema::target_restore_pgoptions(&tgt, jobs).await?,
    };
    let ex = extract::extract(
        &src,
        &reader,
        &opts.source,
        &pre.source,
        source_id,
        &snapshot,
        &archives,
        Asked {
            filters: &opts.filters,
            conversions,
            split: plan::Split {
                part_bytes: opts.split_bytes,
                streams: opts.jobs,
            },
        },
    )
    .await?;
    let load_opts = Load {
        target: &opts.target,
        jobs,
        buffer_size: opts.buffer_size,
        retries: opts.retries,
        keep_state: opts.keep_state,
        ex: &ex,
        archives: &archives,
        pre: &pre,
        resumed: prior.map(|p| p.milestone),
        selection: Some(selection),
        from: DataFrom::Source {
            conninfo: opts.source.clone(),
            snapshot,
        },
        verify: opts.verify,
    };
    load(load_opts, tgt, Some(&src), report, cleanup, phases, drain).await
}

async fn restore(
    opts: &RestoreOptions,
    report: &mut Report,
    cleanup: &mut Cleanup,
    phases: &mut Phases,
    drain: &Arc<AtomicBool>,
) -> Result<()> {
    phases.enter("preflight");
    let (mut manifest, reader) = offline::open_for_restore(&opts.dir, opts.jobs)?;
    let retry = Retry::new(opts.retries, drain.clone());
    let tgt = retry
        .target(&opts.target, "coordinator")
        .await
        .map_err(refusal)?;
    target_conditions(&tgt, &mut manifest.extract.units)
        .await
        .map_err(refusal)?;
    let ex = &manifest.extract;
    report.source = format!("{} (the dump in {})", ex.source, opts.dir.display());
    report.snapshot = Some(ex.snapshot.clone());
    if manifest.snapshots.len() > 1 {
        report.warnings.push(format!(
            "the dump was resumed: its units were read in {} snapshots of the source, not one",
            manifest.snapshots.len()
        ));
    }
    preflight::check_not_dump_source(&tgt, &ex.source_id)
        .await
        .map_err(refusal)?;
    let prior = earlier_run(&tgt, opts.restart, &ex.source_id, report).await?;
    let pre = preflight::check_target(ex.facts.clone(), &tgt, &opts.target, prior.is_some())
        .await
        .map_err(refusal)?;
    report.warnings.extend(pre.warnings.iter().cloned());
    if let Some(p) = &prior {
        check_resumable(p, &ex.source_id)?;
        if p.snapshot != ex.snapshot {
            return Err(Error::new(
                ErrorKind::Preflight,
                format!(
                    "the target holds a run of another dump or migration of this source (started {}); finish that one, or start over with --restart",
                    p.started_at
                ),
            ));
        }
        info!(
            "resuming the restore started {} (reached: {})",
            p.started_at,
            p.milestone.name()
        );
    }
    convert::check_target_kind(&ex.conversions, &pre.target)?;
    let tools = schema::find_tools(opts.pg_bin_dir.as_deref(), ex.facts.major())?;
    let (jobs, capped) = budget::streams(opts.jobs, None, &budget::target_room(&tgt).await?)?;
    if let Some(w) = capped {
        tracing::warn!("{w}");
        report.warnings.push(w);
    }
    report.jobs = jobs;
    let work = work_dir(opts.work_dir.as_deref())?;
    let archives = Archives {
        tools,
        dir: offline::schema_dir(&opts.dir),
        work: work.path().to_path_buf(),
        restore_pgoptions: schema::target_restore_pgoptions(&tgt, jobs).await?,
    };
    let load_opts = Load {
        target: &opts.target,
        jobs,
        buffer_size: opts.buffer_size,
        retries: opts.retries,
        keep_state: opts.keep_state,
        ex,
        archives: &archives,
        pre: &pre,
        resumed: prior.map(|p| p.milestone),
        selection: None,
        from: DataFrom::Dump(Arc::new(reader)),
        verify: opts.verify,
    };
    load(load_opts, tgt, None, report, cleanup, phases, drain).await
}

/// Gives the units of other extensions' configuration tables the condition the target's
/// own extension sets (which picks the rows users added), rather than the text a dump's
/// manifest carries: it becomes SQL in verification.
async fn target_conditions(tgt: &Target, units: &mut [CopyUnit]) -> Result<()> {
    let conditions: BTreeMap<(String, String), String> = tgt
        .query(include_str!("sql/source_extension_config.sql"), &[])
        .await?
        .iter()
        .map(|r| {
            (
                (r.get("schema_name"), r.get("table_name")),
                r.get("condition"),
            )
        })
        .collect();
    for u in units
        .iter_mut()
        .filter(|u| u.kind == UnitKind::ExtensionConfig)
    {
        u.filter = conditions
            .get(&(u.schema.clone(), u.name.clone()))
            .filter(|c| !c.trim().is_empty())
            .cloned();
    }
    Ok(())
}

/// The target half of a run, whatever the data comes from.
struct Load<'a> {
    target: &'a ConnInfo,
    jobs: usize,
    buffer_size: usize,
    retries: u32,
    keep_state: bool,
    ex: &'a Extract,
    archives: &'a Archives,
    pre: &'a PreflightReport,
    /// How far an earlier run got; `None` for a new run.
    resumed: Option<Milestone>,
    /// A migration's choices of what to copy ([`MigrateOptions::selection`]), recorded
    /// with the run; none for a restore (its dump's manifest holds them).
    selection: Option<String>,
    from: DataFrom,
    verify: VerifyMode,
}

/// Roles, schema, TimescaleDB catalog, data, post-data, owners and grants, ANALYZE and
/// verify. `src`, when the data comes from a live source, holds the snapshot until the
/// data is copied.
///
/// When a phase fails in a way worth retrying (the target restarted, say) once the schema
/// is in place, the run resumes itself: a new coordinator connection, then the phases
/// again from the milestone the run state records, as a rerun of the command would.
async fn load(
    l: Load<'_>,
    mut tgt: Target,
    src: Option<&Source>,
    report: &mut Report,
    cleanup: &mut Cleanup,
    phases: &mut Phases,
    drain: &Arc<AtomicBool>,
) -> Result<()> {
    let ex = l.ex;
    report.rewrites.extend(ex.rewrites.iter().cloned());
    // Stopped before anything was written: a rerun starts afresh.
    check_drain(drain)?;
    // The recorded units, rebuilt from what was read from the source (or the dump) now:
    // the state names them, it does not define them. Read before anything is written, so
    // a damaged state is a refusal.
    let recorded = match l.resumed {
        Some(_) => Some(
            UnitBook::rebuild(&state::recorded_units(&tgt).await?, &ex.units)
                .map_err(|e| state::corrupt(&e))?,
        ),
        None => None,
    };
    cleanup.written = true;
    let book = Arc::new(match recorded {
        None => {
            let options = serde_json::json!({
                "jobs": l.jobs,
                "buffer_size": l.buffer_size,
                "retries": l.retries,
                "selection": l.selection,
            });
            state::create(
                &tgt,
                &ex.source,
                &ex.source_id,
                &ex.snapshot,
                options,
                &ex.units,
            )
            .await?;
            UnitBook::numbered(&ex.units)
        }
        Some(book) => {
            let requeued = state::requeue_failed(&tgt).await?;
            if requeued > 0 {
                info!("{requeued} failed unit(s) queued again");
            }
            book
        }
    });
    let retry = Retry::new(l.retries, drain.clone());
    let mut milestone = l.resumed.unwrap_or(Milestone::Started);
    let mut resumed = l.resumed.is_some();
    let mut attempt = 0;
    loop {
        let (warnings, rewrites) = (report.warnings.len(), report.rewrites.len());
        let created = report.roles_created.clone();
        let e = match load_phases(
            &l, &tgt, src, &book, milestone, resumed, report, cleanup, phases, drain,
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        attempt += 1;
        if !e.is_retryable() || attempt > l.retries {
            return Err(failed_load(&l, &book, report, e).await);
        }
        let Some(phase) = phases.current.as_ref().map(|(name, _)| name.clone()) else {
            return Err(e);
        };
        let again = async {
            retry.wait(&format!("{phase} phase"), &e, attempt).await?;
            let t = retry.target(l.target, "coordinator").await?;
            let run = state::load(&t).await?;
            Ok::<_, Error>((t, run))
        };
        let (t, run) = match again.await {
            Ok(x) => x,
            Err(e) => return Err(failed_load(&l, &book, report, e).await),
        };
        tgt = t;
        milestone = match run {
            // Before the schema pass began (in the roles), nothing is half made either.
            Some(run) if run.milestone >= Milestone::Schema || phase == "roles" => run.milestone,
            _ => {
                let text = format!(
                    "{e}; it happened while the pre-data schema was restored, which cannot be taken up half way: start over with --restart"
                );
                return Err(e.reworded(text));
            }
        };
        resumed = true;
        // The phases run again: what they report is theirs to say again.
        report.warnings.truncate(warnings);
        report.rewrites.truncate(rewrites);
        for r in created {
            if !report.roles_created.contains(&r) {
                report.roles_created.push(r);
            }
        }
        info!("taking the run up again from {}", milestone.name());
    }
}

/// The error a load ends with, after the report got the units copied so far (read on a
/// new connection: the coordinator's may be what broke).
async fn failed_load(l: &Load<'_>, book: &UnitBook, report: &mut Report, e: Error) -> Error {
    if let Ok(t) = Target::connect(l.target, "report").await
        && let Ok(units) = unit_reports(&t, book).await
    {
        report.units = units;
    }
    e
}

/// The phases of [`load`] from `milestone` on; `resumed` when an earlier attempt (this
/// process's or another's) went through some of them already.
#[allow(clippy::too_many_arguments)]
async fn load_phases(
    l: &Load<'_>,
    tgt: &Target,
    src: Option<&Source>,
    book: &Arc<UnitBook>,
    milestone: Milestone,
    resumed: bool,
    report: &mut Report,
    cleanup: &mut Cleanup,
    phases: &mut Phases,
    drain: &Arc<AtomicBool>,
) -> Result<()> {
    let (ex, pre) = (l.ex, l.pre);
    let timescale = pre.timescaledb_schema.clone();

    phases.enter("roles");
    let target_roles = roles::target_roles(tgt).await?;
    let role_plan = roles::plan_roles(
        &ex.roles.roles,
        &ex.roles.memberships,
        &target_roles,
        &pre.target.login,
        &pre.target.dbname,
        ex.roles.passwords_read,
    );
    report
        .warnings
        .extend(roles::apply_roles(tgt, &role_plan).await?);
    report.warnings.extend(
        privileges::run_and_summarize(
            tgt,
            &roles::database_setting_statements(&ex.database_settings, &pre.target.dbname),
            "database setting",
            |_| true,
        )
        .await?,
    );
    report.roles_created = role_plan.creates.iter().map(|(r, _)| r.clone()).collect();
    report.roles_existing = role_plan.existing.clone();
    report.roles_needing_password = role_plan.need_password.clone();
    report.rewrites.extend(role_plan.rewrites.iter().cloned());
    let managed: BTreeSet<String> = role_plan.mapped_to_target_user.iter().cloned().collect();
    let privilege_plan = privileges::plan(&ex.privileges, &managed, &pre.target.login);
    report
        .rewrites
        .extend(privilege_plan.rewrites.iter().cloned());
    let (granted, warnings) =
        privileges::acquire_roles(tgt, &pre.target.login, &privilege_plan.acting_roles).await?;
    if !granted.is_empty() {
        // Kept after the run: objects of the source's superuser now belong to the login
        // role, and they reach other roles' objects only through these memberships.
        report.rewrites.push(format!(
            "{} was made a member of {} to give objects to them; objects of the source's superuser now belong to {} and keep their access through these memberships",
            ident(&pre.target.login),
            granted.iter().map(|r| ident(r)).collect::<Vec<_>>().join(", "),
            ident(&pre.target.login)
        ));
    }
    report.warnings.extend(warnings);
    // A stop asked for during the roles finishes the schema first: a run stopped inside
    // it could not be resumed.

    if let Some(schema) = &timescale {
        state::restoring_mode(tgt, schema, "timescaledb_pre_restore").await?;
        cleanup.restoring = Some(schema.clone());
        info!("the target is in TimescaleDB's restoring mode");
    }

    let main = ex.main_path(&l.archives.dir);
    let chunk_archives = ex.chunk_paths(&l.archives.dir);
    if milestone < Milestone::Schema {
        phases.enter("schema");
        let mut skip = BTreeSet::new();
        if !pre.target.superuser {
            for (tag, what) in &ex.superuser_user_mappings {
                skip.insert(schema::user_mapping_entry(tag));
                report.rewrites.push(format!(
                    "{what} not restored (only a superuser may make it); create it there as one"
                ));
            }
        }
        let dropped = restore_section(
            l,
            tgt,
            &main,
            &chunk_archives,
            Section::PreData,
            false,
            &BTreeSet::new(),
            &skip,
            drain,
        )
        .await?;
        report.rewrites.extend(dropped);
        if let Some(ts) = pre.target.extension("timescaledb") {
            for c in &ex.conversions {
                tgt.execute(&c.create_sql(&ts.schema))
                    .await
                    .map_err(|e| e.context(format!("making {} a hypertable", c.relation())))?;
                report.rewrites.push(format!(
                    "{} became a hypertable on the target, partitioned by {}{}",
                    c.relation(),
                    ident(&c.spec.column),
                    c.spec
                        .interval
                        .as_ref()
                        .map(|i| format!(" in chunks of {i}"))
                        .unwrap_or_default()
                ));
            }
        }
        if let Some(ts) = &timescale {
            let owners = catalog_rows::CatalogOwners {
                managed: &role_plan.mapped_to_target_user,
                login: &pre.target.login,
            };
            let (rows, jobs) = catalog_rows::write(tgt, ts, &ex.catalog, &owners).await?;
            info!("TimescaleDB catalog loaded ({rows} rows)");
            if jobs > 0 {
                report.rewrites.push(format!(
                    "{jobs} job(s) of the source's superuser (or a managed-service role) now belong to {}, as its other objects",
                    ident(&pre.target.login)
                ));
            }
            if ex.filtered {
                report.warnings.extend(
                    catalog_rows::missing_functions(tgt, &catalog_rows::loaded_jobs(&ex.catalog))
                        .await?,
                );
            }
        }
        state::set_milestone(tgt, Milestone::Schema).await?;
    }
    check_drain(drain)?;

    if milestone < Milestone::Data {
        phases.enter("data");
        plan_progress(&phases.progress, tgt, book).await?;
        let config = PoolConfig {
            from: l.from.clone(),
            target: l.target.clone(),
            jobs: l.jobs,
            buffer_size: l.buffer_size,
            retries: l.retries,
            worker: worker_name("coordinator"),
            units: book.clone(),
            checksum: l.verify == VerifyMode::Checksum,
        };
        let end = pool::run(config, phases.progress.clone(), drain.clone()).await;
        report.units = unit_reports(tgt, book).await?;
        let resume_hint = match l.from {
            DataFrom::Source { .. } => "run the same command again with --allow-inconsistent",
            DataFrom::Dump(_) => "run the same command again",
        };
        if end? == PoolEnd::Drained {
            let counts = state::counts(tgt).await?;
            return Err(Error::new(
                ErrorKind::Interrupted,
                format!(
                    "stopped on request after the units in flight: {} of {} units copied; {resume_hint} to resume",
                    counts.done,
                    counts.done + counts.pending + counts.failed
                ),
            ));
        }
        let counts = state::counts(tgt).await?;
        if counts.failed > 0 || counts.pending > 0 {
            let failures = state::failures(tgt).await?;
            let first = failures
                .first()
                .map(|(rel, n, err)| format!("{rel} after {n} attempt(s): {err}"))
                .unwrap_or_default();
            return Err(Error::new(
                ErrorKind::Copy,
                format!(
                    "{} unit(s) failed, {} not copied (first: {first}); fix the cause and {resume_hint} to copy what is left",
                    counts.failed, counts.pending
                ),
            ));
        }
        if let Some(src) = src {
            src.end().await?;
        }
        set_sequences(tgt, &ex.sequences).await?;
        state::set_milestone(tgt, Milestone::Data).await?;
    }
    check_drain(drain)?;

    if milestone < Milestone::PostData {
        phases.enter("post-data");
        let own: Vec<&(u32, String)> = ex.conversions.iter().flat_map(|c| &c.constraints).collect();
        let mut skip: BTreeSet<u32> = own.iter().map(|(oid, _)| *oid).collect();
        skip.extend(&ex.skip_post_data);
        skip.extend(ex.hypertable_fks.iter().map(|k| k.oid));
        if !pre.target.superuser {
            for (oid, what) in &ex.superuser_publications {
                skip.insert(*oid);
                report.rewrites.push(format!(
                    "{what} not restored (only a superuser may make it); create it there as one"
                ));
            }
        }
        let dropped = restore_section(
            l,
            tgt,
            &main,
            &chunk_archives,
            Section::PostData,
            resumed,
            &skip,
            &BTreeSet::new(),
            drain,
        )
        .await?;
        report.rewrites.extend(dropped);
        for (_, sql) in own {
            match tgt.execute(sql).await {
                Err(e) if !(resumed && e.has_sqlstate(ALREADY_THERE)) => {
                    return Err(
                        e.context(format!("adding a constraint to a new hypertable: {sql}"))
                    );
                }
                _ => {}
            }
        }
        let present = target_relations(tgt, "m").await?;
        let refreshes: Vec<String> = ex
            .matviews
            .iter()
            .filter(|m| present.contains(*m))
            .map(|m| format!("REFRESH MATERIALIZED VIEW {m}"))
            .collect();
        report.warnings.extend(
            privileges::run_and_summarize(tgt, &refreshes, "materialized view refresh", |_| true)
                .await?,
        );
        state::set_milestone(tgt, Milestone::PostData).await?;
    }
    check_drain(drain)?;

    phases.enter("owners and grants");
    let privilege_plan = match l.from {
        DataFrom::Source { .. } => privilege_plan,
        DataFrom::Dump(_) => {
            // A dump's object names are text someone could have edited: the statements
            // name objects as the target names them.
            let (named, left_out) = privileges::resolved_on_target(&ex.privileges, tgt).await?;
            if left_out > 0 {
                report.warnings.push(format!(
                    "{left_out} owner or grant entries of the dump name objects the target does not have; left out"
                ));
            }
            privileges::plan(&named, &managed, &pre.target.login)
        }
    };
    let undo = privileges::lend_schema_create(tgt, &privilege_plan.schema_owners).await?;
    // Owners and grants are read for the whole source; those of objects the filters left
    // out have nothing to apply to.
    let worth_saying = |e: &Error| !(ex.filtered && privileges::names_a_missing_object(e));
    let mut refused = privileges::run_batches(tgt, &privilege_plan.owners).await?;
    refused.retain(|(_, e)| worth_saying(e));
    let mut refusals: Vec<String> = privileges::summarize("owner", &privilege_plan.owners, &refused)
        .into_iter()
        .map(|w| format!("{w}; those objects stay with {} and their intended owners get all privileges on them instead", ident(&pre.target.login)))
        .collect();
    let fallbacks: Vec<String> = refused
        .iter()
        .filter_map(|(i, _)| privilege_plan.owner_fallbacks[*i].clone())
        .collect();
    for (statements, what) in [
        (&fallbacks, "owner rights instead of ownership"),
        (&undo, "returning a lent schema privilege"),
        (&privilege_plan.grants, "grant"),
    ] {
        refusals.extend(privileges::run_and_summarize(tgt, statements, what, worth_saying).await?);
    }
    refusals.extend(privileges::apply_member_grants(tgt, &privilege_plan.member_grants).await?);
    report.warnings.extend(refusals);

    if let Some(schema) = &timescale {
        state::restoring_mode(tgt, schema, "timescaledb_post_restore").await?;
        cleanup.restoring = None;
        info!("the target left TimescaleDB's restoring mode");
    }
    add_hypertable_foreign_keys(tgt, &ex.hypertable_fks).await?;
    phases.enter("analyze");
    let on_timescaledb = pre.target.extension("timescaledb").is_some();
    report
        .warnings
        .extend(analyze(l.target, l.jobs, tgt, on_timescaledb).await?);

    phases.enter("verify");
    let mut done = UnitReport::by_table(state::done_units(tgt, book).await?);
    // Names as the target's catalog renders them (a dump's list is text from a file).
    let tables = target_relations(tgt, "r").await?;
    let forced: Vec<String> = ex
        .forced_row_security
        .iter()
        .filter(|t| tables.contains(*t))
        .cloned()
        .collect();
    report
        .warnings
        .extend(privileges::lift_forced_row_security(tgt, &forced).await?);
    let counts_apart = if on_timescaledb {
        catalog::hypercore_counts(tgt).await?
    } else {
        Default::default()
    };
    let verified = verify::check_copied(l.target, l.jobs, l.verify, &mut done, &counts_apart).await;
    if l.verify == VerifyMode::Checksum {
        let unhashed = done
            .iter()
            .filter(|(u, r)| u.kind != UnitKind::LargeObjects && r.outcome.checksum.is_none())
            .count();
        if unhashed > 0 {
            report.warnings.push(format!(
                "{unhashed} unit(s) were copied by an earlier run without --verify checksum: they are verified by count only"
            ));
        }
    }
    let restored = privileges::force_row_security(tgt, &forced).await;
    report.warnings.extend(restored?);
    let mismatches = verified?;
    report.units = done.into_iter().map(|(_, r)| r).collect();
    report.mismatches = mismatches;
    if !report.mismatches.is_empty() {
        return Err(Error::new(
            ErrorKind::Verify,
            format!(
                "{} unit(s) differ between source and target (first: {})",
                report.mismatches.len(),
                report.mismatches[0]
            ),
        ));
    }
    if l.keep_state {
        info!("run state kept in schema tsxfer of the target (--keep-state)");
    } else {
        state::drop_state(tgt).await?;
    }
    Ok(())
}

/// Adds the foreign keys that reference hypertables, out of restoring mode (TimescaleDB
/// then checks them against the chunks). One an earlier attempt added, or whose table the
/// filters left out, is passed over.
async fn add_hypertable_foreign_keys(
    tgt: &Target,
    keys: &[catalog::HypertableForeignKey],
) -> Result<()> {
    for k in keys {
        let row = tgt
            .query_one(
                "SELECT pg_catalog.to_regclass($1) IS NULL
                     OR EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                                WHERE conrelid = pg_catalog.to_regclass($1) AND conname = $2)",
                &[&k.table, &k.name],
            )
            .await?;
        if row.get::<_, bool>(0) {
            continue;
        }
        tgt.execute(&k.statement).await.map_err(|e| {
            e.context(format!(
                "adding the foreign key {} of {} (it references a hypertable)",
                ident(&k.name),
                k.table
            ))
        })?;
    }
    Ok(())
}

/// Relations of `relkind` on the target, as quoted `schema.name` (filters may have left
/// some of the source's out).
async fn target_relations(tgt: &Target, relkind: &str) -> Result<BTreeSet<String>> {
    Ok(tgt
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind::text = $1",
            &[&relkind],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

async fn set_sequences(tgt: &Target, sequences: &[(String, i64, bool)]) -> Result<()> {
    let present = target_relations(tgt, "S").await?;
    let sequences: Vec<&(String, i64, bool)> = sequences
        .iter()
        .filter(|(n, _, _)| present.contains(n))
        .collect();
    for batch in sequences.chunks(200) {
        let sql: Vec<String> = batch
            .iter()
            .map(|(name, value, called)| {
                format!(
                    "SELECT pg_catalog.setval({}, {value}, {called})",
                    crate::quote::literal(name)
                )
            })
            .collect();
        tgt.execute(&sql.join(";\n"))
            .await
            .map_err(|e| e.context("setting sequence values on the target"))?;
    }
    Ok(())
}

/// Tells `progress` every unit of the run, and those an earlier run or another worker
/// already copied.
async fn plan_progress(progress: &Progress, tgt: &Target, book: &UnitBook) -> Result<()> {
    let all: Vec<CopyUnit> = book.units().cloned().collect();
    progress.planned(&all);
    let earlier: Vec<CopyUnit> = state::done_units(tgt, book)
        .await?
        .into_iter()
        .map(|(u, _)| u)
        .collect();
    progress.already_done(&earlier);
    Ok(())
}

/// A name for this process in the run state: host and pid.
fn worker_name(role: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{role} {host}:{}", std::process::id())
}

/// The report lines of every unit done so far, whoever copied it.
async fn unit_reports(tgt: &Target, book: &UnitBook) -> Result<Vec<UnitReport>> {
    Ok(UnitReport::by_table(state::done_units(tgt, book).await?)
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

#[derive(Clone, Copy, PartialEq)]
enum Section {
    PreData,
    PostData,
}

/// Restores one section of the main archive, then of every chunk archive. Pre-data runs
/// on one connection (each statement its own transaction); post-data (indexes,
/// constraints, triggers) over the job pool, and stops between archives when the operator
/// asks. When resuming, post-data entries whose objects an earlier attempt made (read
/// from the target's catalog) are left out. Returns the entries left out, with why.
#[allow(clippy::too_many_arguments)]
async fn restore_section(
    l: &Load<'_>,
    tgt: &Target,
    main: &std::path::Path,
    chunk_archives: &[PathBuf],
    section: Section,
    resumed: bool,
    skip: &BTreeSet<u32>,
    skip_entries: &BTreeSet<String>,
    drain: &AtomicBool,
) -> Result<Vec<String>> {
    let (name, main_jobs) = match section {
        Section::PreData => ("pre-data", 1),
        Section::PostData => ("post-data", l.jobs),
    };
    let owners: BTreeSet<String> = l.ex.roles.roles.iter().map(|r| r.name.clone()).collect();
    let restore_one = |archive: &std::path::Path, jobs: usize| {
        let owners = &owners;
        let archive = archive.to_path_buf();
        async move {
            if section == Section::PostData {
                check_drain(drain)?;
            }
            let toc = l.archives.toc(&archive, Some(name)).await?;
            let (mut entries, left_out) = match section {
                Section::PreData => schema::pre_data_entries(&toc),
                Section::PostData => schema::post_data_entries(&toc),
            };
            entries.retain(|e| {
                !skip.contains(&e.oid)
                    && !skip_entries.iter().any(|s| e.rest.starts_with(s.as_str()))
            });
            if resumed && section == Section::PostData {
                let all = entries.len();
                entries = schema::post_data_left(tgt, entries, owners).await?;
                if entries.len() < all {
                    info!(
                        "{} of {all} post-data entries of {} were made by an earlier attempt",
                        all - entries.len(),
                        archive.display()
                    );
                }
            }
            l.archives
                .restore(
                    l.target,
                    &archive,
                    &entries,
                    jobs,
                    false,
                    &format!("{name} restore"),
                )
                .await?;
            Ok::<_, Error>(left_out)
        }
    };
    let mut dropped = restore_one(main, main_jobs).await?;
    // The chunk archives hold independent tables: they are restored side by side, each
    // pg_restore with its share of the jobs.
    let at_once = l.jobs.clamp(1, chunk_archives.len().max(1));
    let each = (l.jobs / at_once).max(1);
    let mut restored = futures_util::stream::iter(
        chunk_archives
            .iter()
            .map(|archive| restore_one(archive, each)),
    )
    .buffered(at_once);
    while let Some(left_out) = restored.next().await {
        dropped.extend(left_out?);
    }
    Ok(dropped)
}

/// What adding an object says when an earlier attempt already added it.
const ALREADY_THERE: &[SqlState] = &[
    SqlState::DUPLICATE_TABLE,
    SqlState::DUPLICATE_OBJECT,
    SqlState::INVALID_TABLE_DEFINITION,
];

/// Tables one ANALYZE statement of the analyze phase takes.
const ANALYZE_BATCH: usize = 50;

/// ANALYZE of every user table the copy pool did not analyze as it loaded it (see
/// sql/target_analyze.sql): leaves in parallel over the job pool, then the parents of
/// inheritance trees one at a time (analyzing a parent locks all its children at once,
/// which a server with a small lock table may refuse: that is a warning, not a failure).
async fn analyze(
    target: &ConnInfo,
    jobs: usize,
    tgt: &Target,
    on_timescaledb: bool,
) -> Result<Vec<String>> {
    let rows = tgt
        .query(include_str!("sql/target_analyze.sql"), &[])
        .await?;
    // ANALYZE of a hypertable analyzes every chunk again (TimescaleDB expands it), and
    // the chunks are analyzed one by one below: leave hypertables out.
    let hypertables: BTreeSet<String> = if on_timescaledb {
        tgt.query(
            "SELECT format('%I.%I', schema_name, table_name) FROM _timescaledb_catalog.hypertable",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect()
    } else {
        BTreeSet::new()
    };
    let (parents, leaves): (Vec<_>, Vec<_>) = rows.iter().partition(|r| r.get::<_, bool>(1));
    let leaves: Vec<String> = leaves.iter().map(|r| r.get(0)).collect();
    let lanes = jobs.min(leaves.len()).max(1);
    let queue = Arc::new(std::sync::Mutex::new(leaves));
    let mut set = JoinSet::new();
    for _ in 0..lanes {
        let queue = queue.clone();
        let target = target.clone();
        set.spawn(async move {
            let tgt = Target::connect(&target, "analyze").await?;
            let mut refused = Vec::new();
            loop {
                // Many tables a statement (one round trip); when the server declines one
                // of them, each of the batch alone, so the others still get statistics.
                let batch: Vec<String> = {
                    let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                    let from = q.len().saturating_sub(ANALYZE_BATCH);
                    q.split_off(from)
                };
                if batch.is_empty() {
                    break;
                }
                match tgt.execute(&format!("ANALYZE {}", batch.join(", "))).await {
                    Err(e) if server_refused(&e) => {}
                    other => {
                        other?;
                        continue;
                    }
                }
                for rel in batch {
                    match tgt.execute(&format!("ANALYZE {rel}")).await {
                        Err(e) if server_refused(&e) => refused.push(format!(
                            "ANALYZE {rel} failed on the target ({e}); its rows are all there, but it has no statistics until ANALYZE works on it"
                        )),
                        other => other?,
                    }
                }
            }
            Ok::<_, Error>(refused)
        });
    }
    let mut warnings = Vec::new();
    while let Some(joined) = set.join_next().await {
        warnings.extend(joined.map_err(|e| {
            Error::new(ErrorKind::Internal, format!("an analyze worker died: {e}"))
        })??);
    }
    warnings.sort();
    for r in parents {
        let rel: String = r.get(0);
        if hypertables.contains(&rel) {
            continue;
        }
        if let Err(e) = tgt.execute(&format!("ANALYZE {rel}")).await {
            warnings.push(format!(
                "ANALYZE {rel} (statistics over all its children) skipped: {e}; run it when the server has room for that many locks"
            ));
        }
    }
    Ok(warnings)
}

/// Whether `e` is the server declining a statement (its SQLSTATE says so: the error is
/// not a lost connection, a shutdown or a lack of resources, which fail the run), such as
/// TimescaleDB 2.19 failing to ANALYZE hypercore chunks on any server (42704).
fn server_refused(e: &Error) -> bool {
    e.kind() == ErrorKind::Schema && !e.is_retryable()
}

/// `tsxfer worker`: joins the run recorded in the target and copies units with it until
/// none is left. Returns a one-line summary.
pub async fn run_worker(
    opts: &MigrateOptions,
    progress: Arc<Progress>,
    drain: Arc<AtomicBool>,
) -> Result<String> {
    let (src, tgt) = connect_both(opts, "worker", &Retry::new(opts.retries, drain.clone())).await?;
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
        target: opts.target.clone(),
        jobs: opts.jobs,
        buffer_size: opts.buffer_size,
        retries: opts.retries,
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

/// `tsxfer status`: where the run recorded in the target stands.
pub async fn status(target: &ConnInfo) -> Result<String> {
    use std::fmt::Write as _;
    let tgt = Target::connect(target, "status")
        .await
        .map_err(|e| e.with_kind(ErrorKind::Preflight))?;
    let Some(run) = state::load(&tgt).await? else {
        return Ok(format!(
            "no tsxfer run in {} (none started, or it finished and its state was removed)\n",
            target.describe()
        ));
    };
    let c = state::counts(&tgt).await?;
    let total = c.done + c.pending + c.failed;
    let mut out = String::new();
    let _ = writeln!(out, "run from {} started {}", run.source, run.started_at);
    let _ = writeln!(out, "reached: {}", run.milestone.name());
    let _ = writeln!(
        out,
        "units: {} done, {} in progress, {} waiting, {} failed, of {total}",
        c.done,
        c.in_progress,
        c.pending - c.in_progress,
        c.failed
    );
    let pct = if c.estimated_bytes > 0 {
        100.0 * c.done_bytes as f64 / c.estimated_bytes as f64
    } else {
        100.0
    };
    let _ = writeln!(
        out,
        "data: {} rows, {} of about {} ({pct:.0}%)",
        c.done_rows,
        human_bytes(c.done_bytes),
        human_bytes(c.estimated_bytes)
    );
    for (rel, attempts, err) in state::failures(&tgt).await? {
        let _ = writeln!(out, "  {rel}: {attempts} attempt(s), last error: {err}");
    }
    Ok(out)
}

/// `tsxfer clean`: drops the run state from the target (the copied data stays).
pub async fn clean(target: &ConnInfo) -> Result<String> {
    let tgt = Target::connect(target, "clean")
        .await
        .map_err(|e| e.with_kind(ErrorKind::Preflight))?;
    let had = state::load(&tgt).await?.is_some();
    state::drop_state(&tgt).await?;
    Ok(if had {
        "the run state (schema tsxfer) was dropped; the data copied so far stays\n".into()
    } else {
        "there was no run state to drop\n".into()
    })
}

/// What `tsxfer plan` prints: the checks' verdict, the roles, and every unit in the order
/// the pool would take it. Changes nothing on either side.
/// The plan as text, and the first refusal the run would meet (the plan then exits as
/// the run would).
pub async fn describe_plan(opts: &MigrateOptions) -> Result<(String, Option<Error>)> {
    use std::fmt::Write as _;
    // A plan answers at once: a server that cannot be reached is said, not waited for.
    let retry = Retry::new(0, Arc::new(AtomicBool::new(false)));
    let (src, tgt) = connect_both(opts, "plan", &retry).await?;
    preflight::check_not_source(&src, &tgt)
        .await
        .map_err(refusal)?;
    let mut out = String::new();
    let mut refusal: Option<Error> = None;
    let verdict = preflight::check(&src, &tgt, &opts.target, false).await;
    let facts = match &verdict {
        Ok(pre) => {
            let _ = writeln!(out, "preflight: ok");
            for w in &pre.warnings {
                let _ = writeln!(out, "  warning: {w}");
            }
            pre.source.clone()
        }
        Err(e) if e.kind() == ErrorKind::Preflight => {
            let _ = writeln!(out, "preflight: the migration would be refused: {e}");
            catalog::source_facts(&src).await?
        }
        Err(_) => return Err(verdict.err().expect("an error")),
    };
    if let Err(e) = verdict {
        refusal = Some(e);
    }
    if let Err(e) = convert::validate(&src, &opts.hypertables).await {
        let _ = writeln!(out, "preflight: the migration would be refused: {e}");
        refusal.get_or_insert(self::refusal(e));
    }
    if let Err(e) = filter::check_exclusions(&src, &opts.filters).await {
        let _ = writeln!(out, "preflight: the migration would be refused: {e}");
        refusal.get_or_insert(e);
    }
    if !opts.filters.is_empty() {
        let _ = writeln!(
            out,
            "filters (pg_dump applies them; the units below, and how big tables are cut into parts, are before filtering): {}",
            opts.filters.pg_dump_args().join(" ")
        );
    }
    for h in &opts.hypertables {
        let _ = writeln!(
            out,
            "hypertable on the target: {} by {}{}",
            crate::quote::qualified(&h.schema, &h.table),
            ident(&h.column),
            h.interval
                .as_ref()
                .map(|i| format!(", chunks of {i}"))
                .unwrap_or_default()
        );
    }
    let tools = schema::find_tools(opts.pg_bin_dir.as_deref(), facts.major());
    match &tools {
        Ok(t) => {
            let _ = writeln!(
                out,
                "pg_dump: {} (version {})",
                t.pg_dump.display(),
                t.major
            );
        }
        Err(e) => {
            let _ = writeln!(out, "pg_dump: {e}");
        }
    }
    if let Err(e) = tools {
        refusal.get_or_insert(e);
    }
    let _ = writeln!(
        out,
        "source: {} (PostgreSQL {}{})",
        opts.source.describe(),
        facts.version,
        facts
            .extension("timescaledb")
            .map(|e| format!(", TimescaleDB {}", e.version))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "target: {}", opts.target.describe());
    let target_login: String = tgt
        .query_one("SELECT current_user::text", &[])
        .await?
        .get(0);
    let target_db: String = tgt
        .query_one("SELECT current_database()::text", &[])
        .await?
        .get(0);
    let (source_roles, memberships, readable) = roles::read_source_roles(&src).await?;
    let role_plan = roles::plan_roles(
        &source_roles,
        &memberships,
        &roles::target_roles(&tgt).await?,
        &target_login,
        &target_db,
        readable,
    );
    let _ = writeln!(out, "\nroles:");
    for (_, sql) in role_plan.creates.iter().chain(role_plan.extras.iter()) {
        let _ = writeln!(out, "  {sql}");
    }
    for r in &role_plan.existing {
        let _ = writeln!(out, "  (exists on the target, left as it is) {}", ident(r));
    }
    for r in &role_plan.rewrites {
        let _ = writeln!(out, "  rewrite: {r}");
    }
    let reader = Source::connect(&opts.source, "plan sizes").await?;
    src.begin_snapshot(None).await?;
    let units = plan::order_units(catalog::copy_units(&src, &reader, &facts).await?);
    let units = extract::split_big_tables(
        &reader,
        &facts,
        units,
        plan::Split {
            part_bytes: opts.split_bytes,
            streams: opts.jobs,
        },
    )
    .await?;
    src.end().await?;
    let schemas = catalog::user_schemas(&src).await?;
    let _ = writeln!(
        out,
        "\nschemas: {}",
        schemas
            .iter()
            .map(|s| ident(s))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let total: i64 = units.iter().map(|u| u.estimated_bytes).sum();
    let _ = writeln!(
        out,
        "\n{} units, about {}, over {} streams, in this order:",
        units.len(),
        human_bytes(total),
        opts.jobs
    );
    for (i, u) in units.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {:>5}  {:<16} {:>10}  {}{}",
            i + 1,
            u.kind.label(),
            human_bytes(u.estimated_bytes),
            u.title(),
            if u.binary { "" } else { "  (text COPY)" }
        );
    }
    Ok((out, refusal))
}
