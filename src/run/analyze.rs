//! The analyze phase: statistics for what was loaded, small tables many to a statement.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::error::{Error, ErrorKind, Result};
use crate::pg::Target;
use crate::pg::conninfo::ConnInfo;

/// Tables one ANALYZE statement of the analyze phase takes.
pub(super) const ANALYZE_BATCH: usize = 50;

/// ANALYZE of every user table the copy pool did not analyze as it loaded it (see
/// sql/target_analyze.sql): leaves in parallel over the job pool, then the parents of
/// inheritance trees one at a time (analyzing a parent locks all its children at once,
/// which a server with a small lock table may refuse: that is a warning, not a failure).
pub(super) async fn analyze(
    target: &ConnInfo,
    jobs: usize,
    tgt: &Target,
    on_timescaledb: bool,
) -> Result<Vec<String>> {
    let rows = tgt
        .query(include_str!("../sql/target_analyze.sql"), &[])
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
pub(super) fn server_refused(e: &Error) -> bool {
    e.kind() == ErrorKind::Schema && !e.is_retryable()
}
