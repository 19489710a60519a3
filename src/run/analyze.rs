//! The analyze phase: statistics for what was loaded, small tables many to a statement.
//! The tables the verify phase reads back are left to it: each lane there analyzes a
//! batch of them just before it counts them, on the same connection, so the count finds
//! the tables already open in that session (counting thousands of small chunks on fresh
//! sessions costs more than the counts themselves).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::error::{Error, ErrorKind, Result};
use crate::pg::Target;
use crate::pg::conninfo::ConnInfo;

/// Tables one ANALYZE statement of the analyze phase takes.
pub(super) const ANALYZE_BATCH: usize = 50;

/// A table by (schema, name), as a unit names it.
pub(super) type TableName = (String, String);

/// What needs ANALYZE once the data is in: every user table the copy pool did not
/// analyze as it loaded it (see sql/target_analyze.sql).
pub(super) struct Needed {
    /// Tables that are not inheritance parents (each locks only itself), as SQL names.
    leaves: Vec<(TableName, String)>,
    /// Parents of inheritance trees, less the hypertables (below).
    parents: Vec<String>,
}

impl Needed {
    pub(super) async fn read(tgt: &Target, on_timescaledb: bool) -> Result<Needed> {
        let rows = tgt
            .query(include_str!("../sql/target_analyze.sql"), &[])
            .await?;
        // ANALYZE of a hypertable analyzes every chunk again (TimescaleDB expands it),
        // and the chunks are analyzed one by one: leave hypertables out.
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
        let mut needed = Needed {
            leaves: Vec::new(),
            parents: Vec::new(),
        };
        for r in &rows {
            let relation: String = r.get("relation");
            if !r.get::<_, bool>("parent") {
                needed
                    .leaves
                    .push(((r.get("schema_name"), r.get("table_name")), relation));
            } else if !hypertables.contains(&relation) {
                needed.parents.push(relation);
            }
        }
        Ok(needed)
    }

    /// Takes the leaves among `tables` out, for the verify phase to analyze as it reads
    /// them; returns those it took.
    pub(super) fn take(
        &mut self,
        tables: impl IntoIterator<Item = TableName>,
    ) -> HashSet<TableName> {
        let wanted: HashSet<TableName> = tables.into_iter().collect();
        let (taken, left): (Vec<_>, Vec<_>) = std::mem::take(&mut self.leaves)
            .into_iter()
            .partition(|(t, _)| wanted.contains(t));
        self.leaves = left;
        taken.into_iter().map(|(t, _)| t).collect()
    }
}

/// ANALYZE of what `needed` holds: leaves in parallel over the job pool, then the
/// parents of inheritance trees one at a time (analyzing a parent locks all its children
/// at once, which a server with a small lock table may refuse: that is a warning, not a
/// failure).
pub(super) async fn analyze(
    target: &ConnInfo,
    jobs: usize,
    tgt: &Target,
    needed: Needed,
) -> Result<Vec<String>> {
    let leaves: Vec<String> = needed.leaves.into_iter().map(|(_, sql)| sql).collect();
    let lanes = jobs.min(leaves.len());
    let queue = Arc::new(std::sync::Mutex::new(leaves));
    let mut set = JoinSet::new();
    for _ in 0..lanes {
        let queue = queue.clone();
        let target = target.clone();
        set.spawn(async move {
            let tgt = Target::connect(&target, "analyze").await?;
            let mut refused = Vec::new();
            loop {
                let batch: Vec<String> = {
                    let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                    let from = q.len().saturating_sub(ANALYZE_BATCH);
                    q.split_off(from)
                };
                if batch.is_empty() {
                    break;
                }
                refused.extend(analyze_tables(&tgt, &batch).await?);
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
    for rel in needed.parents {
        if let Err(e) = tgt.execute(&format!("ANALYZE {rel}")).await {
            warnings.push(format!(
                "ANALYZE {rel} (statistics over all its children) skipped: {e}; run it when the server has room for that many locks"
            ));
        }
    }
    Ok(warnings)
}

/// ANALYZE of `tables` in one statement (one round trip); when the server declines one
/// of them, each alone, so the others still get statistics. Returns a warning for each
/// table the server declined.
pub(super) async fn analyze_tables(tgt: &Target, tables: &[String]) -> Result<Vec<String>> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    match tgt.execute(&format!("ANALYZE {}", tables.join(", "))).await {
        Err(e) if server_refused(&e) => {}
        other => return other.map(|_| Vec::new()),
    }
    let mut refused = Vec::new();
    for rel in tables {
        match tgt.execute(&format!("ANALYZE {rel}")).await {
            Err(e) if server_refused(&e) => refused.push(format!(
                "ANALYZE {rel} failed on the target ({e}); its rows are all there, but it has no statistics until ANALYZE works on it"
            )),
            other => other?,
        }
    }
    Ok(refused)
}

/// Whether `e` is the server declining a statement (its SQLSTATE says so: the error is
/// not a lost connection, a shutdown or a lack of resources, which fail the run), such as
/// TimescaleDB 2.19 failing to ANALYZE hypercore chunks on any server (42704).
pub(super) fn server_refused(e: &Error) -> bool {
    e.kind() == ErrorKind::Schema && !e.is_retryable()
}
