//! A migration: preflight, the snapshot, the schema dump, then the load.

use tracing::info;

use super::load::{Load, load};
use super::{Ledger, connect_both, preflight, refusal};
use crate::error::{Error, ErrorKind, Result};
use crate::objects::schema::{self, Archives};
use crate::observe::report::Report;
use crate::pg::budget;
use crate::pg::conninfo::ConnInfo;
use crate::pg::retry::Retry;
use crate::pg::{Source, Target};
use crate::plan;
use crate::run::LoadOptions;
use crate::run::pool::DataFrom;
use crate::source::extract::{self, Asked};
use crate::source::filter::{self, Filters};
use crate::source::{catalog, convert};
use crate::target::reset;
use crate::target::state::{self, Milestone, RunState};

/// Everything a migration needs to know, validated.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    pub source: ConnInfo,
    /// What any run that loads a target is asked.
    pub load: LoadOptions,
    /// Resume even though the earlier run's snapshot is gone.
    pub allow_inconsistent: bool,
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

/// Whether a snapshot can still be imported (its exporting transaction is open).
pub(super) async fn snapshot_alive(source: &ConnInfo, snapshot: &str) -> Result<bool> {
    let probe = Source::connect(source, "snapshot probe").await?;
    Ok(probe.begin_snapshot(Some(snapshot)).await.is_ok())
}

/// The run an earlier attempt left in the target, if any (none after `--restart`, which
/// removes it with everything it made). `--restart` drops nothing unless the recorded run
/// came from this command's source (`source_id`): a target that holds another source's
/// run is not this migration's to empty.
pub(super) async fn earlier_run(
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
pub(super) fn check_resumable(prior: &RunState, source_id: &str) -> Result<()> {
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
pub(super) fn work_dir(dir: Option<&std::path::Path>) -> Result<tempfile::TempDir> {
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

pub(super) async fn migrate(opts: &MigrateOptions, ledger: Ledger<'_>) -> Result<()> {
    ledger.phases.enter("preflight");
    // Nothing has been changed yet: any failure here is a refusal.
    let retry = Retry::new(opts.load.retries, ledger.drain.clone());
    let (src, tgt) = connect_both(opts, "coordinator", &retry).await?;
    preflight::check_not_source(&src, &tgt)
        .await
        .map_err(refusal)?;
    let source_id = catalog::source_identity(&src).await.map_err(refusal)?;
    let prior = earlier_run(&tgt, opts.load.restart, &source_id, ledger.report).await?;
    let pre = preflight::check(&src, &tgt, &opts.load.target, prior.is_some())
        .await
        .map_err(refusal)?;
    ledger.report.warnings.extend(pre.warnings.iter().cloned());
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
    filter::check_table_dependencies(&src, &tgt, &opts.filters).await?;
    convert::check_source_kind(&conversions, &pre.source)?;
    convert::check_target_kind(&conversions, &pre.target)?;
    let tools = schema::find_tools(opts.load.pg_bin_dir.as_deref(), pre.source.major())?;
    let (jobs, capped) = budget::streams(
        opts.load.jobs,
        Some(&budget::source_room(&src).await?),
        &budget::target_room(&tgt).await?,
    )?;
    if let Some(w) = capped {
        tracing::warn!("{w}");
        ledger.report.warnings.push(w);
    }
    ledger.report.jobs = jobs;

    // One snapshot for everything: pg_dump and every COPY stream import it while this
    // transaction holds it open.
    src.begin_snapshot(None).await?;
    let snapshot: String = src
        .query_one("SELECT pg_catalog.pg_export_snapshot()", &[])
        .await?
        .get(0);
    ledger.report.snapshot = Some(snapshot.clone());
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
            ledger.report.warnings.push(format!(
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

    ledger.phases.enter("schema dump");
    let work = work_dir(opts.load.work_dir.as_deref())?;
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
                streams: opts.load.jobs,
            },
        },
    )
    .await?;
    let load_opts = Load {
        options: &opts.load,
        jobs,
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
    load(load_opts, tgt, Some(&src), ledger).await
}
