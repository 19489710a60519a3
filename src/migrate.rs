//! The whole migration, phase by phase: preflight, roles, pre-data schema, TimescaleDB
//! catalog, data, post-data, owners and grants, verify. Whatever happens after
//! `timescaledb_pre_restore()`, `timescaledb_post_restore()` runs before tsxfer exits.
//!
//! A live migration reads the source ([`crate::extract`]) and loads the target at once;
//! `tsxfer restore` loads what `tsxfer dump` read earlier. Both load through [`load`].

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tracing::info;

use crate::catalog;
use crate::catalog_rows;
use crate::conninfo::ConnInfo;
use crate::convert;
use crate::error::{Error, ErrorKind, Result};
use crate::extract::{self, Asked, Extract};
use crate::filter::{self, Filters};
use crate::offline;
use crate::pg::{Source, Target};
use crate::plan::{self, CopyUnit, human_bytes};
use crate::pool::{self, DataFrom, PoolConfig, PoolEnd};
use crate::preflight::{self, PreflightReport};
use crate::privileges;
use crate::progress::Progress;
use crate::quote::ident;
use crate::report::{PhaseTime, Report, UnitReport};
use crate::reset;
use crate::roles;
use crate::schema::{self, Archives};
use crate::state::{self, Milestone, RunState};

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
}

/// What must be undone whatever happens, kept outside the migration future so it survives
/// an interruption.
#[derive(Default)]
struct Cleanup {
    /// TimescaleDB's schema on the target, while the target is in restoring mode.
    restoring: Option<String>,
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
    let failed_in = phases.current.as_ref().map(|(name, _)| name.clone());
    let result = match (result, failed_in) {
        (Err(e), Some(phase)) if e.kind() != ErrorKind::Interrupted => {
            Err(e.context(format!("{phase} phase")))
        }
        (r, _) => r,
    };
    phases.finish();
    if let Some(schema) = cleanup.restoring.take() {
        match leave_restoring_mode(job.target(), &schema).await {
            Ok(()) => info!("the target left TimescaleDB's restoring mode"),
            Err(e) => report.warnings.push(e.to_string()),
        }
    }
    report.phases = phases.done;
    report.seconds = phases.started.elapsed().as_secs_f64();
    report.data_analyze_seconds = phases.progress.analyze_seconds();
    report.success = result.is_ok();
    report.error = result.as_ref().err().map(|e| e.to_string());
    (report, result)
}

/// Calls `timescaledb_post_restore()` on a fresh connection; on failure, says exactly what
/// to run by hand.
async fn leave_restoring_mode(target: &ConnInfo, schema: &str) -> Result<()> {
    let sql = format!("SELECT {}.timescaledb_post_restore()", ident(schema));
    let outcome = async {
        let tgt = Target::connect(target, "post-restore").await?;
        state::restoring_mode(&tgt, schema, "timescaledb_post_restore").await
    }
    .await;
    outcome.map_err(|e| {
        Error::new(
            ErrorKind::Schema,
            format!(
                "the target may still be in TimescaleDB's restoring mode ({e}); run: psql \"{}\" -c '{sql};'",
                target.redacted()
            ),
        )
    })
}

/// Before anything is changed, a failure is a refusal (or bad usage, when it is).
fn refusal(e: Error) -> Error {
    match e.kind() {
        ErrorKind::Usage => e,
        _ => e.with_kind(ErrorKind::Preflight),
    }
}

/// Connects to both sides before anything is changed.
async fn connect_both(opts: &MigrateOptions, role: &str) -> Result<(Source, Target)> {
    let src = Source::connect(&opts.source, role).await.map_err(refusal)?;
    let tgt = Target::connect(&opts.target, role).await.map_err(refusal)?;
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
/// removes it with everything it made).
async fn earlier_run(tgt: &Target, restart: bool, report: &mut Report) -> Result<Option<RunState>> {
    let prior = state::load(tgt).await.map_err(refusal)?;
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
    let (src, tgt) = connect_both(opts, "coordinator").await?;
    let prior = earlier_run(&tgt, opts.restart, report).await?;
    let pre = preflight::check(&src, &tgt, &opts.target, prior.is_some())
        .await
        .map_err(refusal)?;
    report.warnings.extend(pre.warnings.iter().cloned());
    let source_id = catalog::source_identity(&src).await?;
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
    let reader = Source::connect(&opts.source, "catalog").await?;
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
        restore_pgoptions: schema::target_restore_pgoptions(&tgt, opts.jobs).await?,
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
        jobs: opts.jobs,
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
    };
    load(load_opts, &tgt, Some(&src), report, cleanup, phases, drain).await
}

async fn restore(
    opts: &RestoreOptions,
    report: &mut Report,
    cleanup: &mut Cleanup,
    phases: &mut Phases,
    drain: &Arc<AtomicBool>,
) -> Result<()> {
    phases.enter("preflight");
    let (manifest, reader) = offline::open_for_restore(&opts.dir, opts.jobs)?;
    let ex = &manifest.extract;
    report.source = format!("{} (the dump in {})", ex.source, opts.dir.display());
    report.snapshot = Some(ex.snapshot.clone());
    if manifest.snapshots.len() > 1 {
        report.warnings.push(format!(
            "the dump was resumed: its units were read in {} snapshots of the source, not one",
            manifest.snapshots.len()
        ));
    }
    let tgt = Target::connect(&opts.target, "coordinator")
        .await
        .map_err(refusal)?;
    let prior = earlier_run(&tgt, opts.restart, report).await?;
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
    let work = work_dir(opts.work_dir.as_deref())?;
    let archives = Archives {
        tools,
        dir: offline::schema_dir(&opts.dir),
        work: work.path().to_path_buf(),
        restore_pgoptions: schema::target_restore_pgoptions(&tgt, opts.jobs).await?,
    };
    let load_opts = Load {
        target: &opts.target,
        jobs: opts.jobs,
        buffer_size: opts.buffer_size,
        retries: opts.retries,
        keep_state: opts.keep_state,
        ex,
        archives: &archives,
        pre: &pre,
        resumed: prior.map(|p| p.milestone),
        selection: None,
        from: DataFrom::Dump(Arc::new(reader)),
    };
    load(load_opts, &tgt, None, report, cleanup, phases, drain).await
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
}

/// Roles, schema, TimescaleDB catalog, data, post-data, owners and grants, ANALYZE and
/// verify. `src`, when the data comes from a live source, holds the snapshot until the
/// data is copied.
async fn load(
    l: Load<'_>,
    tgt: &Target,
    src: Option<&Source>,
    report: &mut Report,
    cleanup: &mut Cleanup,
    phases: &mut Phases,
    drain: &Arc<AtomicBool>,
) -> Result<()> {
    let (ex, pre) = (l.ex, l.pre);
    report.rewrites.extend(ex.rewrites.iter().cloned());
    match l.resumed {
        None => {
            let options = serde_json::json!({
                "jobs": l.jobs,
                "buffer_size": l.buffer_size,
                "retries": l.retries,
                "selection": l.selection,
            });
            state::create(
                tgt,
                &ex.source,
                &ex.source_id,
                &ex.snapshot,
                options,
                &ex.units,
            )
            .await?;
        }
        Some(_) => {
            let requeued = state::requeue_failed(tgt).await?;
            if requeued > 0 {
                info!("{requeued} failed unit(s) queued again");
            }
        }
    }
    let milestone = l.resumed.unwrap_or(Milestone::Started);
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
        )
        .await,
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
    check_drain(drain)?;

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
            &l,
            &main,
            &chunk_archives,
            Section::PreData,
            false,
            &BTreeSet::new(),
            &skip,
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
        plan_progress(&phases.progress, tgt).await?;
        let config = PoolConfig {
            from: l.from.clone(),
            target: l.target.clone(),
            jobs: l.jobs,
            buffer_size: l.buffer_size,
            retries: l.retries,
            worker: worker_name("coordinator"),
        };
        let end = pool::run(config, phases.progress.clone(), drain.clone()).await;
        report.units = unit_reports(tgt).await?;
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
        let resumed = l.resumed.is_some();
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
            &l,
            &main,
            &chunk_archives,
            Section::PostData,
            resumed,
            &skip,
            &BTreeSet::new(),
        )
        .await?;
        report.rewrites.extend(dropped);
        for (_, sql) in own {
            match tgt.execute(sql).await {
                Err(e) if !(resumed && e.message().contains("already exists")) => {
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
            privileges::run_and_summarize(tgt, &refreshes, "materialized view refresh").await,
        );
        state::set_milestone(tgt, Milestone::PostData).await?;
    }
    check_drain(drain)?;

    phases.enter("owners and grants");
    let undo = privileges::lend_schema_create(tgt, &privilege_plan.schema_owners).await?;
    let refused = privileges::run_batches(tgt, &privilege_plan.owners).await;
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
        refusals.extend(privileges::run_and_summarize(tgt, statements, what).await);
    }
    refusals.extend(privileges::apply_member_grants(tgt, &privilege_plan.member_grants).await?);
    if ex.filtered {
        // Owners and grants are read for the whole source; those of objects the filters
        // left out have nothing to apply to.
        refusals.retain(|w| !w.contains("does not exist"));
    }
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
    let mut done = UnitReport::by_table(state::done_units(tgt).await?);
    report
        .warnings
        .extend(privileges::lift_forced_row_security(tgt, &ex.forced_row_security).await?);
    let counts_apart = if on_timescaledb {
        catalog::hypercore_counts(tgt).await?
    } else {
        Default::default()
    };
    let verified = verify(l.target, l.jobs, &mut done, &counts_apart).await;
    report
        .warnings
        .extend(privileges::force_row_security(tgt, &ex.forced_row_security).await);
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
async fn plan_progress(progress: &Progress, tgt: &Target) -> Result<()> {
    progress.planned(&state::all_units(tgt).await?);
    let earlier: Vec<CopyUnit> = state::done_units(tgt)
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
async fn unit_reports(tgt: &Target) -> Result<Vec<UnitReport>> {
    Ok(UnitReport::by_table(state::done_units(tgt).await?)
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
/// constraints, triggers) over the job pool. When resuming, objects an earlier attempt
/// already made are not errors. Returns the entries left out, with why.
async fn restore_section(
    l: &Load<'_>,
    main: &std::path::Path,
    chunk_archives: &[PathBuf],
    section: Section,
    tolerate_existing: bool,
    skip: &BTreeSet<u32>,
    skip_entries: &BTreeSet<String>,
) -> Result<Vec<String>> {
    let (name, jobs) = match section {
        Section::PreData => ("pre-data", 1),
        Section::PostData => ("post-data", l.jobs),
    };
    let mut dropped = Vec::new();
    for archive in std::iter::once(main).chain(chunk_archives.iter().map(PathBuf::as_path)) {
        let toc = l.archives.toc(archive, Some(name)).await?;
        let (mut entries, left_out) = match section {
            Section::PreData => schema::pre_data_entries(&toc),
            Section::PostData => schema::post_data_entries(&toc),
        };
        entries.retain(|e| {
            !skip.contains(&e.oid) && !skip_entries.iter().any(|s| e.rest.starts_with(s.as_str()))
        });
        dropped.extend(left_out);
        l.archives
            .restore(
                l.target,
                archive,
                &entries,
                jobs,
                false,
                tolerate_existing,
                &format!("{name} restore"),
            )
            .await?;
    }
    Ok(dropped)
}

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
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(rel) = next else { break };
                match tgt.execute(&format!("ANALYZE {rel}")).await {
                    Err(e) if server_refused(&e) => refused.push(format!(
                        "ANALYZE {rel} failed on the target ({e}); its rows are all there, but it has no statistics until ANALYZE works on it"
                    )),
                    other => other?,
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

/// Counts every done unit's rows on the target (a table copied in parts once, against
/// its parts' rows added up) and compares them with what was read from the source
/// snapshot. Fills each report's target count; returns one line per mismatch.
async fn verify(
    target: &ConnInfo,
    jobs: usize,
    done: &mut [(CopyUnit, UnitReport)],
    counts_apart: &std::collections::HashMap<(String, String), String>,
) -> Result<Vec<String>> {
    let work: Vec<(usize, String)> = done
        .iter()
        .enumerate()
        .map(|(i, (unit, _))| {
            let apart = counts_apart.get(&(unit.schema.clone(), unit.name.clone()));
            (i, apart.cloned().unwrap_or_else(|| unit.count_sql()))
        })
        .collect();
    let lanes = jobs.min(work.len()).max(1);
    let mut set = JoinSet::new();
    for lane in 0..lanes {
        let mine: Vec<(usize, String)> = work.iter().skip(lane).step_by(lanes).cloned().collect();
        let target = target.clone();
        set.spawn(async move {
            let tgt = Target::connect(&target, "verify").await?;
            let mut counts = Vec::new();
            for (i, sql) in mine {
                let n: i64 = tgt.query_one(&sql, &[]).await?.get(0);
                counts.push((i, n));
            }
            Ok::<_, Error>(counts)
        });
    }
    let mut mismatches = Vec::new();
    while let Some(joined) = set.join_next().await {
        let counts = joined
            .map_err(|e| Error::new(ErrorKind::Internal, format!("a verify worker died: {e}")))??;
        for (i, n) in counts {
            let report = &mut done[i].1;
            report.target_rows = Some(n);
            let expected = report.outcome.rows;
            if n < 0 || n as u64 != expected {
                mismatches.push(format!(
                    "{} {}: {expected} rows in the source snapshot, {n} on the target",
                    report.kind.label(),
                    report.relation
                ));
            }
        }
    }
    mismatches.sort();
    Ok(mismatches)
}

/// `tsxfer worker`: joins the run recorded in the target and copies units with it until
/// none is left. Returns a one-line summary.
pub async fn run_worker(
    opts: &MigrateOptions,
    progress: Arc<Progress>,
    drain: Arc<AtomicBool>,
) -> Result<String> {
    let (src, tgt) = connect_both(opts, "worker").await?;
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
    progress.phase("data");
    plan_progress(&progress, &tgt).await?;
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
    let (src, tgt) = connect_both(opts, "plan").await?;
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
