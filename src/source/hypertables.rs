//! Which of a TimescaleDB source's hypertables and continuous aggregates the filters keep,
//! and what follows from it. pg_dump decides for the relations users name: a hypertable
//! is kept when pg_dump dumps its table, a continuous aggregate when it dumps its view.
//! TimescaleDB's own relations follow their owner: a compressed hypertable its
//! hypertable; a materialization hypertable and the partial and direct views its
//! aggregate. A left-out hypertable leaves nothing on the target: no table, chunk,
//! catalog row or job. A kept hypertable keeps all its chunks. A kept aggregate needs
//! what it is built on; a left-out one goes as if dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::objects::catalog_rows::{self, ConfigRelation};
use crate::objects::schema::Archives;
use crate::pg::Source;
use crate::pg::conninfo::ConnInfo;
use crate::quote::{dump_pattern, qualified};
use crate::source::filter::Filters;

/// A relation of the source, by name and OID (none when it does not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Relation {
    schema: String,
    name: String,
    oid: Option<u32>,
}

impl Relation {
    fn display(&self) -> String {
        qualified(&self.schema, &self.name)
    }

    fn pattern(&self) -> String {
        format!(
            "{}.{}",
            dump_pattern(&self.schema),
            dump_pattern(&self.name)
        )
    }

    fn dumped(&self, dumped: &BTreeSet<u32>) -> bool {
        self.oid.is_some_and(|o| dumped.contains(&o))
    }
}

#[derive(Debug, Clone)]
struct Hypertable {
    id: i32,
    table: Relation,
    /// For a compressed hypertable: the hypertable whose compressed rows it holds.
    compresses: Option<i32>,
}

#[derive(Debug, Clone)]
struct ContinuousAggregate {
    mat_hypertable_id: i32,
    raw_hypertable_id: i32,
    view: Relation,
    partial_view: Relation,
    direct_view: Relation,
}

#[derive(Debug, Clone)]
struct Chunk {
    hypertable_id: i32,
    table: Relation,
}

/// A chunk (or compressed chunk) table, as the unit filter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkTable {
    /// Whether its hypertable is kept.
    pub kept: bool,
    /// The table OID of the hypertable whose rows it holds.
    pub owner: Option<u32>,
}

/// A relation TimescaleDB made for a hypertable or aggregate: kept with it, or not at all.
#[derive(Debug, Clone)]
struct Companion {
    relation: Relation,
    kept: bool,
    /// What it belongs to, for messages.
    owner: String,
}

/// The source's hypertables, aggregates and chunks, and which of them the run keeps.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    hypertables: Vec<Hypertable>,
    aggregates: Vec<ContinuousAggregate>,
    chunks: Vec<Chunk>,
    /// Continuous-aggregate invalidation triggers: (trigger OID, hypertable id).
    cagg_triggers: Vec<(u32, i32)>,
    /// TimescaleDB's configuration tables and sequences (its catalog).
    config: Vec<ConfigRelation>,
    left_out: BTreeSet<i32>,
}

impl Selection {
    /// Reads the source's TimescaleDB objects, inside the run's snapshot on `src`.
    async fn read(src: &Source) -> Result<Selection> {
        let hypertables = src
            .query(include_str!("../sql/source_hypertables.sql"), &[])
            .await?
            .iter()
            .map(|r| Hypertable {
                id: r.get("id"),
                table: Relation {
                    schema: r.get("schema_name"),
                    name: r.get("table_name"),
                    oid: r.get("relid"),
                },
                compresses: r.get("compresses"),
            })
            .collect();
        let mut views: BTreeMap<(i32, i32), BTreeMap<String, Relation>> = BTreeMap::new();
        for r in src
            .query(include_str!("../sql/source_continuous_aggs.sql"), &[])
            .await?
        {
            views
                .entry((r.get("mat_hypertable_id"), r.get("raw_hypertable_id")))
                .or_default()
                .insert(
                    r.get("kind"),
                    Relation {
                        schema: r.get("schema_name"),
                        name: r.get("view_name"),
                        oid: r.get("relid"),
                    },
                );
        }
        let mut aggregates = Vec::new();
        for ((mat, raw), mut v) in views {
            let mut take = |kind: &str| {
                v.remove(kind).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Internal,
                        format!("continuous aggregate {mat} has no {kind} view in the catalog"),
                    )
                })
            };
            aggregates.push(ContinuousAggregate {
                mat_hypertable_id: mat,
                raw_hypertable_id: raw,
                view: take("user")?,
                partial_view: take("partial")?,
                direct_view: take("direct")?,
            });
        }
        let chunks = src
            .query(include_str!("../sql/source_chunks.sql"), &[])
            .await?
            .iter()
            .map(|r| Chunk {
                hypertable_id: r.get("hypertable_id"),
                table: Relation {
                    schema: r.get("schema_name"),
                    name: r.get("table_name"),
                    oid: Some(r.get("relid")),
                },
            })
            .collect();
        let cagg_triggers = src
            .pairs(include_str!("../sql/source_cagg_triggers.sql"))
            .await?
            .into_iter()
            .collect();
        Ok(Selection {
            hypertables,
            aggregates,
            chunks,
            cagg_triggers,
            config: catalog_rows::config_relations(src).await?,
            left_out: BTreeSet::new(),
        })
    }

    fn aggregate_of(&self, mat_hypertable_id: i32) -> Option<&ContinuousAggregate> {
        self.aggregates
            .iter()
            .find(|a| a.mat_hypertable_id == mat_hypertable_id)
    }

    fn hypertable(&self, id: i32) -> Option<&Hypertable> {
        self.hypertables.iter().find(|h| h.id == id)
    }

    /// Whether hypertable `id` is kept, given the relations pg_dump dumped.
    fn kept(&self, id: i32, dumped: &BTreeSet<u32>) -> bool {
        let Some(h) = self.hypertable(id) else {
            return false;
        };
        if let Some(parent) = h.compresses {
            return self.kept(parent, dumped);
        }
        match self.aggregate_of(id) {
            Some(a) => a.view.dumped(dumped),
            None => h.table.dumped(dumped),
        }
    }

    /// What a continuous aggregate is built on, for messages.
    fn built_on(&self, a: &ContinuousAggregate) -> String {
        match self.aggregate_of(a.raw_hypertable_id) {
            Some(parent) => format!("the continuous aggregate {}", parent.view.display()),
            None => match self.hypertable(a.raw_hypertable_id) {
                Some(h) => format!("the hypertable {}", h.table.display()),
                None => format!("hypertable {}", a.raw_hypertable_id),
            },
        }
    }

    /// The ids of the hypertables kept, given what pg_dump dumped; refuses a kept
    /// aggregate whose hypertable is left out.
    fn decide(&self, dumped: &BTreeSet<u32>) -> Result<BTreeSet<i32>> {
        let kept: BTreeSet<i32> = self
            .hypertables
            .iter()
            .map(|h| h.id)
            .filter(|id| self.kept(*id, dumped))
            .collect();
        let orphans: Vec<String> = self
            .aggregates
            .iter()
            .filter(|a| kept.contains(&a.mat_hypertable_id))
            .filter(|a| !kept.contains(&a.raw_hypertable_id))
            .map(|a| format!("{} (built on {})", a.view.display(), self.built_on(a)))
            .collect();
        if !orphans.is_empty() {
            return Err(Error::new(
                ErrorKind::Preflight,
                format!(
                    "the filters keep continuous aggregates but leave out what they are built on: {}; leave those aggregates out as well (--exclude-table), or keep what they are built on",
                    orphans.join(", ")
                ),
            ));
        }
        Ok(kept)
    }

    /// TimescaleDB's relations of hypertables and aggregates, each with whether it is kept.
    fn companions(&self, kept: &BTreeSet<i32>) -> Vec<Companion> {
        let mut out = Vec::new();
        for h in &self.hypertables {
            let owner = if let Some(parent) = h.compresses {
                self.hypertable(parent)
                    .map(|p| format!("the compressed rows of {}", p.table.display()))
            } else {
                self.aggregate_of(h.id)
                    .map(|a| format!("the continuous aggregate {}", a.view.display()))
            };
            if let Some(owner) = owner {
                out.push(Companion {
                    relation: h.table.clone(),
                    kept: kept.contains(&h.id),
                    owner,
                });
            }
        }
        for a in &self.aggregates {
            for view in [&a.partial_view, &a.direct_view] {
                out.push(Companion {
                    relation: view.clone(),
                    kept: kept.contains(&a.mat_hypertable_id),
                    owner: format!("the continuous aggregate {}", a.view.display()),
                });
            }
        }
        out
    }

    /// Refuses a main archive whose TimescaleDB relations do not follow their owners.
    fn check_companions(&self, kept: &BTreeSet<i32>, dumped: &BTreeSet<u32>) -> Result<()> {
        for c in self.companions(kept) {
            let in_dump = c.relation.dumped(dumped);
            if c.kept && !in_dump {
                return Err(Error::new(
                    ErrorKind::Preflight,
                    format!(
                        "the filters leave out {}, which TimescaleDB needs for {}; do not exclude TimescaleDB's internal schema or tables",
                        c.relation.display(),
                        c.owner
                    ),
                ));
            }
            if !c.kept && in_dump {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!(
                        "pg_dump dumped {} although the filters leave out {}",
                        c.relation.display(),
                        c.owner
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The chunk tables whose DDL goes to the target: those of the kept hypertables (by
    /// OID), in chunk order.
    pub fn kept_chunk_oids(&self) -> Vec<u32> {
        self.chunks
            .iter()
            .filter(|c| !self.left_out.contains(&c.hypertable_id))
            .filter_map(|c| c.table.oid)
            .collect()
    }

    /// The chunk (and compressed chunk) tables by OID, each with whether its hypertable is
    /// kept and the table OID of the hypertable whose rows it holds: built once, so that
    /// filtering the units is linear in the chunks.
    pub fn chunk_tables(&self) -> HashMap<u32, ChunkTable> {
        let hypertables: HashMap<i32, &Hypertable> =
            self.hypertables.iter().map(|h| (h.id, h)).collect();
        let owner = |id: i32| {
            let h = hypertables.get(&id)?;
            let user = match h.compresses {
                Some(raw) => hypertables.get(&raw)?,
                None => h,
            };
            user.table.oid
        };
        self.chunks
            .iter()
            .filter_map(|c| {
                let oid = c.table.oid?;
                let table = ChunkTable {
                    kept: !self.left_out.contains(&c.hypertable_id),
                    owner: owner(c.hypertable_id),
                };
                Some((oid, table))
            })
            .collect()
    }

    /// Invalidation triggers not to restore: those of kept hypertables whose continuous
    /// aggregates are all left out (TimescaleDB drops them with the last aggregate).
    pub fn skipped_triggers(&self) -> BTreeSet<u32> {
        let orphaned: BTreeSet<i32> = self
            .hypertables
            .iter()
            .map(|h| h.id)
            .filter(|id| !self.left_out.contains(id))
            .filter(|id| {
                let mut aggs = self
                    .aggregates
                    .iter()
                    .filter(|a| a.raw_hypertable_id == *id)
                    .peekable();
                aggs.peek().is_some() && aggs.all(|a| self.left_out.contains(&a.mat_hypertable_id))
            })
            .collect();
        self.cagg_triggers
            .iter()
            .filter(|(_, h)| orphaned.contains(h))
            .map(|(t, _)| *t)
            .collect()
    }

    /// One line for the report naming the hypertables and aggregates left out.
    pub fn summary(&self) -> Option<String> {
        if self.left_out.is_empty() {
            return None;
        }
        let hypertables: Vec<String> = self
            .hypertables
            .iter()
            .filter(|h| self.left_out.contains(&h.id))
            .filter(|h| h.compresses.is_none() && self.aggregate_of(h.id).is_none())
            .map(|h| h.table.display())
            .collect();
        let aggregates: Vec<String> = self
            .aggregates
            .iter()
            .filter(|a| self.left_out.contains(&a.mat_hypertable_id))
            .map(|a| a.view.display())
            .collect();
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        Some(format!(
            "filters: hypertables left out with their chunks, catalog rows and jobs: {}; continuous aggregates left out: {}",
            list(&hypertables),
            list(&aggregates)
        ))
    }

    /// Reads TimescaleDB's catalog rows of what is kept (see [`catalog_rows::read`]).
    pub async fn read_catalog(
        &self,
        source: &ConnInfo,
        snapshot: &str,
    ) -> Result<catalog_rows::CatalogRows> {
        catalog_rows::read(source, snapshot, &self.config, &self.left_out).await
    }
}

/// pg_dump arguments that put the kept companions into the main archive and take the
/// left-out ones out. With `-t`, kept ones are added by name; with only `-n`, their schema
/// is added, less every relation there the first dump did not have; without either, the
/// archive already has them (unless the filters exclude them).
fn companion_args(
    companions: &[Companion],
    dumped: &BTreeSet<u32>,
    filters: &Filters,
    schema_relations: &[Relation],
) -> Vec<String> {
    let mut args = Vec::new();
    let missing: Vec<&Relation> = companions
        .iter()
        .filter(|c| c.kept && !c.relation.dumped(dumped))
        .map(|c| &c.relation)
        .collect();
    let kept: BTreeSet<Option<u32>> = companions
        .iter()
        .filter(|c| c.kept)
        .map(|c| c.relation.oid)
        .collect();
    if !missing.is_empty() {
        if !filters.tables.is_empty() {
            args.extend(missing.iter().map(|r| format!("--table={}", r.pattern())));
        } else if !filters.schemas.is_empty() {
            let schemas: BTreeSet<&str> = missing.iter().map(|r| r.schema.as_str()).collect();
            args.extend(
                schemas
                    .iter()
                    .map(|s| format!("--schema={}", dump_pattern(s))),
            );
            args.extend(
                schema_relations
                    .iter()
                    .filter(|r| schemas.contains(r.schema.as_str()))
                    .filter(|r| !r.dumped(dumped) && !kept.contains(&r.oid))
                    .map(|r| format!("--exclude-table={}", r.pattern())),
            );
        }
    }
    args.extend(
        companions
            .iter()
            .filter(|c| !c.kept && c.relation.dumped(dumped))
            .map(|c| format!("--exclude-table={}", c.relation.pattern())),
    );
    args
}

/// Relations (not chunks, not extension members) in `schemas` of the source.
async fn schema_relations(src: &Source, schemas: &[String]) -> Result<Vec<Relation>> {
    let rows = src
        .query(
            "SELECT n.nspname::text, c.relname::text, c.oid FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname::text = ANY ($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
               AND NOT EXISTS (SELECT 1 FROM _timescaledb_catalog.chunk ch
                               WHERE ch.schema_name = n.nspname AND ch.table_name = c.relname)
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                               WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                                 AND d.objid = c.oid AND d.deptype = 'e')",
            &[&schemas],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Relation {
            schema: r.get(0),
            name: r.get(1),
            oid: Some(r.get(2)),
        })
        .collect())
}

/// The OIDs of the tables and views in an archive.
async fn dumped_relations(archives: &Archives, archive: &Path) -> Result<BTreeSet<u32>> {
    Ok(archives
        .toc(archive, None)
        .await?
        .iter()
        .filter(|e| e.is("TABLE") || e.is("VIEW"))
        .map(|e| e.oid)
        .collect())
}

/// pg_dump of the main archive (include patterns that match nothing were refused before,
/// by [`crate::source::filter::check_exclusions`]).
async fn dump(
    archives: &Archives,
    source: &ConnInfo,
    snapshot: &str,
    args: Vec<String>,
) -> Result<PathBuf> {
    archives.dump(source, snapshot, "main.dump", args).await
}

/// The main schema dump with `args` (the filters among them), and what the filters keep
/// of a TimescaleDB source (`src` in the run's snapshot). When the filters keep some
/// hypertables or aggregates and TimescaleDB's relations of them are not in the archive
/// (or those of left-out ones are), the archive is dumped again with them set right.
pub async fn dump_main(
    archives: &Archives,
    source: &ConnInfo,
    src: &Source,
    snapshot: &str,
    args: Vec<String>,
    filters: &Filters,
    timescale: bool,
) -> Result<(PathBuf, Selection)> {
    let mut main = dump(archives, source, snapshot, args.clone()).await?;
    if !timescale {
        return Ok((main, Selection::default()));
    }
    let mut selection = Selection::read(src).await?;
    if filters.is_empty() || selection.hypertables.is_empty() {
        return Ok((main, selection));
    }
    let mut dumped = dumped_relations(archives, &main).await?;
    let kept = selection.decide(&dumped)?;
    selection.left_out = selection
        .hypertables
        .iter()
        .map(|h| h.id)
        .filter(|id| !kept.contains(id))
        .collect();
    catalog_rows::check_known(&selection.config, &selection.left_out)?;
    let companions = selection.companions(&kept);
    let schemas: Vec<String> = companions
        .iter()
        .map(|c| c.relation.schema.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let extra = companion_args(
        &companions,
        &dumped,
        filters,
        &schema_relations(src, &schemas).await?,
    );
    if !extra.is_empty() {
        let mut args = args;
        args.extend(extra);
        main = dump(archives, source, snapshot, args).await?;
        dumped = dumped_relations(archives, &main).await?;
        if selection.decide(&dumped)? != kept {
            return Err(Error::new(
                ErrorKind::Internal,
                "pg_dump kept other hypertables once TimescaleDB's internal relations were added to the dump",
            ));
        }
    }
    selection.check_companions(&kept, &dumped)?;
    Ok((main, selection))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(schema: &str, name: &str, oid: u32) -> Relation {
        Relation {
            schema: schema.into(),
            name: name.into(),
            oid: Some(oid),
        }
    }

    fn internal(name: &str, oid: u32) -> Relation {
        rel("_timescaledb_internal", name, oid)
    }

    /// metrics (1, compressed into 5) with an hourly aggregate (mat 8, compressed into 9)
    /// and a daily one on that (mat 10); readings (3) with nothing.
    fn source() -> Selection {
        let ht = |id, table, compresses| Hypertable {
            id,
            table,
            compresses,
        };
        let agg = |mat, raw, view, n: u32| ContinuousAggregate {
            mat_hypertable_id: mat,
            raw_hypertable_id: raw,
            view,
            partial_view: internal(&format!("_partial_view_{mat}"), n),
            direct_view: internal(&format!("_direct_view_{mat}"), n + 1),
        };
        let chunk = |hypertable_id, name: &str, oid| Chunk {
            hypertable_id,
            table: internal(name, oid),
        };
        Selection {
            hypertables: vec![
                ht(1, rel("app", "metrics", 101), None),
                ht(3, rel("app", "readings", 103), None),
                ht(5, internal("_compressed_hypertable_5", 105), Some(1)),
                ht(8, internal("_materialized_hypertable_8", 108), None),
                ht(9, internal("_compressed_hypertable_9", 109), Some(8)),
                ht(10, internal("_materialized_hypertable_10", 110), None),
            ],
            aggregates: vec![
                agg(8, 1, rel("app", "hourly", 208), 308),
                agg(10, 8, rel("app", "daily", 210), 310),
            ],
            chunks: vec![
                chunk(1, "_hyper_1_1_chunk", 401),
                chunk(5, "compress_hyper_5_2_chunk", 402),
                chunk(3, "_hyper_3_3_chunk", 403),
                chunk(8, "_hyper_8_4_chunk", 404),
            ],
            cagg_triggers: vec![(501, 1), (502, 1), (503, 8)],
            config: Vec::new(),
            left_out: BTreeSet::new(),
        }
    }

    fn all_user_relations() -> BTreeSet<u32> {
        [101, 103, 208, 210].into()
    }

    #[test]
    fn internal_relations_follow_their_owner() {
        let s = source();
        let dumped: BTreeSet<u32> = [103].into();
        assert_eq!(s.decide(&dumped).unwrap(), [3].into());
        let kept = s.decide(&all_user_relations()).unwrap();
        assert_eq!(kept, [1, 3, 5, 8, 9, 10].into());
        // Leaving out the daily aggregate only.
        let kept = s.decide(&[101, 103, 208].into()).unwrap();
        assert_eq!(kept, [1, 3, 5, 8, 9].into());
    }

    #[test]
    fn an_aggregate_without_what_it_is_built_on_is_refused() {
        let s = source();
        let e = s.decide(&[103, 208, 210].into()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Preflight);
        assert!(
            e.message()
                .contains("\"app\".\"hourly\" (built on the hypertable \"app\".\"metrics\")"),
            "{e}"
        );
        let e = s.decide(&[101, 103, 210].into()).unwrap_err();
        assert!(
            e.message().contains(
                "\"app\".\"daily\" (built on the continuous aggregate \"app\".\"hourly\")"
            ),
            "{e}"
        );
        assert!(!e.message().contains("metrics"), "{e}");
    }

    #[test]
    fn left_out_hypertables_lose_chunks_and_orphaned_triggers() {
        let mut s = source();
        // readings and metrics kept, both aggregates left out.
        s.left_out = [8, 9, 10].into();
        assert_eq!(s.kept_chunk_oids(), [401, 402, 403]);
        let chunks = s.chunk_tables();
        let chunk = |kept, owner| ChunkTable { kept, owner };
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[&401], chunk(true, Some(101)));
        // A compressed chunk's rows are its hypertable's.
        assert_eq!(chunks[&402], chunk(true, Some(101)));
        assert_eq!(chunks[&403], chunk(true, Some(103)));
        assert_eq!(chunks[&404], chunk(false, Some(108)));
        assert_eq!(s.skipped_triggers(), [501, 502].into());
        // Only the daily one left out: the hourly one's materialization loses its trigger.
        s.left_out = [10].into();
        assert_eq!(s.skipped_triggers(), [503].into());
        s.left_out = BTreeSet::new();
        assert!(s.skipped_triggers().is_empty());
        assert_eq!(s.summary(), None);
        s.left_out = [1, 5, 8, 9, 10].into();
        assert_eq!(
            s.summary().unwrap(),
            "filters: hypertables left out with their chunks, catalog rows and jobs: \"app\".\"metrics\"; continuous aggregates left out: \"app\".\"hourly\", \"app\".\"daily\""
        );
    }

    #[test]
    fn dump_arguments_bring_internal_relations_in_line() {
        let s = source();
        // -T app.metrics -T app.hourly -T app.daily: the internal relations were dumped.
        let dumped: BTreeSet<u32> = [103, 105, 108, 109, 110, 308, 309, 310, 311].into();
        let kept = s.decide(&dumped).unwrap();
        let companions = s.companions(&kept);
        let filters = Filters {
            exclude_tables: vec!["app.metrics".into()],
            ..Filters::default()
        };
        let args = companion_args(&companions, &dumped, &filters, &[]);
        assert_eq!(args.len(), 8, "{args:?}");
        assert!(args.contains(
            &"--exclude-table=\"_timescaledb_internal\".\"_compressed_hypertable_5\"".to_string()
        ));
        assert!(args.iter().all(|a| a.starts_with("--exclude-table=")));

        // -t app.metrics -t app.hourly: their internal relations are added by name.
        let dumped: BTreeSet<u32> = [101, 208].into();
        let kept = s.decide(&dumped).unwrap();
        let filters = Filters {
            tables: vec!["app.metrics".into(), "app.hourly".into()],
            ..Filters::default()
        };
        let args = companion_args(&s.companions(&kept), &dumped, &filters, &[]);
        assert_eq!(
            args,
            [
                "--table=\"_timescaledb_internal\".\"_compressed_hypertable_5\"",
                "--table=\"_timescaledb_internal\".\"_materialized_hypertable_8\"",
                "--table=\"_timescaledb_internal\".\"_compressed_hypertable_9\"",
                "--table=\"_timescaledb_internal\".\"_partial_view_8\"",
                "--table=\"_timescaledb_internal\".\"_direct_view_8\"",
            ]
        );

        // -n app -T app.daily: the internal schema is added, less what is not kept there.
        let dumped: BTreeSet<u32> = [101, 103, 208].into();
        let kept = s.decide(&dumped).unwrap();
        let filters = Filters {
            schemas: vec!["app".into()],
            exclude_tables: vec!["app.daily".into()],
            ..Filters::default()
        };
        let in_schema = vec![
            internal("_compressed_hypertable_5", 105),
            internal("_materialized_hypertable_10", 110),
            internal("_partial_view_10", 310),
            internal("someone's table", 600),
        ];
        let args = companion_args(&s.companions(&kept), &dumped, &filters, &in_schema);
        assert_eq!(
            args,
            [
                "--schema=\"_timescaledb_internal\"",
                "--exclude-table=\"_timescaledb_internal\".\"_materialized_hypertable_10\"",
                "--exclude-table=\"_timescaledb_internal\".\"_partial_view_10\"",
                "--exclude-table=\"_timescaledb_internal\".\"someone's table\"",
            ]
        );
    }

    #[test]
    fn a_kept_hypertable_without_its_internal_relations_is_refused() {
        let s = source();
        let kept = s.decide(&all_user_relations()).unwrap();
        let e = s
            .check_companions(&kept, &all_user_relations())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Preflight);
        assert!(e.message().contains("_compressed_hypertable_5"), "{e}");
        let everything: BTreeSet<u32> = all_user_relations()
            .into_iter()
            .chain([105, 108, 109, 110, 308, 309, 310, 311])
            .collect();
        assert!(s.check_companions(&kept, &everything).is_ok());
    }
}
