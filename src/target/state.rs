//! Run state in the target database (schema `tsxfer`): the run, how far its phases got, and
//! one row per work unit. PostgreSQL is the coordinator: workers, in this process or in
//! others, claim units with `FOR UPDATE SKIP LOCKED` inside the very transaction that
//! copies the unit and marks it done.

use serde::Serialize;
use tokio_postgres::Row;

use crate::copy::UnitOutcome;
use crate::copy::checksum::Checksum;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::{Target, TargetTx};
use crate::plan::unit_book::{RecordedUnit, UnitBook};
use crate::plan::{CopyUnit, Pages, UnitKind};

/// Milestones of a run, in order; the state keeps the last one reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Milestone {
    /// Roles made, schema being restored.
    Started,
    /// Pre-data schema and TimescaleDB's catalog are on the target: units can be copied.
    Schema,
    /// Every unit is copied and sequences are set.
    Data,
    /// Indexes, constraints and triggers are built.
    PostData,
}

impl Milestone {
    pub fn name(self) -> &'static str {
        match self {
            Milestone::Started => "started",
            Milestone::Schema => "schema",
            Milestone::Data => "data",
            Milestone::PostData => "post-data",
        }
    }

    fn parse(s: &str) -> Option<Milestone> {
        [
            Milestone::Started,
            Milestone::Schema,
            Milestone::Data,
            Milestone::PostData,
        ]
        .into_iter()
        .find(|m| m.name() == s)
    }
}

/// The run recorded in a target database.
#[derive(Debug, Clone)]
pub struct RunState {
    pub source: String,
    pub source_id: String,
    pub snapshot: String,
    pub milestone: Milestone,
    pub started_at: String,
    /// What the run was started with (streams, and for a migration what it selected).
    pub options: serde_json::Value,
}

/// Unit counts by status; `in_progress` are pending units locked by a worker right now.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub pending: i64,
    pub in_progress: i64,
    pub done: i64,
    pub failed: i64,
    pub done_bytes: i64,
    pub estimated_bytes: i64,
    pub done_rows: i64,
}

/// The run state does not hold together: `what` says how.
pub fn corrupt(what: &str) -> Error {
    Error::new(
        ErrorKind::Preflight,
        format!(
            "the run state in the target (schema tsxfer) is damaged: {what}; remove it with `tsxfer clean` and start over with --restart"
        ),
    )
}

/// The recorded run, if the target has one.
pub async fn load(tgt: &Target) -> Result<Option<RunState>> {
    let exists: bool = tgt
        .query_one("SELECT to_regclass('tsxfer.run') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let rows = tgt
        .query(
            "SELECT source, source_id, snapshot, phase, started_at::text, options FROM tsxfer.run",
            &[],
        )
        .await?;
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    let phase: String = r.get(3);
    Ok(Some(RunState {
        source: r.get(0),
        source_id: r.get(1),
        snapshot: r.get(2),
        milestone: Milestone::parse(&phase).ok_or_else(|| corrupt("unknown phase"))?,
        started_at: r.get(4),
        options: r.get(5),
    }))
}

/// Records a new run and its units, in one transaction.
pub async fn create(
    tgt: &mut Target,
    source: &str,
    source_id: &str,
    snapshot: &str,
    options: serde_json::Value,
    units: &[CopyUnit],
) -> Result<()> {
    let tx = tgt.begin().await?;
    tx.execute(include_str!("../sql/state_schema.sql")).await?;
    tx.query(
        "INSERT INTO tsxfer.run (source, source_id, snapshot, options, phase) VALUES ($1, $2, $3, $4, $5)",
        &[&source, &source_id, &snapshot, &options, &Milestone::Started.name()],
    )
    .await?;
    let recorded: Vec<RecordedUnit> = (1..)
        .zip(units)
        .map(|(id, u)| RecordedUnit::of(id, u))
        .collect();
    let ids: Vec<i32> = recorded.iter().map(|r| r.id).collect();
    let kinds: Vec<&str> = recorded.iter().map(|r| r.kind.label()).collect();
    let relations: Vec<String> = units.iter().map(CopyUnit::title).collect();
    let oids: Vec<i64> = recorded.iter().map(|r| i64::from(r.oid)).collect();
    let page = |f: fn(&Pages) -> Option<i64>| -> Vec<Option<i64>> {
        recorded
            .iter()
            .map(|r| r.pages.as_ref().and_then(f))
            .collect()
    };
    let part = page(|p| Some(i64::from(p.part)));
    let parts = page(|p| Some(i64::from(p.parts)));
    let from = page(|p| Some(i64::from(p.from)));
    let to = page(|p| p.to.map(i64::from));
    let into: Vec<bool> = recorded.iter().map(|r| r.into_hypertable).collect();
    let sizes: Vec<i64> = recorded.iter().map(|r| r.estimated_bytes).collect();
    tx.query(
        "INSERT INTO tsxfer.unit (id, kind, relation, source_oid, part, parts, page_from, page_to,
                                  into_hypertable, estimated_bytes)
         SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::int8[], $5::int8[]::int[],
                              $6::int8[]::int[], $7::int8[], $8::int8[], $9::bool[], $10::int8[])",
        &[
            &ids, &kinds, &relations, &oids, &part, &parts, &from, &to, &into, &sizes,
        ],
    )
    .await?;
    tx.commit().await
}

pub async fn set_milestone(tgt: &Target, milestone: Milestone) -> Result<()> {
    tgt.query(
        "UPDATE tsxfer.run SET phase = $1, updated_at = now()",
        &[&milestone.name()],
    )
    .await?;
    Ok(())
}

pub async fn set_snapshot(tgt: &Target, snapshot: &str) -> Result<()> {
    tgt.query(
        "UPDATE tsxfer.run SET snapshot = $1, updated_at = now()",
        &[&snapshot],
    )
    .await?;
    Ok(())
}

/// Failed units go back to the queue (a rerun after a fix).
pub async fn requeue_failed(tgt: &Target) -> Result<u64> {
    let n = tgt
        .query(
            "UPDATE tsxfer.unit SET status = 'pending' WHERE status = 'failed' RETURNING id",
            &[],
        )
        .await?
        .len();
    Ok(n as u64)
}

/// A unit claimed by the calling transaction, by its id in the run state.
pub struct Claimed {
    pub id: i32,
    pub attempts: i32,
}

/// Every unit of the run as the state records it, checked to be values tsxfer could
/// have written (the state may have been edited by anyone who can write to the target).
pub async fn recorded_units(tgt: &Target) -> Result<Vec<RecordedUnit>> {
    let typed: bool = tgt
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                            WHERE attrelid = 'tsxfer.unit'::regclass AND attname = 'source_oid')",
            &[],
        )
        .await?
        .get(0);
    if !typed {
        return Err(corrupt("it was written by an earlier version of tsxfer"));
    }
    tgt.query(
        "SELECT id, kind, source_oid, part, parts, page_from, page_to, into_hypertable,
                estimated_bytes
         FROM tsxfer.unit ORDER BY id",
        &[],
    )
    .await?
    .iter()
    .map(recorded_unit)
    .collect()
}

fn recorded_unit(r: &Row) -> Result<RecordedUnit> {
    let id: i32 = r.get(0);
    let bad = |what: &str| corrupt(&format!("unit {id} has {what}"));
    let kind: String = r.get(1);
    let kind = UnitKind::from_label(&kind).ok_or_else(|| bad("an unknown kind"))?;
    let u32_of = |v: i64| u32::try_from(v).map_err(|_| bad("a value out of range"));
    let oid = u32_of(r.get(2))?;
    let field =
        |i: usize| -> Result<Option<u32>> { r.get::<_, Option<i64>>(i).map(u32_of).transpose() };
    let (part, parts, from, to) = (
        r.get::<_, Option<i32>>(3)
            .map(i64::from)
            .map(u32_of)
            .transpose()?,
        r.get::<_, Option<i32>>(4)
            .map(i64::from)
            .map(u32_of)
            .transpose()?,
        field(5)?,
        field(6)?,
    );
    let pages = match (part, parts, from) {
        (Some(part), Some(parts), Some(from)) => Some(Pages {
            part,
            parts,
            from,
            to,
        }),
        (None, None, None) if to.is_none() => None,
        _ => return Err(bad("an incomplete range of pages")),
    };
    Ok(RecordedUnit {
        id,
        oid,
        kind,
        pages,
        into_hypertable: r.get(7),
        estimated_bytes: r.get(8),
    })
}

/// In the transaction `tx`, claims the largest pending unit no other transaction holds
/// and, when that unit is estimated under `small_below` bytes and has not failed before,
/// up to `most - 1` more such units (the next ones in the same order, so no bigger than
/// it), in one round trip: they are then copied and marked done together, one
/// transaction for all. Empty when no unit is free.
///
/// The sub-select locks the unit it looks at, so the outer one, which locks in the same
/// order, takes it first; a unit another worker let go of in between may come first
/// instead, which is still correct: every unit claimed is copied in this transaction,
/// whatever its size.
pub async fn claim(tx: &TargetTx<'_>, small_below: i64, most: usize) -> Result<Vec<Claimed>> {
    let most = most.max(1);
    let rows = tx
        .simple_rows(&format!(
            "SELECT id, attempts FROM tsxfer.unit WHERE status = 'pending'
             ORDER BY estimated_bytes DESC, id
             LIMIT COALESCE((SELECT CASE WHEN estimated_bytes < {small_below} AND attempts = 0
                                         THEN {most} ELSE 1 END
                             FROM tsxfer.unit WHERE status = 'pending'
                             ORDER BY estimated_bytes DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED), 0)
             FOR UPDATE SKIP LOCKED"
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let number = |i: usize| -> Result<i32> {
                r.get(i)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| corrupt("a unit's id or attempts is not a number"))
            };
            Ok(Claimed {
                id: number(0)?,
                attempts: number(1)?,
            })
        })
        .collect()
}

/// Inside the claiming transaction: marks the units done, in one round trip (they land
/// with their data when it commits). Every value is one of tsxfer's own numbers, or the
/// worker's name quoted as a literal.
pub async fn mark_done(
    tx: &TargetTx<'_>,
    done: &[(i32, &UnitOutcome)],
    worker: &str,
) -> Result<()> {
    let or_null = |v: Option<i64>| v.map_or_else(|| "NULL".to_string(), |v| v.to_string());
    let worker = crate::quote::literal(worker);
    let mut sql = String::new();
    for (id, outcome) in done {
        let (high, low) = outcome.checksum.map(Checksum::to_parts).unzip();
        let seconds = if outcome.seconds.is_finite() {
            outcome.seconds
        } else {
            0.0
        };
        sql.push_str(&format!(
            "UPDATE tsxfer.unit SET status = 'done', rows = {rows}, bytes = {bytes},
                    seconds = {seconds:?}::float8, done_by = {worker}, finished_at = now(),
                    last_error = NULL, checksum_high = {high}, checksum_low = {low}
             WHERE id = {id};\n",
            rows = outcome.rows as i64,
            bytes = outcome.bytes as i64,
            high = or_null(high),
            low = or_null(low),
        ));
    }
    tx.execute(&sql).await
}

/// After a failed attempt (its transaction rolled back): counts the attempt, keeps the
/// error, and marks the unit failed when it will not be tried again. Returns the attempts.
pub async fn record_failure(tgt: &Target, id: i32, error: &str, give_up: bool) -> Result<i32> {
    let row = tgt
        .query_one(
            "UPDATE tsxfer.unit SET attempts = attempts + 1, last_error = $2,
                    status = CASE WHEN $3 THEN 'failed' ELSE status END
             WHERE id = $1 RETURNING attempts",
            &[&id, &error, &give_up],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn counts(tgt: &Target) -> Result<Counts> {
    // Pending units that SKIP LOCKED cannot see are held by a worker right now. The probe
    // holds the free ones only while its statement runs, and writes nothing.
    let r = tgt
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'pending'),
                    count(*) FILTER (WHERE status = 'done'),
                    count(*) FILTER (WHERE status = 'failed'),
                    COALESCE(sum(bytes) FILTER (WHERE status = 'done'), 0)::int8,
                    COALESCE(sum(estimated_bytes), 0)::int8,
                    COALESCE(sum(rows) FILTER (WHERE status = 'done'), 0)::int8,
                    (SELECT count(*) FROM (SELECT id FROM tsxfer.unit WHERE status = 'pending'
                                           FOR UPDATE SKIP LOCKED) free)
             FROM tsxfer.unit",
            &[],
        )
        .await?;
    let pending: i64 = r.get(0);
    Ok(Counts {
        pending,
        in_progress: pending - r.get::<_, i64>(6),
        done: r.get(1),
        failed: r.get(2),
        done_bytes: r.get(3),
        estimated_bytes: r.get(4),
        done_rows: r.get(5),
    })
}

/// Every unit that is done (by id), with what copying it did (for verification and the
/// report).
pub async fn done_outcomes(tgt: &Target) -> Result<Vec<(i32, UnitOutcome)>> {
    Ok(tgt
        .query(
            "SELECT id, rows, bytes, seconds, checksum_high, checksum_low
             FROM tsxfer.unit WHERE status = 'done' ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            let rows: i64 = r.get(1);
            let bytes: i64 = r.get(2);
            (
                r.get(0),
                UnitOutcome {
                    rows: rows.max(0) as u64,
                    bytes: bytes.max(0) as u64,
                    seconds: r.get(3),
                    blocked_seconds: 0.0,
                    checksum: match (r.get(4), r.get(5)) {
                        (Some(high), Some(low)) => Some(Checksum::from_parts(high, low)),
                        _ => None,
                    },
                },
            )
        })
        .collect())
}

/// [`done_outcomes`], each with its unit as `book` has it.
pub async fn done_units(tgt: &Target, book: &UnitBook) -> Result<Vec<(CopyUnit, UnitOutcome)>> {
    done_outcomes(tgt)
        .await?
        .into_iter()
        .map(|(id, outcome)| {
            book.get(id)
                .map(|u| (u.clone(), outcome))
                .ok_or_else(|| corrupt(&format!("unit {id} is not one of the run's units")))
        })
        .collect()
}

/// TimescaleDB's `timescaledb_pre_restore()` or `timescaledb_post_restore()` (`which`),
/// schema-qualified: a restore's search path may not find it.
pub async fn restoring_mode(tgt: &Target, schema: &str, which: &str) -> Result<()> {
    tgt.execute(&format!("SELECT {}.{which}()", crate::quote::ident(schema)))
        .await
        .map_err(|e| e.context(format!("calling {which}() on the target")))
}

/// What one worker copied: (units, rows, bytes).
pub async fn done_by(tgt: &Target, worker: &str) -> Result<(i64, i64, i64)> {
    let r = tgt
        .query_one(
            "SELECT count(*), COALESCE(sum(rows), 0)::int8, COALESCE(sum(bytes), 0)::int8
             FROM tsxfer.unit WHERE status = 'done' AND done_by = $1",
            &[&worker],
        )
        .await?;
    Ok((r.get(0), r.get(1), r.get(2)))
}

/// Failed units and their errors.
pub async fn failures(tgt: &Target) -> Result<Vec<(String, i32, String)>> {
    Ok(tgt
        .query(
            "SELECT relation, attempts, COALESCE(last_error, '') FROM tsxfer.unit
             WHERE status = 'failed' OR (status = 'pending' AND last_error IS NOT NULL)
             ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Drops the run state.
pub async fn drop_state(tgt: &Target) -> Result<()> {
    tgt.execute("DROP SCHEMA IF EXISTS tsxfer CASCADE").await
}
