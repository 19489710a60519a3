//! `tsxfer status`, `tsxfer clean` and `tsxfer plan`: reading a run, removing its state,
//! describing one without starting it.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::migrate::MigrateOptions;
use super::{connect_both, preflight, refusal};
use crate::error::{Error, ErrorKind, Result};
use crate::objects::{roles, schema};
use crate::pg::conninfo::ConnInfo;
use crate::pg::retry::Retry;
use crate::pg::{Source, Target};
use crate::plan::{self, human_bytes};
use crate::quote::ident;
use crate::source::{catalog, convert, extract, filter};
use crate::target::state;

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
    let verdict = preflight::check(&src, &tgt, &opts.load.target, false).await;
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
    if let Err(e) = filter::check_table_dependencies(&src, &tgt, &opts.filters).await {
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
    let tools = schema::find_tools(opts.load.pg_bin_dir.as_deref(), facts.major());
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
    let _ = writeln!(out, "target: {}", opts.load.target.describe());
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
        let _ = writeln!(
            out,
            "  (exists on the target, left as it is but for its settings in this database) {}",
            ident(r)
        );
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
            streams: opts.load.jobs,
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
        opts.load.jobs
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
