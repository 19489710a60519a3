//! What a migration and a restore share once the source is read: roles, schema, data,
//! post-data, privileges, analyze, verify, in that order.
//!
//! One file because it is one sequence: `load_phases` takes the phases in order, and the
//! helpers here serve only it.

use std::collections::BTreeSet;
use std::sync::Arc;

use tracing::info;

use super::analyze;
use super::schema::{
    ALREADY_THERE, Section, add_hypertable_foreign_keys, restore_section, set_sequences,
    target_relations,
};
use super::worker::worker_name;
use super::{Cleanup, Ledger, LoadOptions, check_drain, pool, resume_hint, verify};
use crate::error::{Error, ErrorKind, Result};
use crate::objects::schema::{self, Archives};
use crate::objects::{catalog_rows, chunk_ddl, privileges, roles};
use crate::observe::progress::Progress;
use crate::observe::report::{Report, UnitReport};
use crate::pg::retry::Retry;
use crate::pg::{Source, Target};
use crate::plan::unit_book::UnitBook;
use crate::plan::{CopyUnit, UnitKind};
use crate::quote::ident;
use crate::run::pool::{DataFrom, PoolConfig, PoolEnd};
use crate::run::preflight::PreflightReport;
use crate::run::verify::VerifyMode;
use crate::source::catalog;
use crate::source::extract::Extract;
use crate::target::state::{self, Milestone};

/// The target half of a run, whatever the data comes from.
pub(super) struct Load<'a> {
    /// What the command was asked.
    pub(super) options: &'a LoadOptions,
    /// Copy streams: `options.jobs`, or fewer when the target has no room for more.
    pub(super) jobs: usize,
    pub(super) ex: &'a Extract,
    pub(super) archives: &'a Archives,
    pub(super) pre: &'a PreflightReport,
    /// How far an earlier run got; `None` for a new run.
    pub(super) resumed: Option<Milestone>,
    /// A migration's choices of what to copy ([`MigrateOptions::selection`]), recorded
    /// with the run; none for a restore (its dump's manifest holds them).
    pub(super) selection: Option<String>,
    pub(super) from: DataFrom,
}

impl Load<'_> {
    /// What a run stopped now tells the operator to run ([`resume_hint`]).
    fn hint(&self, cleanup: &Cleanup) -> &'static str {
        resume_hint(
            cleanup.reached,
            matches!(self.from, DataFrom::Source { .. }),
        )
    }
}

/// Records a milestone in the run state, and in what a stop from then on says.
async fn reach(tgt: &Target, cleanup: &mut Cleanup, milestone: Milestone) -> Result<()> {
    state::set_milestone(tgt, milestone).await?;
    cleanup.reached = Some(milestone);
    Ok(())
}

/// Roles, schema, TimescaleDB catalog, data, post-data, owners and grants, ANALYZE and
/// verify. `src`, when the data comes from a live source, holds the snapshot until the
/// data is copied.
///
/// When a phase fails in a way worth retrying (the target restarted, say) once the schema
/// is in place, the run resumes itself: a new coordinator connection, then the phases
/// again from the milestone the run state records, as a rerun of the command would.
pub(super) async fn load(
    l: Load<'_>,
    mut tgt: Target,
    src: Option<&Source>,
    mut ledger: Ledger<'_>,
) -> Result<()> {
    let ex = l.ex;
    ledger.report.rewrites.extend(ex.rewrites.iter().cloned());
    ledger.cleanup.reached = l.resumed;
    // Stopped before anything was written: a rerun starts afresh.
    check_drain(ledger.drain, l.hint(ledger.cleanup))?;
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
    ledger.cleanup.written = true;
    let book = Arc::new(match recorded {
        None => {
            let options = serde_json::json!({
                "jobs": l.jobs,
                "buffer_size": l.options.buffer_size,
                "retries": l.options.retries,
                "selection": l.selection,
            });
            state::create(
                &mut tgt,
                &ex.source,
                &ex.source_id,
                &ex.snapshot,
                options,
                &ex.units,
            )
            .await?;
            ledger.cleanup.reached = Some(Milestone::Started);
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
    let retry = Retry::new(l.options.retries, ledger.drain.clone());
    let mut milestone = l.resumed.unwrap_or(Milestone::Started);
    let mut resumed = l.resumed.is_some();
    let mut attempt = 0;
    loop {
        let (warnings, rewrites) = (ledger.report.warnings.len(), ledger.report.rewrites.len());
        let created = ledger.report.roles_created.clone();
        let e =
            match load_phases(&l, &mut tgt, src, &book, milestone, resumed, ledger.again()).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
        attempt += 1;
        if !e.is_retryable() || attempt > l.options.retries {
            return Err(failed_load(&l, &book, ledger.report, e).await);
        }
        let Some(phase) = ledger.phases.current.as_ref().map(|(name, _)| name.clone()) else {
            return Err(e);
        };
        let again = async {
            retry.wait(&format!("{phase} phase"), &e, attempt).await?;
            let t = retry.target(&l.options.target, "coordinator").await?;
            let run = state::load(&t).await?;
            Ok::<_, Error>((t, run))
        };
        let (t, run) = match again.await {
            Ok(x) => x,
            Err(e) => return Err(failed_load(&l, &book, ledger.report, e).await),
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
        ledger.report.warnings.truncate(warnings);
        ledger.report.rewrites.truncate(rewrites);
        for r in created {
            if !ledger.report.roles_created.contains(&r) {
                ledger.report.roles_created.push(r);
            }
        }
        info!("taking the run up again from {}", milestone.name());
    }
}

/// What only a superuser may make, left out of a restore by a role that is not one: each
/// is said in the report, and its key (`key` of what names it) is returned to be skipped.
fn left_to_a_superuser<'a, N: 'a, K>(
    report: &mut Report,
    objects: impl Iterator<Item = &'a (N, String)>,
    key: impl Fn(&N) -> K,
) -> Vec<K> {
    objects
        .map(|(name, what)| {
            report.rewrites.push(format!(
                "{what} not restored (only a superuser may make it); create it there as one"
            ));
            key(name)
        })
        .collect()
}

/// The error a load ends with, after the report got the units copied so far (read on a
/// new connection: the coordinator's may be what broke).
pub(super) async fn failed_load(
    l: &Load<'_>,
    book: &UnitBook,
    report: &mut Report,
    e: Error,
) -> Error {
    if let Ok(t) = Target::connect(&l.options.target, "report").await
        && let Ok(units) = unit_reports(&t, book).await
    {
        report.units = units;
    }
    e
}

/// The phases of [`load`] from `milestone` on; `resumed` when an earlier attempt (this
/// process's or another's) went through some of them already.
pub(super) async fn load_phases(
    l: &Load<'_>,
    tgt: &mut Target,
    src: Option<&Source>,
    book: &Arc<UnitBook>,
    milestone: Milestone,
    resumed: bool,
    ledger: Ledger<'_>,
) -> Result<()> {
    let Ledger {
        report,
        cleanup,
        phases,
        drain,
    } = ledger;
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
            let mappings = ex.superuser_user_mappings.iter();
            skip.extend(left_to_a_superuser(report, mappings, |tag| {
                schema::user_mapping_entry(tag)
            }));
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
        let made = chunk_ddl::apply_pre_data(
            &l.options.target,
            l.jobs,
            &l.archives.restore_pgoptions,
            &ex.chunk_ddl,
            &target_relations(tgt, "r").await?,
        )
        .await?;
        if made > 0 {
            info!("made {made} chunk tables");
        }
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
        reach(tgt, cleanup, Milestone::Schema).await?;
    }
    check_drain(drain, l.hint(cleanup))?;

    if milestone < Milestone::Data {
        phases.enter("data");
        plan_progress(&phases.progress, tgt, book).await?;
        let config = PoolConfig {
            from: l.from.clone(),
            target: l.options.target.clone(),
            jobs: l.jobs,
            buffer_size: l.options.buffer_size,
            retries: l.options.retries,
            worker: worker_name("coordinator"),
            units: book.clone(),
            checksum: l.options.verify == VerifyMode::Checksum,
        };
        let end = pool::run(config, phases.progress.clone(), drain.clone()).await;
        report.units = unit_reports(tgt, book).await?;
        let resume_hint = match l.from {
            DataFrom::Source { .. } => "run the same command again with --allow-inconsistent",
            DataFrom::Dump(_) => "run the same command again",
        };
        let stopped_hint = l.hint(cleanup);
        if end? == PoolEnd::Drained {
            let counts = state::counts(tgt).await?;
            return Err(Error::new(
                ErrorKind::Interrupted,
                format!(
                    "stopped on request after the units in flight: {} of {} units copied; {stopped_hint}",
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
        reach(tgt, cleanup, Milestone::Data).await?;
    }
    check_drain(drain, l.hint(cleanup))?;

    if milestone < Milestone::PostData {
        phases.enter("post-data");
        let own: Vec<&(u32, String)> = ex.conversions.iter().flat_map(|c| &c.constraints).collect();
        let mut skip: BTreeSet<u32> = own.iter().map(|(oid, _)| *oid).collect();
        skip.extend(&ex.skip_post_data);
        skip.extend(ex.hypertable_fks.iter().map(|k| k.oid));
        if !pre.target.superuser {
            let publications = ex.superuser_publications.iter();
            skip.extend(left_to_a_superuser(report, publications, |oid| *oid));
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
        check_drain(drain, l.hint(cleanup))?;
        let present = match resumed {
            true => Some(schema::post_data_present(tgt).await?),
            false => None,
        };
        let made = chunk_ddl::apply_post_data(
            &l.options.target,
            l.jobs,
            &l.archives.restore_pgoptions,
            &ex.chunk_ddl,
            &skip,
            present.as_ref(),
            drain,
        )
        .await?;
        check_drain(drain, l.hint(cleanup))?;
        if made > 0 {
            info!("made {made} indexes, constraints and triggers of chunk tables");
        }
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
        reach(tgt, cleanup, Milestone::PostData).await?;
    }
    check_drain(drain, l.hint(cleanup))?;

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
    check_drain(drain, l.hint(cleanup))?;
    phases.enter("analyze");
    let on_timescaledb = pre.target.extension("timescaledb").is_some();
    let mut done = UnitReport::by_table(state::done_units(tgt, book).await?);
    let mut needed = analyze::Needed::read(tgt, on_timescaledb).await?;
    // What the verify phase reads back, it analyzes first (see analyze.rs).
    let analyze_first = match l.options.verify {
        VerifyMode::Off => Default::default(),
        _ => needed.take(done.iter().map(|(u, _)| (u.schema.clone(), u.name.clone()))),
    };
    report
        .warnings
        .extend(analyze::analyze(&l.options.target, l.jobs, tgt, needed).await?);

    phases.enter("verify");
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
    let verified = verify::check_copied(
        &l.options.target,
        l.jobs,
        l.options.verify,
        &mut done,
        &counts_apart,
        analyze_first,
        drain,
    )
    .await;
    if l.options.verify == VerifyMode::Checksum {
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
    let verified = verified?;
    report.warnings.extend(verified.analyze_warnings);
    report.units = done.into_iter().map(|(_, r)| r).collect();
    report.mismatches = verified.mismatches;
    // A difference found before a stop is said all the same.
    verify::differ(&report.mismatches)?;
    if verified.cut_short {
        // A rerun verifies every unit again.
        return Err(Error::new(
            ErrorKind::Interrupted,
            format!(
                "stopped on request during verification; {}",
                l.hint(cleanup)
            ),
        ));
    }
    if l.options.keep_state {
        info!("run state kept in schema tsxfer of the target (--keep-state)");
    } else {
        state::drop_state(tgt).await?;
    }
    Ok(())
}

/// Tells `progress` every unit of the run, and those an earlier run or another worker
/// already copied.
pub(super) async fn plan_progress(
    progress: &Progress,
    tgt: &Target,
    book: &UnitBook,
) -> Result<()> {
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

/// The report lines of every unit done so far, whoever copied it.
pub(super) async fn unit_reports(tgt: &Target, book: &UnitBook) -> Result<Vec<UnitReport>> {
    Ok(UnitReport::by_table(state::done_units(tgt, book).await?)
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}
