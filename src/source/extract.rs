//! What a migration reads from the source, all under one snapshot: the work units, the
//! schema archive, the chunk tables' DDL, roles, owners and grants, sequence values. A live migration loads it
//! into the target at once; `tsxfer dump` keeps it in a manifest for a later restore.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::info;

use crate::error::Result;
use crate::objects::catalog_rows::CatalogRows;
use crate::objects::chunk_ddl::{self, ChunkDdl};
use crate::objects::privileges::{self, SourcePrivileges};
use crate::objects::roles::{self, Membership, SourceRole};
use crate::objects::schema::{self, Archives};
use crate::pg::Source;
use crate::pg::conninfo::ConnInfo;
use crate::plan::{self, CopyUnit, UnitKind};
use crate::quote::dump_pattern;
use crate::source::catalog::{self, HypertableForeignKey, ServerFacts};
use crate::source::convert::Conversion;
use crate::source::filter::{self, Filters};
use crate::source::hypertables::{self, Selection};

/// The source's roles and who is a member of whom.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RoleSet {
    pub roles: Vec<SourceRole>,
    pub memberships: Vec<Membership>,
    /// Whether password hashes could be read (the source role is a superuser).
    pub passwords_read: bool,
}

/// Everything the target phases need from the source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Extract {
    /// The source, described without secrets.
    pub source: String,
    /// Tells one source database from another (system identifier and database).
    pub source_id: String,
    pub facts: ServerFacts,
    pub snapshot: String,
    /// The units to copy, in the order the pool takes them.
    pub units: Vec<CopyUnit>,
    /// (sequence, last value, is_called)
    pub sequences: Vec<(String, i64, bool)>,
    /// Materialized views that hold data on the source (refreshed on the target).
    pub matviews: Vec<String>,
    /// Kept apart from the manifest in a dump: it holds password hashes.
    #[serde(skip)]
    pub roles: RoleSet,
    pub privileges: SourcePrivileges,
    /// `--hypertable` conversions, checked on the source.
    pub conversions: Vec<Conversion>,
    /// TimescaleDB's catalog rows of what is kept (in a dump, a file of its own: it grows
    /// with the number of chunks).
    #[serde(skip)]
    pub catalog: CatalogRows,
    /// Post-data entries (by OID) not to restore: triggers TimescaleDB would have dropped
    /// with the continuous aggregates the filters left out.
    pub skip_post_data: BTreeSet<u32>,
    /// Foreign keys to hypertables, added after TimescaleDB's restoring mode instead of
    /// with the post-data (their entries are not restored).
    #[serde(default)]
    pub hypertable_fks: Vec<HypertableForeignKey>,
    /// Tables with `FORCE ROW LEVEL SECURITY`, which verification lifts while it counts.
    #[serde(default)]
    pub forced_row_security: Vec<String>,
    /// `ALTER DATABASE ... SET` of the source database, as `name=value`.
    #[serde(default)]
    pub database_settings: Vec<String>,
    /// Publications only a superuser may make on the target, by archive entry OID.
    #[serde(default)]
    pub superuser_publications: Vec<(u32, String)>,
    /// User mappings only a superuser may make on the target, by archive entry tag.
    #[serde(default)]
    pub superuser_user_mappings: Vec<(String, String)>,
    /// Whether pg_dump filters chose what was read (some objects' owners and grants then
    /// have nothing to apply to).
    pub filtered: bool,
    /// The schema archive (everything but the chunk tables), as a file name in the archive
    /// directory.
    pub main_archive: String,
    /// The chunk tables' DDL archives of a dump written by an earlier version (one
    /// `pg_dump` per batch of chunks); none since their DDL is generated ([`Self::chunk_ddl`]).
    #[serde(default)]
    pub chunk_archives: Vec<String>,
    /// The DDL of the chunk tables kept (in a dump, a file of its own: it grows with the
    /// number of chunks).
    #[serde(skip)]
    pub chunk_ddl: ChunkDdl,
    /// What was changed on the way, for the report.
    pub rewrites: Vec<String>,
    /// In a dump made with `-t`: what its tables use that pg_dump left out, which a
    /// restore checks on the target first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub table_uses: Vec<crate::source::filter::TableUse>,
}

impl Extract {
    pub fn main_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.main_archive)
    }

    pub fn chunk_paths(&self, dir: &Path) -> Vec<PathBuf> {
        self.chunk_archives.iter().map(|f| dir.join(f)).collect()
    }
}

/// What the user asked for, besides the whole database.
pub struct Asked<'a> {
    pub filters: &'a Filters,
    pub conversions: Vec<Conversion>,
    /// Which tables are copied in parts.
    pub split: plan::Split,
}

/// PostgreSQL 14 reads a range of a table's pages with a TID range scan; before, each part
/// would read the whole table.
const TID_RANGE_SCANS: i32 = 140_000;

/// Reads everything from the source. `src` holds the exported `snapshot` open; `reader`
/// is a second connection for what needs no snapshot (sizes); the schema archives are
/// written into `archives.dir`.
#[allow(clippy::too_many_arguments)]
pub async fn extract(
    src: &Source,
    reader: &Source,
    conninfo: &ConnInfo,
    facts: &ServerFacts,
    source_id: String,
    snapshot: &str,
    archives: &Archives,
    asked: Asked<'_>,
) -> Result<Extract> {
    let mut rewrites = Vec::new();
    // The units and their sizes (on `reader`) while pg_dump writes the schema archive.
    let (units, (main, selection)) = futures_util::future::try_join(
        catalog_units(src, reader, facts),
        dump_schema(archives, conninfo, src, facts, snapshot, asked.filters),
    )
    .await?;
    let mut units = plan::order_units(units);
    if needs_null_placeholder_rewrite(facts) {
        let rewritten = units
            .iter()
            .filter(|u| u.kind == UnitKind::CompressedChunk)
            .count();
        if rewritten > 0 {
            rewrites.push(format!(
                "{rewritten} compressed chunk(s): TimescaleDB's \"all values NULL\" placeholder sent as NULL (TimescaleDB 2.19 cannot load the placeholder it writes, timescaledb#8893; it reads NULL there the same way)"
            ));
        }
    }
    for c in &asked.conversions {
        for u in units.iter_mut().filter(|u| u.relation() == c.relation()) {
            u.into_hypertable = true;
        }
    }
    let converted: Vec<String> = asked.conversions.iter().map(|c| c.relation()).collect();
    let hypertable_fks = catalog::hypertable_foreign_keys(src, facts, &converted).await?;
    let forced_row_security = catalog::forced_row_security(src).await?;
    let database_settings = roles::read_database_settings(src).await?;
    let superuser_publications = if facts.major() >= 15 {
        catalog::superuser_publications(src).await?
    } else {
        Vec::new()
    };
    let superuser_user_mappings = catalog::superuser_user_mappings(src).await?;
    let sequences = catalog::sequence_values(src).await?;
    let matviews = catalog::populated_matviews(src).await?;
    if !asked.filters.is_empty() {
        let (kept, note) =
            filter_units(archives, &main, src, asked.filters, &selection, units).await?;
        units = kept;
        rewrites.extend(selection.summary());
        rewrites.push(note);
    }
    // The rest at once, on three sessions in the snapshot and the size reader: the chunk
    // tables (on `src`), their indexes and constraints, then the roles and privileges
    // (`beside`), TimescaleDB's catalog rows (a session of their own); the big tables'
    // pages (`reader`).
    let beside = Source::connect(conninfo, "catalog beside").await?;
    beside.begin_snapshot(Some(snapshot)).await?;
    let kept_chunks = selection.kept_chunk_oids();
    let (chunk_ddl, (roles, memberships, passwords_read, privileges), units, catalog) =
        futures_util::future::try_join4(
            chunk_ddl::read(src, &beside, &kept_chunks),
            async {
                let (roles, memberships, passwords_read) =
                    roles::read_source_roles(&beside).await?;
                Ok((
                    roles,
                    memberships,
                    passwords_read,
                    privileges::read(&beside).await?,
                ))
            },
            split_big_tables(reader, facts, units, asked.split),
            selection.read_catalog(conninfo, snapshot),
        )
        .await?;
    beside.end().await?;
    if !chunk_ddl.tables.is_empty() {
        info!(
            "read the DDL of {} chunk tables from the catalog",
            chunk_ddl.tables.len()
        );
    }
    let total: i64 = units.iter().map(|u| u.estimated_bytes).sum();
    info!(
        "{} units to copy, about {}",
        units.len(),
        plan::human_bytes(total)
    );
    let file_name = |p: &Path| {
        p.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    Ok(Extract {
        source: conninfo.describe(),
        source_id,
        facts: facts.clone(),
        snapshot: snapshot.to_string(),
        units,
        sequences,
        matviews,
        roles: RoleSet {
            roles,
            memberships,
            passwords_read,
        },
        privileges,
        conversions: asked.conversions,
        catalog,
        skip_post_data: selection.skipped_triggers(),
        hypertable_fks,
        forced_row_security,
        database_settings,
        superuser_publications,
        superuser_user_mappings,
        filtered: !asked.filters.is_empty(),
        main_archive: file_name(&main),
        chunk_archives: Vec::new(),
        chunk_ddl,
        rewrites,
        table_uses: Vec::new(),
    })
}

/// Every table unit the source's catalog has under `src`'s snapshot, whole (not split,
/// not filtered), with the placeholder rewrite its TimescaleDB needs. A resumed run's units
/// are rebuilt from these ([`crate::plan::unit_book::UnitBook::rebuild`]).
pub async fn catalog_units(
    src: &Source,
    reader: &Source,
    facts: &ServerFacts,
) -> Result<Vec<CopyUnit>> {
    let mut units = catalog::copy_units(src, reader, facts).await?;
    if needs_null_placeholder_rewrite(facts) {
        for u in units
            .iter_mut()
            .filter(|u| u.kind == UnitKind::CompressedChunk)
        {
            u.null_placeholders = true;
        }
    }
    Ok(units)
}

/// Splits the tables `split` chooses into parts by their pages, on a source that can read
/// a range of pages alone.
pub async fn split_big_tables(
    reader: &Source,
    facts: &ServerFacts,
    units: Vec<CopyUnit>,
    split: plan::Split,
) -> Result<Vec<CopyUnit>> {
    let units = split_large_objects(reader, units).await?;
    let big = split.tables(&units);
    if big.is_empty() {
        return Ok(units);
    }
    if facts.version_num < TID_RANGE_SCANS {
        info!(
            "{} big table(s) are copied whole: PostgreSQL {} has no TID range scans to read a part alone",
            big.len(),
            facts.major()
        );
        return Ok(units);
    }
    let pages = catalog::heap_pages(reader, &big).await?;
    let units = plan::order_units(plan::split_units(units, split.part_bytes, &pages));
    let parts = units.iter().filter(|u| u.pages.is_some()).count();
    if parts > 0 {
        info!(
            "{} big table(s) are copied in {parts} parts of about {}",
            big.len(),
            plan::human_bytes(split.part_bytes)
        );
    }
    Ok(units)
}

/// Cuts the large objects into parts of [`plan::large_objects_per_part`] objects, each
/// copied and committed alone.
async fn split_large_objects(reader: &Source, units: Vec<CopyUnit>) -> Result<Vec<CopyUnit>> {
    let mut out = Vec::with_capacity(units.len());
    for u in units {
        let count = u.estimated_rows.unwrap_or(0);
        let per_part = plan::large_objects_per_part(count);
        if u.kind == UnitKind::LargeObjects && u.pages.is_none() && count > per_part {
            let starts = catalog::large_object_starts(reader, per_part).await?;
            out.extend(plan::split_large_objects(u, &starts));
        } else {
            out.push(u);
        }
    }
    Ok(out)
}

/// TimescaleDB 2.19 writes a one-byte placeholder for a compressed column whose values
/// are all NULL but its input and receive functions refuse it; later releases read it.
/// Source and target run the same TimescaleDB version (preflight sees to it).
fn needs_null_placeholder_rewrite(facts: &ServerFacts) -> bool {
    facts
        .extension("timescaledb")
        .is_some_and(|e| e.version.starts_with("2.19."))
}

/// Keeps the units of the tables pg_dump dumped under the filters (so schema and data
/// agree) and the chunks of the hypertables kept, less those whose data
/// `--exclude-table-data` leaves out (a hypertable's with its chunks'). Returns the units kept and a line for the report.
async fn filter_units(
    archives: &Archives,
    main: &Path,
    src: &Source,
    filters: &Filters,
    selection: &Selection,
    units: Vec<CopyUnit>,
) -> Result<(Vec<CopyUnit>, String)> {
    let dumped: BTreeSet<u32> = archives
        .toc(main, None)
        .await?
        .iter()
        .filter(|e| e.is("TABLE"))
        .map(|e| e.oid)
        .collect();
    let mut no_data = BTreeSet::new();
    for p in &filters.exclude_table_data {
        no_data.extend(filter::matching_relations(src, p).await?);
    }
    let before = units.len();
    let some = filters.includes_only_some();
    let chunks = selection.chunk_tables();
    let kept: Vec<CopyUnit> = units
        .into_iter()
        .filter(|u| match u.kind {
            UnitKind::Chunk | UnitKind::CompressedChunk => {
                chunks.get(&u.oid).is_none_or(|c| c.kept)
            }
            UnitKind::LargeObjects | UnitKind::ExtensionConfig => !some,
            _ => dumped.contains(&u.oid),
        })
        .filter(|u| {
            !no_data.contains(&u.oid)
                && !chunks
                    .get(&u.oid)
                    .and_then(|c| c.owner)
                    .is_some_and(|h| no_data.contains(&h))
        })
        .collect();
    let note = format!(
        "filters: {} of {before} units copied ({} tables' data left out by --exclude-table-data)",
        kept.len(),
        no_data.len()
    );
    Ok((kept, note))
}

/// pg_dump of the schema: everything but the chunk tables (with what the filters keep of
/// TimescaleDB's hypertables, see [`hypertables::dump_main`]); the chunk tables' DDL is read
/// from the catalog ([`chunk_ddl::read`]). Returns (the archive, what the filters keep).
async fn dump_schema(
    archives: &Archives,
    conninfo: &ConnInfo,
    src: &Source,
    facts: &ServerFacts,
    snapshot: &str,
    filters: &Filters,
) -> Result<(PathBuf, Selection)> {
    let mut main_args: Vec<String> = Vec::new();
    for schema in catalog::user_schemas(src).await? {
        main_args.push(format!("--exclude-table-data={}.*", dump_pattern(&schema)));
    }
    let timescale = facts.extension("timescaledb").is_some();
    if timescale {
        let chunks = catalog::chunk_tables(src).await?;
        let others = catalog::non_chunk_relation_names(src).await?;
        for p in schema::chunk_exclusion_patterns(&chunks, &others) {
            main_args.push(format!("--exclude-table={p}"));
        }
    }
    main_args.extend(filters.pg_dump_args());
    hypertables::dump_main(
        archives, conninfo, src, snapshot, main_args, filters, timescale,
    )
    .await
}
