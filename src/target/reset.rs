//! `--restart`: removes what an earlier run put in the target database, so the run can
//! start over on an empty database. Roles stay (they are cluster-wide and may serve other
//! databases); the extensions a superuser created stay.

use tracing::info;

use crate::error::{Error, ErrorKind, Result};
use crate::pg::Target;
use crate::target::state;

/// Drops the user objects of the target database, its large objects and the run state.
/// Returns warnings; fails if the database is still not empty afterwards.
pub async fn empty_target(tgt: &Target) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    // A killed run may have left TimescaleDB in restoring mode, where dropping a
    // hypertable would leave its catalog rows behind.
    let ts: Vec<String> = tgt
        .query(
            "SELECT n.nspname::text FROM pg_catalog.pg_extension e
             JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
             WHERE e.extname = 'timescaledb'",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(schema) = ts.first() {
        state::restoring_mode(tgt, schema, "timescaledb_post_restore")
            .await
            .map_err(|e| e.context("before --restart"))?;
    }
    // Dropping one object can drop others (CASCADE); go round until nothing is left to
    // drop or a round drops nothing.
    for round in 0..10 {
        let statements: Vec<String> = tgt
            .query(include_str!("../sql/target_droppable.sql"), &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if statements.is_empty() {
            break;
        }
        let mut dropped = 0;
        let mut last_error = None;
        for stmt in &statements {
            match tgt.execute(stmt).await {
                Ok(()) => dropped += 1,
                Err(e) => last_error = Some(format!("{stmt}: {e}")),
            }
        }
        info!(
            "--restart round {round}: {dropped} of {} drops",
            statements.len()
        );
        if dropped == 0 {
            warnings.push(format!(
                "--restart could not drop everything: {}",
                last_error.unwrap_or_default()
            ));
            break;
        }
    }
    tgt.execute("SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata")
        .await?;
    state::drop_state(tgt).await?;
    let left: i64 = tgt
        .query_one(include_str!("../sql/target_user_tables.sql"), &[])
        .await?
        .get(0);
    if left > 0 {
        return Err(Error::new(
            ErrorKind::Preflight,
            format!(
                "--restart left {left} table(s) it could not drop in the target; drop and recreate the target database"
            ),
        ));
    }
    Ok(warnings)
}
