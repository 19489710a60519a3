//! A restore of a dump: its manifest and files in place of the source.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tracing::info;

use super::load::{Load, load};
use super::migrate::{check_resumable, earlier_run, work_dir};
use super::{Ledger, preflight, refusal};
use crate::error::{Error, ErrorKind, Result};
use crate::objects::schema::{self, Archives};
use crate::pg::retry::Retry;
use crate::pg::{Target, budget};
use crate::plan::{CopyUnit, UnitKind};
use crate::run::LoadOptions;
use crate::run::pool::DataFrom;
use crate::source::convert;

/// What `tsxfer restore` needs to know, validated.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The directory `tsxfer dump` wrote.
    pub dir: PathBuf,
    /// What any run that loads a target is asked.
    pub load: LoadOptions,
}

pub(super) async fn restore(opts: &RestoreOptions, ledger: Ledger<'_>) -> Result<()> {
    ledger.phases.enter("preflight");
    // Reading the manifest hashes the schema files: on a blocking thread.
    let (dir, jobs) = (opts.dir.clone(), opts.load.jobs);
    let (mut manifest, reader) =
        tokio::task::spawn_blocking(move || crate::dump::open_for_restore(&dir, jobs))
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Internal, format!("reading the dump failed: {e}"))
            })??;
    let retry = Retry::new(opts.load.retries, ledger.drain.clone());
    let tgt = retry
        .target(&opts.load.target, "coordinator")
        .await
        .map_err(refusal)?;
    target_conditions(&tgt, &mut manifest.extract.units)
        .await
        .map_err(refusal)?;
    let ex = &manifest.extract;
    ledger.report.source = format!("{} (the dump in {})", ex.source, opts.dir.display());
    ledger.report.snapshot = Some(ex.snapshot.clone());
    if manifest.snapshots.len() > 1 {
        ledger.report.warnings.push(format!(
            "the dump was resumed: its units were read in {} snapshots of the source, not one",
            manifest.snapshots.len()
        ));
    }
    preflight::check_not_dump_source(&tgt, &ex.source_id)
        .await
        .map_err(refusal)?;
    let prior = earlier_run(&tgt, opts.load.restart, &ex.source_id, ledger.report).await?;
    let pre = preflight::check_target(ex.facts.clone(), &tgt, &opts.load.target, prior.is_some())
        .await
        .map_err(refusal)?;
    ledger.report.warnings.extend(pre.warnings.iter().cloned());
    crate::source::filter::check_uses(&tgt, &ex.table_uses).await?;
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
    let tools = schema::find_tools(opts.load.pg_bin_dir.as_deref(), ex.facts.major())?;
    let (jobs, capped) = budget::streams(opts.load.jobs, None, &budget::target_room(&tgt).await?)?;
    if let Some(w) = capped {
        tracing::warn!("{w}");
        ledger.report.warnings.push(w);
    }
    ledger.report.jobs = jobs;
    let work = work_dir(opts.load.work_dir.as_deref())?;
    let archives = Archives {
        tools,
        dir: crate::dump::schema_dir(&opts.dir),
        work: work.path().to_path_buf(),
        restore_pgoptions: schema::target_restore_pgoptions(&tgt, jobs).await?,
    };
    let load_opts = Load {
        options: &opts.load,
        jobs,
        ex,
        archives: &archives,
        pre: &pre,
        resumed: prior.map(|p| p.milestone),
        selection: None,
        from: DataFrom::Dump(Arc::new(reader)),
    };
    load(load_opts, tgt, None, ledger).await
}

/// Gives the units of other extensions' configuration tables the condition the target's
/// own extension sets (which picks the rows users added), rather than the text a dump's
/// manifest carries: it becomes SQL in verification.
pub(super) async fn target_conditions(tgt: &Target, units: &mut [CopyUnit]) -> Result<()> {
    let conditions: BTreeMap<(String, String), String> = tgt
        .query(include_str!("../sql/source_extension_config.sql"), &[])
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
