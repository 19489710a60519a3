//! The whole migration, phase by phase: preflight, roles, pre-data schema, TimescaleDB
//! catalog, data, post-data, owners and grants, verify. Whatever happens after
//! `timescaledb_pre_restore()`, `timescaledb_post_restore()` runs before tsxfer exits.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::catalog;
use crate::conninfo::ConnInfo;
use crate::copy;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::{Source, Target};
use crate::plan::{self, CopyUnit, UnitKind, human_bytes};
use crate::preflight;
use crate::privileges;
use crate::progress::Progress;
use crate::quote::{dump_pattern, ident};
use crate::report::{PhaseTime, Report, UnitReport};
use crate::roles;
use crate::schema::{self, Archives, CHUNK_BATCH};

/// Everything a migration needs to know, validated.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    pub source: ConnInfo,
    pub target: ConnInfo,
    pub jobs: usize,
    pub buffer_size: usize,
    pub work_dir: Option<PathBuf>,
    pub pg_bin_dir: Option<PathBuf>,
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

/// Runs the migration until it ends or `interrupt` completes, then cleans up. The report
/// is returned in every case.
pub async fn run(
    opts: &MigrateOptions,
    progress: Arc<Progress>,
    interrupt: impl Future<Output = ()>,
) -> (Report, Result<()>) {
    let mut report = Report {
        source: opts.source.describe(),
        target: opts.target.describe(),
        jobs: opts.jobs,
        ..Report::default()
    };
    let mut cleanup = Cleanup::default();
    let mut phases = Phases {
        started: Instant::now(),
        current: None,
        done: Vec::new(),
        progress,
    };
    let result = tokio::select! {
        r = migrate(opts, &mut report, &mut cleanup, &mut phases) => r,
        () = interrupt => Err(Error::new(
            ErrorKind::Interrupted,
            "interrupted: in-flight units were rolled back; the target holds a partial migration, drop and recreate the target database before running again",
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
        match leave_restoring_mode(&opts.target, &schema).await {
            Ok(()) => info!("the target left TimescaleDB's restoring mode"),
            Err(e) => report.warnings.push(e.to_string()),
        }
    }
    report.phases = phases.done;
    report.seconds = phases.started.elapsed().as_secs_f64();
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
        tgt.execute(&sql).await
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

async fn migrate(
    opts: &MigrateOptions,
    report: &mut Report,
    cleanup: &mut Cleanup,
    phases: &mut Phases,
) -> Result<()> {
    phases.enter("preflight");
    // Nothing has been changed yet: any failure here is a refusal.
    let refusal = |e: Error| e.with_kind(ErrorKind::Preflight);
    let src = Source::connect(&opts.source, "coordinator")
        .await
        .map_err(refusal)?;
    let tgt = Target::connect(&opts.target, "coordinator")
        .await
        .map_err(refusal)?;
    let pre = preflight::check(&src, &tgt, false).await.map_err(refusal)?;
    report.warnings.extend(pre.warnings.iter().cloned());
    let tools = schema::find_tools(opts.pg_bin_dir.as_deref(), pre.source.major())?;
    let timescale = pre.timescaledb_schema.clone();

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
    let mut units = plan::order_units(catalog::copy_units(&src, &reader, &pre.source).await?);
    if needs_null_placeholder_rewrite(&pre.target) {
        let mut rewritten = 0;
        for u in units
            .iter_mut()
            .filter(|u| u.kind == UnitKind::CompressedChunk)
        {
            u.null_placeholders = true;
            rewritten += 1;
        }
        if rewritten > 0 {
            report.rewrites.push(format!(
                "{rewritten} compressed chunk(s): TimescaleDB's \"all values NULL\" placeholder sent as NULL (TimescaleDB 2.19 cannot load the placeholder it writes, timescaledb#8893; it reads NULL there the same way)"
            ));
        }
    }
    let total_bytes: i64 = units.iter().map(|u| u.estimated_bytes).sum();
    let sequences = catalog::sequence_values(&src).await?;
    let matviews = catalog::populated_matviews(&src).await?;
    info!(
        "{} units to copy, about {}",
        units.len(),
        human_bytes(total_bytes)
    );

    phases.enter("roles");
    let (source_roles, memberships, readable) = roles::read_source_roles(&src).await?;
    let target_roles = roles::target_roles(&tgt).await?;
    let role_plan = roles::plan_roles(
        &source_roles,
        &memberships,
        &target_roles,
        &pre.target.login,
        &pre.target.dbname,
        readable,
    );
    report
        .warnings
        .extend(roles::apply_roles(&tgt, &role_plan).await?);
    report.roles_created = role_plan.creates.iter().map(|(r, _)| r.clone()).collect();
    report.roles_existing = role_plan.existing.clone();
    report.roles_needing_password = role_plan.need_password.clone();
    report.rewrites.extend(role_plan.rewrites.iter().cloned());
    let managed: BTreeSet<String> = role_plan.mapped_to_target_user.iter().cloned().collect();
    let source_privileges = privileges::read(&src).await?;
    let privilege_plan = privileges::plan(&source_privileges, &managed, &pre.target.login);
    report
        .rewrites
        .extend(privilege_plan.rewrites.iter().cloned());
    let (granted, warnings) =
        privileges::acquire_roles(&tgt, &pre.target.login, &privilege_plan.acting_roles).await?;
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

    phases.enter("schema dump");
    let work = match &opts.work_dir {
        Some(d) => tempfile::Builder::new().prefix("tsxfer-").tempdir_in(d),
        None => tempfile::Builder::new().prefix("tsxfer-").tempdir(),
    }
    .map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("cannot make a working directory: {e}"),
        )
    })?;
    let archives = Archives {
        tools,
        dir: work.path().to_path_buf(),
    };
    let mut main_args: Vec<String> = Vec::new();
    let mut chunk_archives = Vec::new();
    for schema in catalog::user_schemas(&src).await? {
        main_args.push(format!("--exclude-table-data={}.*", dump_pattern(&schema)));
    }
    if pre.source.extension("timescaledb").is_some() {
        let chunks = catalog::chunk_tables(&src).await?;
        let others = catalog::non_chunk_relation_names(&src).await?;
        for p in schema::chunk_exclusion_patterns(&chunks, &others) {
            main_args.push(format!("--exclude-table={p}"));
        }
        for (i, batch) in chunks
            .chunks(pre.source.lock_batch(CHUNK_BATCH))
            .enumerate()
        {
            let mut args = vec!["--schema-only".to_string()];
            args.extend(
                batch
                    .iter()
                    .map(|(s, n)| format!("--table={}.{}", dump_pattern(s), dump_pattern(n))),
            );
            let file = format!("chunks-{i:04}.dump");
            chunk_archives.push(archives.dump(&opts.source, &snapshot, &file, args).await?);
        }
        if !chunks.is_empty() {
            info!(
                "dumped the DDL of {} chunks in {} batch(es)",
                chunks.len(),
                chunk_archives.len()
            );
        }
    }
    let main = archives
        .dump(&opts.source, &snapshot, "main.dump", main_args)
        .await?;

    if let Some(schema) = &timescale {
        tgt.execute(&format!(
            "SELECT {}.timescaledb_pre_restore()",
            ident(schema)
        ))
        .await
        .map_err(|e| e.context("calling timescaledb_pre_restore() on the target"))?;
        cleanup.restoring = Some(schema.clone());
        info!("the target is in TimescaleDB's restoring mode");
    }

    phases.enter("schema");
    let dropped =
        restore_section(&archives, opts, &main, &chunk_archives, Section::PreData).await?;
    report.rewrites.extend(dropped);
    let data_toc = archives.toc(&main, Some("data")).await?;
    if timescale.is_some() {
        let refs = catalog_references(&tgt).await?;
        let entries = schema::catalog_entries(&data_toc, &refs);
        archives
            .restore(
                &opts.target,
                &main,
                &entries,
                1,
                true,
                "TimescaleDB catalog restore",
            )
            .await?;
        info!("TimescaleDB catalog loaded ({} entries)", entries.len());
    }

    phases.enter("data");
    phases.progress.planned(&units);
    let (unit_reports, failure) =
        data_pass(opts, &snapshot, units.clone(), phases.progress.clone()).await;
    report.units = unit_reports;
    if let Some(e) = failure {
        return Err(e);
    }
    src.end().await?;
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

    phases.enter("post-data");
    let dropped =
        restore_section(&archives, opts, &main, &chunk_archives, Section::PostData).await?;
    report.rewrites.extend(dropped);
    let refreshes: Vec<String> = matviews
        .iter()
        .map(|m| format!("REFRESH MATERIALIZED VIEW {m}"))
        .collect();
    report
        .warnings
        .extend(privileges::run_and_summarize(&tgt, &refreshes, "materialized view refresh").await);

    phases.enter("owners and grants");
    let undo = privileges::lend_schema_create(&tgt, &privilege_plan.schema_owners).await?;
    let refused = privileges::run_batches(&tgt, &privilege_plan.owners).await;
    report.warnings.extend(
        privileges::summarize("owner", &privilege_plan.owners, &refused)
            .into_iter()
            .map(|w| format!("{w}; those objects stay with {} and their intended owners get all privileges on them instead", ident(&pre.target.login))),
    );
    let fallbacks: Vec<String> = refused
        .iter()
        .filter_map(|(i, _)| privilege_plan.owner_fallbacks[*i].clone())
        .collect();
    report.warnings.extend(
        privileges::run_and_summarize(&tgt, &fallbacks, "owner rights instead of ownership").await,
    );
    report.warnings.extend(
        privileges::run_and_summarize(&tgt, &undo, "returning a lent schema privilege").await,
    );
    report
        .warnings
        .extend(privileges::run_and_summarize(&tgt, &privilege_plan.grants, "grant").await);

    if let Some(schema) = &timescale {
        tgt.execute(&format!(
            "SELECT {}.timescaledb_post_restore()",
            ident(schema)
        ))
        .await
        .map_err(|e| e.context("calling timescaledb_post_restore() on the target"))?;
        cleanup.restoring = None;
        info!("the target left TimescaleDB's restoring mode");
    }
    phases.enter("analyze");
    report.warnings.extend(analyze(opts, &tgt).await?);

    phases.enter("verify");
    let mismatches = verify(opts, &units, &mut report.units).await?;
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
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Section {
    PreData,
    PostData,
}

/// Restores one section of the main archive, then of every chunk archive. Pre-data runs
/// on one connection (each statement its own transaction); post-data (indexes,
/// constraints, triggers) over the job pool. Returns the entries left out, with why.
async fn restore_section(
    archives: &Archives,
    opts: &MigrateOptions,
    main: &std::path::Path,
    chunk_archives: &[PathBuf],
    section: Section,
) -> Result<Vec<String>> {
    let (name, jobs) = match section {
        Section::PreData => ("pre-data", 1),
        Section::PostData => ("post-data", opts.jobs),
    };
    let mut dropped = Vec::new();
    for archive in std::iter::once(main).chain(chunk_archives.iter().map(PathBuf::as_path)) {
        let toc = archives.toc(archive, Some(name)).await?;
        let (entries, left_out) = match section {
            Section::PreData => schema::pre_data_entries(&toc),
            Section::PostData => schema::post_data_entries(&toc),
        };
        dropped.extend(left_out);
        archives
            .restore(
                &opts.target,
                archive,
                &entries,
                jobs,
                false,
                &format!("{name} restore"),
            )
            .await?;
    }
    Ok(dropped)
}

/// TimescaleDB 2.19 writes a one-byte placeholder for a compressed column whose values
/// are all NULL but its input and receive functions refuse it; later releases read it.
fn needs_null_placeholder_rewrite(target: &catalog::ServerFacts) -> bool {
    target
        .extension("timescaledb")
        .is_some_and(|e| e.version.starts_with("2.19."))
}

/// Foreign keys among TimescaleDB's catalog tables on the target: table → referenced.
async fn catalog_references(tgt: &Target) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let rows = tgt
        .query(
            "SELECT cn.nspname || '.' || c.relname, rn.nspname || '.' || r.relname
             FROM pg_catalog.pg_constraint k
             JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
             JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
             JOIN pg_catalog.pg_class r ON r.oid = k.confrelid
             JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
             WHERE k.contype = 'f' AND cn.nspname IN ('_timescaledb_catalog', '_timescaledb_config')",
            &[],
        )
        .await?;
    let mut refs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in rows {
        refs.entry(r.get(0)).or_default().insert(r.get(1));
    }
    Ok(refs)
}

/// Shared by the copy workers of one data pass.
struct Pool {
    queue: Mutex<VecDeque<CopyUnit>>,
    stop: AtomicBool,
    failure: Mutex<Option<Error>>,
    done: Mutex<Vec<UnitReport>>,
    progress: Arc<Progress>,
}

impl Pool {
    fn next(&self) -> Option<CopyUnit> {
        if self.stop.load(Ordering::SeqCst) {
            return None;
        }
        self.queue.lock().expect("queue lock").pop_front()
    }

    fn fail(&self, e: Error) {
        self.stop.store(true, Ordering::SeqCst);
        let mut f = self.failure.lock().expect("failure lock");
        if f.is_none() {
            *f = Some(e);
        }
    }
}

async fn copy_worker(opts: MigrateOptions, snapshot: String, pool: Arc<Pool>, n: usize) {
    let role = format!("copy {n}");
    let connected = async {
        let src = Source::connect(&opts.source, &role).await?;
        let tgt = Target::connect(&opts.target, &role).await?;
        tgt.execute("SET synchronous_commit = off").await?;
        Ok::<_, Error>((src, tgt))
    }
    .await;
    let (src, tgt) = match connected {
        Ok(c) => c,
        Err(e) => return pool.fail(e),
    };
    while let Some(unit) = pool.next() {
        pool.progress.unit_started(n, &unit);
        let copied = copy::copy_unit(
            &src,
            &tgt,
            &unit,
            &snapshot,
            opts.buffer_size,
            &pool.progress,
            n,
        )
        .await;
        match copied {
            Ok(outcome) => {
                pool.progress.unit_finished(n, &unit, &outcome);
                pool.done
                    .lock()
                    .expect("done lock")
                    .push(UnitReport::new(&unit, outcome));
            }
            Err(e) => {
                pool.progress.unit_failed(n, &unit, false);
                return pool.fail(e);
            }
        }
    }
}

/// Copies every unit over `opts.jobs` streams, largest first. Stops taking new units at the
/// first failure; units in flight finish.
async fn data_pass(
    opts: &MigrateOptions,
    snapshot: &str,
    units: Vec<CopyUnit>,
    progress: Arc<Progress>,
) -> (Vec<UnitReport>, Option<Error>) {
    let count = units.len();
    let workers = opts.jobs.min(count).max(1);
    let pool = Arc::new(Pool {
        queue: Mutex::new(units.into()),
        stop: AtomicBool::new(false),
        failure: Mutex::new(None),
        done: Mutex::new(Vec::new()),
        progress,
    });
    let mut set = JoinSet::new();
    for n in 0..workers {
        set.spawn(copy_worker(
            opts.clone(),
            snapshot.to_string(),
            pool.clone(),
            n,
        ));
    }
    while let Some(joined) = set.join_next().await {
        if let Err(e) = joined {
            pool.fail(Error::new(
                ErrorKind::Internal,
                format!("a copy worker died: {e}"),
            ));
        }
    }
    let done = std::mem::take(&mut *pool.done.lock().expect("done lock"));
    let failure = pool.failure.lock().expect("failure lock").take();
    if failure.is_some() {
        warn!("data pass stopped after {} of {count} units", done.len());
    }
    (done, failure)
}

/// ANALYZE of every user table: leaves in parallel over the job pool, then the parents
/// of inheritance trees one at a time (analyzing a parent locks all its children at once,
/// which a server with a small lock table may refuse: that is a warning, not a failure).
async fn analyze(opts: &MigrateOptions, tgt: &Target) -> Result<Vec<String>> {
    let rows = tgt
        .query(include_str!("sql/target_analyze.sql"), &[])
        .await?;
    let (parents, leaves): (Vec<_>, Vec<_>) = rows.iter().partition(|r| r.get::<_, bool>(1));
    let leaves: Vec<String> = leaves.iter().map(|r| r.get(0)).collect();
    let lanes = opts.jobs.min(leaves.len()).max(1);
    let mut set = JoinSet::new();
    for lane in 0..lanes {
        let mine: Vec<String> = leaves.iter().skip(lane).step_by(lanes).cloned().collect();
        let target = opts.target.clone();
        set.spawn(async move {
            let tgt = Target::connect(&target, "analyze").await?;
            for rel in mine {
                tgt.execute(&format!("ANALYZE {rel}")).await?;
            }
            Ok::<_, Error>(())
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.map_err(|e| {
            Error::new(ErrorKind::Internal, format!("an analyze worker died: {e}"))
        })??;
    }
    let mut warnings = Vec::new();
    for r in parents {
        let rel: String = r.get(0);
        if let Err(e) = tgt.execute(&format!("ANALYZE {rel}")).await {
            warnings.push(format!(
                "ANALYZE {rel} (statistics over all its children) skipped: {e}; run it when the server has room for that many locks"
            ));
        }
    }
    Ok(warnings)
}

/// Counts every unit's rows on the target and compares them with what was read from the
/// source snapshot. Returns one line per mismatch.
async fn verify(
    opts: &MigrateOptions,
    units: &[CopyUnit],
    reports: &mut [UnitReport],
) -> Result<Vec<String>> {
    let by_relation: BTreeMap<String, &CopyUnit> =
        units.iter().map(|u| (u.relation(), u)).collect();
    let mut work: Vec<(usize, String, u64)> = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        let unit = by_relation[&r.relation];
        work.push((i, unit.count_sql(), r.outcome.rows));
    }
    let lanes = opts.jobs.min(work.len()).max(1);
    let mut set = JoinSet::new();
    for lane in 0..lanes {
        let mine: Vec<(usize, String, u64)> =
            work.iter().skip(lane).step_by(lanes).cloned().collect();
        let target = opts.target.clone();
        set.spawn(async move {
            let tgt = Target::connect(&target, "verify").await?;
            let mut counts = Vec::new();
            for (i, sql, _) in mine {
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
            reports[i].target_rows = Some(n);
            let expected = work[i].2;
            if n < 0 || n as u64 != expected {
                mismatches.push(format!(
                    "{} {}: {expected} rows in the source snapshot, {n} on the target",
                    reports[i].kind.label(),
                    reports[i].relation
                ));
            }
        }
    }
    mismatches.sort();
    Ok(mismatches)
}

/// What `tsxfer plan` prints: the checks' verdict, the roles, and every unit in the order
/// the pool would take it. Changes nothing on either side.
pub async fn describe_plan(opts: &MigrateOptions) -> Result<String> {
    use std::fmt::Write as _;
    let refusal = |e: Error| e.with_kind(ErrorKind::Preflight);
    let src = Source::connect(&opts.source, "plan")
        .await
        .map_err(refusal)?;
    let tgt = Target::connect(&opts.target, "plan")
        .await
        .map_err(refusal)?;
    let mut out = String::new();
    let verdict = preflight::check(&src, &tgt, false).await;
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
            u.relation(),
            if u.binary { "" } else { "  (text COPY)" }
        );
    }
    Ok(out)
}
