//! The DDL of the chunk tables, generated from the source's catalog instead of dumped:
//! two set-based queries under the run's snapshot give every kept chunk's statements as
//! `pg_dump --schema-only` writes them (sql/source_chunk_pre_data.sql,
//! sql/source_chunk_post_data.sql), and the target gets them many to a round trip, over
//! the jobs' connections. A chunk's table is made with the pre-data, its indexes,
//! constraints and triggers with the post-data, as pg_restore did from the chunk archives
//! the earlier versions dumped (a dump of theirs is still restored that way).
//!
//! Owners and grants are not here: they are applied with every other object's
//! ([`crate::objects::privileges`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::pg::conninfo::ConnInfo;
use crate::pg::{Source, Target};
use crate::quote;

/// At most this many statements go to the target in one round trip (one transaction).
const STATEMENTS_PER_TRIP: usize = 400;
/// At most this many chunks' statements go in one round trip: a transaction locks each
/// table it creates or indexes until it commits, and the jobs' transactions share the
/// target's lock table.
const CHUNKS_PER_TRIP: usize = 100;

/// One post-data object of a chunk: an index, a constraint or a trigger, with what
/// follows it (its comment, a clustered or replica identity mark).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostDataObject {
    /// The object's OID on the source.
    pub oid: u32,
    /// How sql/target_post_data_present.sql names the object once it is on the target.
    pub present_as: String,
    pub statements: Vec<String>,
}

/// One chunk table's DDL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkTableDdl {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// The tables it inherits from (its hypertable), as INHERITS names them; empty for a
    /// compressed chunk's table, which inherits from none.
    pub inherits: String,
    /// The table, its column settings, replica identity, forced row security, comments.
    pub pre_data: Vec<String>,
    pub post_data: Vec<PostDataObject>,
}

impl ChunkTableDdl {
    /// The table as `schema.name`, quoted.
    pub fn relation(&self) -> String {
        quote::qualified(&self.schema, &self.name)
    }
}

/// The DDL of every chunk table a run keeps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkDdl {
    pub tables: Vec<ChunkTableDdl>,
}

/// The chunk tables `oids` read inside the run's snapshot (search_path pg_catalog): their
/// tables from `src`, their indexes, constraints and triggers from `beside`, a second
/// session in the same snapshot, at the same time; two queries whatever their number.
/// Constants in expressions come out as pg_dump writes them (ISO dates, full float
/// precision): these settings last until the snapshot's transactions end, and tsxfer reads
/// nothing else as text there.
pub async fn read(src: &Source, beside: &Source, oids: &[u32]) -> Result<ChunkDdl> {
    if oids.is_empty() {
        return Ok(ChunkDdl::default());
    }
    let oids: Vec<u32> = oids.to_vec();
    let pre = async {
        pg_dump_text(src).await?;
        src.query(include_str!("../sql/source_chunk_pre_data.sql"), &[&oids])
            .await
    };
    let post = async {
        pg_dump_text(beside).await?;
        beside
            .query(include_str!("../sql/source_chunk_post_data.sql"), &[&oids])
            .await
    };
    let (pre, rows) = futures_util::future::try_join(pre, post).await?;
    let mut tables: Vec<ChunkTableDdl> = pre
        .iter()
        .map(|r| ChunkTableDdl {
            oid: r.get("oid"),
            schema: r.get("schema_name"),
            name: r.get("table_name"),
            inherits: r.get("inherits"),
            pre_data: r.get("statements"),
            post_data: Vec::new(),
        })
        .collect();
    let mut at = 0;
    for r in &rows {
        let chunk: u32 = r.get("chunk");
        let statements: Vec<Option<String>> = r.get("statements");
        let present_as: String = r.get("present_as");
        // A definition the server cannot print is an object dropped since the snapshot.
        let Some(statements) = statements.into_iter().collect::<Option<Vec<String>>>() else {
            return Err(gone(&present_as));
        };
        // Both lists are in chunk OID order.
        while at < tables.len() && tables[at].oid < chunk {
            at += 1;
        }
        let Some(table) = tables.get_mut(at).filter(|t| t.oid == chunk) else {
            return Err(gone(&present_as));
        };
        table.post_data.push(PostDataObject {
            oid: r.get("oid"),
            present_as,
            statements,
        });
    }
    tables.sort_by_key(|t| t.oid);
    Ok(ChunkDdl { tables })
}

/// Sets the text output of dates, intervals and floats as pg_dump's, for the rest of
/// `src`'s transaction.
async fn pg_dump_text(src: &Source) -> Result<()> {
    src.query(
        "SELECT set_config('datestyle', 'ISO', true), set_config('intervalstyle', 'postgres', true),
                set_config('extra_float_digits', '3', true)",
        &[],
    )
    .await?;
    Ok(())
}

fn gone(what: &str) -> Error {
    Error::new(
        ErrorKind::Schema,
        format!(
            "the definition of {what} could not be read: it was dropped on the source after the run's snapshot was taken (a retention policy?); run again"
        ),
    )
}

/// Groups `items` (each a group of statements that go together) into round trips of at
/// most [`STATEMENTS_PER_TRIP`] statements (one group alone may hold more) and
/// [`CHUNKS_PER_TRIP`] groups, each as one text.
fn trips(items: impl IntoIterator<Item = Vec<String>>) -> Vec<String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let (mut statements, mut groups) = (0, 0);
    for item in items {
        if groups > 0
            && (statements + item.len() > STATEMENTS_PER_TRIP || groups >= CHUNKS_PER_TRIP)
        {
            out.push(std::mem::take(&mut text));
            (statements, groups) = (0, 0);
        }
        for s in &item {
            text.push_str(s);
            text.push_str(";\n");
        }
        statements += item.len();
        groups += 1;
    }
    if !text.is_empty() {
        out.push(text);
    }
    out
}

/// The round trips that make `tables`, those of each parent in order, the parents taking
/// turns: making a child locks its parent against another child being made (SHARE UPDATE
/// EXCLUSIVE), so the trips of one hypertable's chunks run one at a time whatever the
/// jobs, while those of another (or of compressed chunks, which inherit from none) can run
/// beside them.
fn interleaved_by_parent(tables: &[&ChunkTableDdl]) -> Vec<String> {
    let mut by_parent: BTreeMap<&str, Vec<Vec<String>>> = BTreeMap::new();
    for t in tables {
        by_parent
            .entry(t.inherits.as_str())
            .or_default()
            .push(t.pre_data.clone());
    }
    let mut each: Vec<std::vec::IntoIter<String>> = by_parent
        .into_values()
        .map(|g| trips(g).into_iter())
        .collect();
    let mut out = Vec::new();
    while !each.is_empty() {
        each.retain_mut(|g| match g.next() {
            Some(trip) => {
                out.push(trip);
                true
            }
            None => false,
        });
    }
    out
}

/// `SET` statements for the sessions that apply the DDL, from pg_restore's `PGOPTIONS`
/// (`-c name=value` pairs, see [`crate::objects::schema::restore_pgoptions`]).
fn session_settings(pgoptions: &str) -> String {
    pgoptions
        .split_whitespace()
        .filter(|w| *w != "-c")
        .filter_map(|w| w.split_once('='))
        .map(|(name, value)| format!("SET {} = {};", quote::ident(name), quote::literal(value)))
        .collect()
}

/// Runs `trips` on `jobs` new connections to `target`, each taking the next trip when
/// its last one is done; stops between trips when `drain` is set.
async fn run_trips(
    target: &ConnInfo,
    jobs: usize,
    pgoptions: &str,
    trips: &[String],
    what: &str,
    drain: Option<&AtomicBool>,
) -> Result<()> {
    if trips.is_empty() {
        return Ok(());
    }
    let next = AtomicUsize::new(0);
    let settings = session_settings(pgoptions);
    let worker = |_| async {
        let tgt = Target::connect(target, "chunk ddl").await?;
        if !settings.is_empty() {
            tgt.execute(&settings).await?;
        }
        loop {
            if drain.is_some_and(|d| d.load(Ordering::SeqCst)) {
                return Ok(());
            }
            let i = next.fetch_add(1, Ordering::SeqCst);
            let Some(trip) = trips.get(i) else {
                return Ok::<_, Error>(());
            };
            tgt.execute(trip).await.map_err(|e| {
                e.context(format!(
                    "{what} (round trip {} of {}, which begins: {})",
                    i + 1,
                    trips.len(),
                    trip.lines().next().unwrap_or("")
                ))
            })?;
        }
    };
    let workers = jobs.clamp(1, trips.len());
    futures_util::future::try_join_all((0..workers).map(worker)).await?;
    Ok(())
}

/// Makes the chunk tables of `ddl` the target does not have yet (`present`: its tables as
/// quoted `schema.name`). Returns how many were made.
pub async fn apply_pre_data(
    target: &ConnInfo,
    jobs: usize,
    pgoptions: &str,
    ddl: &ChunkDdl,
    present: &BTreeSet<String>,
) -> Result<usize> {
    let left: Vec<&ChunkTableDdl> = ddl
        .tables
        .iter()
        .filter(|t| !present.contains(&t.relation()))
        .collect();
    let trips = interleaved_by_parent(&left);
    run_trips(
        target,
        jobs,
        pgoptions,
        &trips,
        "creating chunk tables",
        None,
    )
    .await?;
    Ok(left.len())
}

/// Makes the chunks' indexes, constraints and triggers, less those `skip` names (by
/// source OID) and those `present` says the target has (a resumed run's, named as
/// sql/target_post_data_present.sql names them). Returns how many objects were made.
pub async fn apply_post_data(
    target: &ConnInfo,
    jobs: usize,
    pgoptions: &str,
    ddl: &ChunkDdl,
    skip: &BTreeSet<u32>,
    present: Option<&HashSet<String>>,
    drain: &AtomicBool,
) -> Result<usize> {
    let mut made = 0;
    let groups: Vec<Vec<String>> = ddl
        .tables
        .iter()
        .map(|t| {
            let left: Vec<&PostDataObject> = t
                .post_data
                .iter()
                .filter(|o| !skip.contains(&o.oid))
                .filter(|o| present.is_none_or(|p| !p.contains(&o.present_as)))
                .collect();
            made += left.len();
            left.iter()
                .flat_map(|o| o.statements.iter().cloned())
                .collect()
        })
        .filter(|g: &Vec<String>| !g.is_empty())
        .collect();
    let trips = trips(groups);
    run_trips(
        target,
        jobs,
        pgoptions,
        &trips,
        "making the chunks' indexes, constraints and triggers",
        Some(drain),
    )
    .await?;
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("S{i}")).collect()
    }

    #[test]
    fn trips_keep_groups_whole_and_bounded() {
        let t = trips([group(3), group(2)]);
        assert_eq!(t, ["S0;\nS1;\nS2;\nS0;\nS1;\n"]);
        // A group never straddles two trips, even one bigger than a trip.
        let t = trips([
            group(STATEMENTS_PER_TRIP - 1),
            group(2),
            group(STATEMENTS_PER_TRIP + 5),
        ]);
        assert_eq!(t.len(), 3);
        assert_eq!(t[1].matches(";\n").count(), 2);
        assert_eq!(t[2].matches(";\n").count(), STATEMENTS_PER_TRIP + 5);
        // Many small groups: bounded by the chunks a trip may lock.
        let t = trips((0..CHUNKS_PER_TRIP * 2 + 1).map(|_| group(1)));
        assert_eq!(t.len(), 3);
        assert!(trips(Vec::<Vec<String>>::new()).is_empty());
    }

    #[test]
    fn parents_take_turns_and_each_keeps_its_order() {
        let table = |name: &str, inherits: &str| ChunkTableDdl {
            oid: 0,
            schema: "s".into(),
            name: name.into(),
            inherits: inherits.into(),
            pre_data: vec![name.to_string()],
            post_data: Vec::new(),
        };
        let mut tables: Vec<ChunkTableDdl> = (0..CHUNKS_PER_TRIP * 3)
            .map(|i| table(&format!("a{i}"), "p.a"))
            .collect();
        tables.push(table("c0", ""));
        tables.extend((0..CHUNKS_PER_TRIP + 1).map(|i| table(&format!("b{i}"), "p.b")));
        let refs: Vec<&ChunkTableDdl> = tables.iter().collect();
        let firsts: Vec<String> = interleaved_by_parent(&refs)
            .iter()
            .map(|t| t.lines().next().unwrap().to_string())
            .collect();
        let cut = CHUNKS_PER_TRIP;
        assert_eq!(
            firsts,
            [
                "c0;".to_string(),
                "a0;".into(),
                "b0;".into(),
                format!("a{cut};"),
                format!("b{cut};"),
                format!("a{};", cut * 2),
            ]
        );
    }

    #[test]
    fn restore_options_become_session_settings() {
        assert_eq!(
            session_settings("-c maintenance_work_mem=262144kB -c synchronous_commit=off"),
            "SET \"maintenance_work_mem\" = '262144kB';SET \"synchronous_commit\" = 'off';"
        );
        assert_eq!(session_settings(""), "");
    }
}
