//! Reading the source: versions, extensions, and every table that holds data, as seen in
//! the run's snapshot.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::pg::{Source, Target};
use crate::plan::{CopyUnit, UnitKind};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Extension {
    pub name: String,
    pub version: String,
    pub schema: String,
}

/// What one server is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerFacts {
    pub version_num: i32,
    pub version: String,
    pub dbname: String,
    pub login: String,
    pub superuser: bool,
    pub large_objects: i64,
    pub max_locks: i32,
    pub max_connections: i32,
    /// How many locks the server's shared lock table holds in all.
    pub lock_slots: i64,
    /// `apache`, `timescale`, or empty without TimescaleDB loaded.
    pub timescaledb_license: String,
    pub extensions: Vec<Extension>,
    /// The foreign-data wrappers the database's foreign servers use.
    #[serde(default)]
    pub foreign_data_wrappers: Vec<String>,
}

impl ServerFacts {
    pub fn major(&self) -> i32 {
        self.version_num / 10000
    }

    pub fn extension(&self, name: &str) -> Option<&Extension> {
        self.extensions.iter().find(|e| e.name == name)
    }

    /// How many relations one transaction of tsxfer may lock on this server: a quarter of
    /// the shared lock table (others need room too), at most `cap`, at least 10.
    pub fn lock_batch(&self, cap: usize) -> usize {
        usize::try_from(self.lock_slots / 4)
            .unwrap_or(cap)
            .clamp(10, cap.max(10))
    }
}

async fn facts_from_rows(
    row: tokio_postgres::Row,
    ext_rows: Vec<tokio_postgres::Row>,
) -> ServerFacts {
    ServerFacts {
        version_num: row.get("version_num"),
        version: row.get("version"),
        dbname: row.get("dbname"),
        login: row.get("login"),
        superuser: row.get("superuser"),
        large_objects: row.get("large_objects"),
        max_locks: row.get("max_locks"),
        max_connections: row.get("max_connections"),
        lock_slots: row.get("lock_slots"),
        timescaledb_license: row.get("timescaledb_license"),
        foreign_data_wrappers: row.get("foreign_data_wrappers"),
        extensions: ext_rows
            .iter()
            .map(|r| Extension {
                name: r.get(0),
                version: r.get(1),
                schema: r.get(2),
            })
            .collect(),
    }
}

/// What a server says about itself, asked the same way of the source and of the target.
const FACTS_SQL: &str = include_str!("../sql/source_facts.sql");
const EXTENSIONS_SQL: &str = include_str!("../sql/extensions.sql");

pub async fn source_facts(src: &Source) -> Result<ServerFacts> {
    let row = src.query_one(FACTS_SQL, &[]).await?;
    Ok(facts_from_rows(row, src.query(EXTENSIONS_SQL, &[]).await?).await)
}

pub async fn target_facts(tgt: &Target) -> Result<ServerFacts> {
    let row = tgt.query_one(FACTS_SQL, &[]).await?;
    Ok(facts_from_rows(row, tgt.query(EXTENSIONS_SQL, &[]).await?).await)
}

/// Whether the source uses multi-node (distributed hypertables), which tsxfer refuses.
pub async fn is_multinode(src: &Source) -> Result<bool> {
    let row = src
        .query_one(
            "SELECT to_regclass('_timescaledb_catalog.hypertable_data_node') IS NOT NULL
                AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                            WHERE attrelid = '_timescaledb_catalog.hypertable'::regclass
                              AND attname = 'replication_factor' AND NOT attisdropped)",
            &[],
        )
        .await?;
    if !row.get::<_, bool>(0) {
        return Ok(false);
    }
    let row = src
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM _timescaledb_catalog.hypertable
                            WHERE replication_factor IS NOT NULL AND replication_factor <> 0)",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// The chunk tables of the source (schema, table), for dumping their DDL in batches.
pub async fn chunk_tables(src: &Source) -> Result<Vec<(String, String)>> {
    src.pairs(
        "SELECT schema_name::text, table_name::text FROM _timescaledb_catalog.chunk
         WHERE NOT dropped ORDER BY id",
    )
    .await
}

/// Every schema of the source that holds user objects (not system, not TimescaleDB's).
pub async fn user_schemas(src: &Source) -> Result<Vec<String>> {
    let rows = src
        .query(
            "SELECT n.nspname::text FROM pg_catalog.pg_namespace n
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
               AND n.nspname NOT IN ('_timescaledb_catalog', '_timescaledb_config')
             ORDER BY 1",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Names of the relations in the chunk schemas that are not chunks (compressed and
/// materialization hypertables, views), by schema: the main dump must keep those.
pub async fn non_chunk_relation_names(src: &Source) -> Result<BTreeMap<String, Vec<String>>> {
    let rows = src
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname IN (SELECT DISTINCT schema_name FROM _timescaledb_catalog.chunk)
               AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S', 'c')
               AND NOT EXISTS (SELECT 1 FROM _timescaledb_catalog.chunk ch
                               WHERE ch.schema_name = n.nspname AND ch.table_name = c.relname
                                 AND NOT ch.dropped)",
            &[],
        )
        .await?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rows {
        out.entry(r.get(0)).or_default().push(r.get(1));
    }
    Ok(out)
}

/// All copy units of the source, read inside the snapshot transaction of `src`.
/// Sizes are read on `sizer`, a second connection outside that transaction, so the
/// snapshot transaction takes no relation locks.
pub async fn copy_units(
    src: &Source,
    sizer: &Source,
    facts: &ServerFacts,
) -> Result<Vec<CopyUnit>> {
    let mut kinds: HashMap<u32, String> = HashMap::new();
    if facts.extension("timescaledb").is_some() {
        for r in src
            .query(include_str!("../sql/source_timescale_kinds.sql"), &[])
            .await?
        {
            kinds.insert(r.get(0), r.get(1));
        }
    }
    let mut units = Vec::new();
    for r in src
        .query(include_str!("../sql/source_units.sql"), &[])
        .await?
    {
        let oid: u32 = r.get("oid");
        let kind = match kinds.get(&oid).map(String::as_str) {
            Some("hypertable") => UnitKind::Hypertable,
            Some("chunk") => UnitKind::Chunk,
            Some("compressed_chunk") => UnitKind::CompressedChunk,
            _ if r.get::<_, bool>("is_partition") => UnitKind::Partition,
            _ => UnitKind::Table,
        };
        units.push(CopyUnit::table(
            oid,
            r.get("schema_name"),
            r.get("table_name"),
            kind,
        ));
    }
    for r in src
        .query(include_str!("../sql/source_extension_config.sql"), &[])
        .await?
    {
        let mut unit = CopyUnit::table(
            r.get("oid"),
            r.get("schema_name"),
            r.get("table_name"),
            UnitKind::ExtensionConfig,
        );
        let cond: String = r.get("condition");
        unit.filter = Some(cond).filter(|c| !c.trim().is_empty());
        units.push(unit);
    }
    let oids: Vec<u32> = units.iter().map(|u| u.oid).collect();
    let mut columns: HashMap<u32, (Vec<String>, bool, Vec<String>)> = HashMap::new();
    for r in src
        .query(include_str!("../sql/source_columns.sql"), &[&oids])
        .await?
    {
        columns.insert(r.get(0), (r.get(1), r.get(2), r.get(3)));
    }
    let mut sizes: HashMap<u32, i64> = HashMap::new();
    // Sizing locks a table and its TOAST table until the end of the transaction.
    for batch in oids.chunks(facts.lock_batch(1000) / 2) {
        let batch = batch.to_vec();
        for r in sizer
            .query(include_str!("../sql/source_table_sizes.sql"), &[&batch])
            .await?
        {
            let size: Option<i64> = r.get(1);
            sizes.insert(r.get(0), size.unwrap_or(0));
        }
    }
    for u in &mut units {
        if let Some((cols, binary, compressed)) = columns.remove(&u.oid) {
            u.columns = cols;
            u.binary = binary;
            u.compressed_columns = compressed;
        }
        u.estimated_bytes = sizes.get(&u.oid).copied().unwrap_or(0);
    }
    if facts.large_objects > 0 {
        let row = sizer
            .query_one(
                "SELECT COALESCE(sum(octet_length(data)), 0)::int8 FROM pg_catalog.pg_largeobject",
                &[],
            )
            .await;
        let bytes = row.map(|r| r.get::<_, i64>(0)).unwrap_or(0);
        units.push(CopyUnit::large_objects(facts.large_objects, bytes));
    }
    Ok(units)
}

/// Where the large objects are cut into parts of `per_part` objects: the OID of every
/// `per_part`-th object after the first, in OID order. Any boundaries are correct (the
/// parts cover every OID whatever they are); these make parts of even counts.
pub async fn large_object_starts(reader: &Source, per_part: i64) -> Result<Vec<u32>> {
    let rows = reader
        .query(
            "SELECT oid FROM (SELECT oid, row_number() OVER (ORDER BY oid) AS n
                              FROM pg_catalog.pg_largeobject_metadata) AS m
             WHERE n > 1 AND (n - 1) % $1 = 0 ORDER BY oid",
            &[&per_part],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The heap pages (main fork) of the tables `oids` now, read on `sizer` outside the
/// snapshot: where a table copied in parts is cut. A table that grew since the snapshot
/// is covered all the same: its last part has no upper bound.
pub async fn heap_pages(sizer: &Source, oids: &[u32]) -> Result<HashMap<u32, u32>> {
    let mut pages = HashMap::new();
    for r in sizer
        .query(
            "SELECT o, LEAST(pg_catalog.pg_relation_size(o, 'main')
                             / current_setting('block_size')::int8, 4294967294)
             FROM unnest($1::oid[]) AS o",
            &[&oids],
        )
        .await?
    {
        let n: Option<i64> = r.get(1);
        pages.insert(r.get(0), n.unwrap_or(0) as u32);
    }
    Ok(pages)
}

/// User sequences (not extension members) and their positions, read on `src`. Sequence
/// positions are not transactional: like pg_dump, this reads them as they are now.
pub async fn sequence_values(src: &Source) -> Result<Vec<(String, i64, bool)>> {
    let names: Vec<String> = src
        .query(include_str!("../sql/source_sequences.sql"), &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut values = Vec::with_capacity(names.len());
    for batch in names.chunks(100) {
        let sql = batch
            .iter()
            .map(|n| {
                format!(
                    "SELECT {}::text, last_value, is_called FROM {n}",
                    crate::quote::literal(n)
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        for r in src.query(&sql, &[]).await? {
            values.push((r.get(0), r.get(1), r.get(2)));
        }
    }
    Ok(values)
}

/// Materialized views that hold data on the source, in creation order (a view built on
/// another comes after it).
pub async fn populated_matviews(src: &Source) -> Result<Vec<String>> {
    Ok(src
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'm' AND c.relispopulated
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                               WHERE d.classid = 'pg_catalog.pg_class'::regclass
                                 AND d.objid = c.oid AND d.deptype = 'e')
             ORDER BY c.oid",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The source's identity ([`crate::pg::IDENTITY_SQL`]).
pub async fn source_identity(src: &Source) -> Result<String> {
    Ok(src.query_one(crate::pg::IDENTITY_SQL, &[]).await?.get(0))
}

/// A foreign key that references a hypertable (or a table that becomes one). pg_restore
/// would add it while TimescaleDB is in restoring mode, where PostgreSQL checks it against
/// the hypertable's own (empty) table and fails; added after restoring mode, TimescaleDB
/// checks it against the chunks and makes one on each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HypertableForeignKey {
    /// The constraint's OID on the source (its post-data archive entry's).
    pub oid: u32,
    /// `ALTER TABLE ... ADD CONSTRAINT ...`, from the source's catalog.
    pub statement: String,
    /// The referencing table, quoted and qualified.
    pub table: String,
    pub name: String,
}

/// The foreign keys that reference the hypertables of the source or the tables in
/// `converted` (quoted and qualified).
pub async fn hypertable_foreign_keys(
    src: &Source,
    facts: &ServerFacts,
    converted: &[String],
) -> Result<Vec<HypertableForeignKey>> {
    let mut referenced: Vec<String> = converted.to_vec();
    if facts.extension("timescaledb").is_some() {
        referenced.extend(
            src.query(
                "SELECT format('%I.%I', schema_name, table_name) FROM _timescaledb_catalog.hypertable",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get::<_, String>(0)),
        );
    }
    if referenced.is_empty() {
        return Ok(Vec::new());
    }
    Ok(src
        .query(
            include_str!("../sql/source_hypertable_fks.sql"),
            &[&referenced],
        )
        .await?
        .iter()
        .map(|r| HypertableForeignKey {
            oid: r.get(0),
            statement: r.get(1),
            table: r.get(2),
            name: r.get(3),
        })
        .collect())
}

/// Tables whose row-level security applies to their owner too (`FORCE ROW LEVEL
/// SECURITY`), quoted and qualified.
pub async fn forced_row_security(src: &Source) -> Result<Vec<String>> {
    Ok(src
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relforcerowsecurity AND c.relkind IN ('r', 'p')
             ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Chunks of the target in TimescaleDB's hypercore access method, by (schema, name), each
/// with what counts its rows the way COPY reads them out: a hypercore chunk's scans show
/// its compressed rows too, which COPY leaves out (they travel in the compressed chunk).
pub async fn hypercore_counts(tgt: &Target) -> Result<HashMap<(String, String), String>> {
    let rows = tgt
        .query(
            "SELECT ch.schema_name::text, ch.table_name::text,
                    format('SELECT (SELECT count(*) FROM ONLY %1$I.%2$I)
                                   - (SELECT COALESCE(sum(_ts_meta_count), 0) FROM ONLY %3$I.%4$I)',
                           ch.schema_name, ch.table_name, cc.schema_name, cc.table_name)
             FROM _timescaledb_catalog.chunk ch
             JOIN _timescaledb_catalog.chunk cc ON cc.id = ch.compressed_chunk_id
             JOIN pg_catalog.pg_namespace n ON n.nspname = ch.schema_name
             JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = ch.table_name
             JOIN pg_catalog.pg_am a ON a.oid = c.relam
             WHERE a.amname = 'hypercore'",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect())
}

/// Publications only a superuser may create (`FOR ALL TABLES`) and schemas added to
/// publications (`FOR TABLES IN SCHEMA`, superuser only in PostgreSQL 15), by the OID of
/// their archive entry, with a name for each.
pub async fn superuser_publications(src: &Source) -> Result<Vec<(u32, String)>> {
    src.pairs(
        "SELECT oid, format('publication %I (FOR ALL TABLES)', pubname) FROM pg_catalog.pg_publication
         WHERE puballtables
         UNION ALL
         SELECT pn.oid, format('publication %I: tables in schema %I', p.pubname, n.nspname)
         FROM pg_catalog.pg_publication_namespace pn
         JOIN pg_catalog.pg_publication p ON p.oid = pn.pnpubid
         JOIN pg_catalog.pg_namespace n ON n.oid = pn.pnnspid
         ORDER BY 2",
    )
    .await
}

/// User mappings only a superuser may make (`password_required 'false'`, postgres_fdw's
/// way of letting a mapping connect without a password), by the tag of their archive
/// entry (pg_dump gives them no OID there), with a name for each.
pub async fn superuser_user_mappings(src: &Source) -> Result<Vec<(String, String)>> {
    src.pairs(
        "SELECT format('USER MAPPING %s SERVER %s', quote_ident(usename), quote_ident(srvname)),
                format('user mapping for %s on server %I (password_required false)',
                       CASE WHEN umuser = 0 THEN 'PUBLIC' ELSE quote_ident(usename) END, srvname)
         FROM pg_catalog.pg_user_mappings
         WHERE 'password_required=false' = ANY (umoptions)
         ORDER BY 2",
    )
    .await
}
