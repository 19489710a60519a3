//! TimescaleDB's catalog rows (`_timescaledb_catalog`, `_timescaledb_config`), copied from
//! the run's snapshot of the source into the target, less the rows of hypertables the
//! filters leave out. Tables go one at a time in foreign-key order, in one target
//! transaction, after the pre-data schema (rows of type `regclass` name its tables), the
//! way pg_dump dumps them: text COPY of the rows the extension's own condition picks.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, pin_mut};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::objects::schema;
use crate::pg::conninfo::ConnInfo;
use crate::pg::{Source, Target, TargetTx};
use crate::quote::{literal, qualified};

/// A table or sequence TimescaleDB marks for dumping (`pg_extension.extconfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRelation {
    pub schema: String,
    pub name: String,
    pub is_sequence: bool,
    /// The extension's row condition (`WHERE ...`), or empty.
    pub condition: String,
}

impl ConfigRelation {
    /// `schema.name` unquoted, as foreign-key maps name tables.
    pub fn key(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// The source's TimescaleDB configuration tables and sequences.
pub async fn config_relations(src: &Source) -> Result<Vec<ConfigRelation>> {
    let rows = src
        .query(
            "SELECT n.nspname::text, c.relname::text, c.relkind = 'S', COALESCE(u.cond, '')
             FROM pg_catalog.pg_extension e
             CROSS JOIN LATERAL unnest(e.extconfig, e.extcondition) AS u (cfg, cond)
             JOIN pg_catalog.pg_class c ON c.oid = u.cfg
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE e.extname = 'timescaledb' AND c.relkind IN ('r', 'S')
             ORDER BY 1, 2",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ConfigRelation {
            schema: r.get(0),
            name: r.get(1),
            is_sequence: r.get(2),
            condition: r.get(3),
        })
        .collect())
}

/// Rows of the chunks of the hypertables in `{L}`.
const LEFT_OUT_CHUNKS: &str =
    "SELECT ch.id FROM _timescaledb_catalog.chunk ch WHERE ch.hypertable_id = ANY ({L})";

/// Which rows (alias `r`) of a catalog table of TimescaleDB 2.19 to keep when the
/// hypertables whose ids are the array `left_out` are left out, as an SQL condition;
/// `None` for a table this version of tsxfer does not know.
fn keep_condition(table: &str, left_out: &str) -> Option<String> {
    let condition = match table {
        "_timescaledb_catalog.hypertable" => "r.id <> ALL ({L})".to_string(),
        "_timescaledb_catalog.tablespace"
        | "_timescaledb_catalog.dimension"
        | "_timescaledb_catalog.chunk"
        | "_timescaledb_catalog.chunk_index"
        | "_timescaledb_catalog.chunk_column_stats" => "r.hypertable_id <> ALL ({L})".into(),
        "_timescaledb_config.bgw_job" => {
            "r.hypertable_id IS NULL OR r.hypertable_id <> ALL ({L})".into()
        }
        "_timescaledb_catalog.dimension_slice" => "r.dimension_id NOT IN (SELECT d.id FROM _timescaledb_catalog.dimension d WHERE d.hypertable_id = ANY ({L}))".into(),
        "_timescaledb_catalog.chunk_constraint" | "_timescaledb_catalog.compression_chunk_size" => {
            format!("r.chunk_id NOT IN ({LEFT_OUT_CHUNKS})")
        }
        // Settings rows name a hypertable or a chunk by regclass.
        "_timescaledb_catalog.compression_settings" => "NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_class c
                JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                JOIN (SELECT h.schema_name, h.table_name FROM _timescaledb_catalog.hypertable h
                      WHERE h.id = ANY ({L})
                      UNION ALL
                      SELECT ch.schema_name, ch.table_name FROM _timescaledb_catalog.chunk ch
                      WHERE ch.hypertable_id = ANY ({L})) AS x
                  ON x.schema_name = n.nspname AND x.table_name = c.relname
                WHERE c.oid = r.relid)"
            .into(),
        "_timescaledb_catalog.continuous_agg"
        | "_timescaledb_catalog.continuous_aggs_bucket_function"
        | "_timescaledb_catalog.continuous_aggs_watermark"
        | "_timescaledb_catalog.continuous_agg_migrate_plan"
        | "_timescaledb_catalog.continuous_agg_migrate_plan_step" => {
            "r.mat_hypertable_id <> ALL ({L})".into()
        }
        "_timescaledb_catalog.continuous_aggs_materialization_invalidation_log" => {
            "r.materialization_id IS NULL OR r.materialization_id <> ALL ({L})".into()
        }
        // What a raw hypertable keeps for its continuous aggregates goes when all of them
        // are left out, as when TimescaleDB drops the last one.
        "_timescaledb_catalog.continuous_aggs_invalidation_threshold"
        | "_timescaledb_catalog.continuous_aggs_hypertable_invalidation_log" => {
            "r.hypertable_id <> ALL ({L})
             AND (NOT EXISTS (SELECT 1 FROM _timescaledb_catalog.continuous_agg a
                              WHERE a.raw_hypertable_id = r.hypertable_id)
                  OR EXISTS (SELECT 1 FROM _timescaledb_catalog.continuous_agg a
                             WHERE a.raw_hypertable_id = r.hypertable_id
                               AND a.mat_hypertable_id <> ALL ({L})))"
                .into()
        }
        "_timescaledb_catalog.metadata" => "true".into(),
        _ => return None,
    };
    Some(condition.replace("{L}", left_out))
}

/// An `int4[]` literal of hypertable ids.
fn id_array(ids: &BTreeSet<i32>) -> String {
    let list: Vec<String> = ids.iter().map(i32::to_string).collect();
    format!("'{{{}}}'::int4[]", list.join(","))
}

/// The source query that reads the rows of `table` to copy: the extension's condition,
/// then the filters' (a table without a known condition travels whole).
fn source_copy_sql(table: &ConfigRelation, columns: &[String], left_out: &BTreeSet<i32>) -> String {
    let cols: Vec<String> = columns.iter().map(|c| crate::quote::ident(c)).collect();
    let keep = keep_condition(&table.key(), &id_array(left_out)).unwrap_or_else(|| "true".into());
    format!(
        "COPY (SELECT {cols} FROM (SELECT * FROM {rel} {cond}) AS r WHERE {keep}) TO STDOUT",
        cols = cols.join(", "),
        rel = qualified(&table.schema, &table.name),
        cond = table.condition,
    )
}

/// Session settings that make both sides write and read values the same way.
const TEXT_SETTINGS: [(&str, &str); 3] = [
    ("DateStyle", "ISO"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),
];

/// TimescaleDB's catalog rows as read from the source: each table's rows (text COPY, in
/// foreign-key order) and each catalog sequence's position.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CatalogRows {
    pub tables: Vec<CatalogTable>,
    /// (sequence, last value, is_called)
    pub sequences: Vec<(String, i64, bool)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogTable {
    pub schema: String,
    pub name: String,
    pub columns: Vec<String>,
    /// The rows in COPY's text format (UTF-8: the driver's client encoding).
    pub data: String,
}

/// Foreign keys among TimescaleDB's catalog tables: table → tables it references.
async fn references(reader: &Source) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let rows = reader
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

/// Reads the catalog rows and sequence positions of `relations` in the snapshot
/// `snapshot` of the source, leaving out the rows of the hypertables `left_out`.
pub async fn read(
    source: &ConnInfo,
    snapshot: &str,
    relations: &[ConfigRelation],
    left_out: &BTreeSet<i32>,
) -> Result<CatalogRows> {
    let mut out = CatalogRows::default();
    if relations.is_empty() {
        return Ok(out);
    }
    let reader = Source::connect(source, "catalog rows").await?;
    reader.begin_snapshot(Some(snapshot)).await?;
    for (name, value) in TEXT_SETTINGS {
        reader
            .query(
                "SELECT pg_catalog.set_config($1, $2, false)",
                &[&name, &value],
            )
            .await?;
    }
    let tables: BTreeMap<String, &ConfigRelation> = relations
        .iter()
        .filter(|r| !r.is_sequence)
        .map(|r| (r.key(), r))
        .collect();
    let names: Vec<String> = tables.keys().cloned().collect();
    for name in schema::fk_order(&names, &references(&reader).await?) {
        let table = tables[&name];
        let columns: Vec<String> = reader
            .query(
                "SELECT a.attname::text FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = pg_catalog.format('%I.%I', $1::text, $2::text)::pg_catalog.regclass
                   AND a.attnum > 0 AND NOT a.attisdropped
                 ORDER BY a.attnum",
                &[&table.schema, &table.name],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let stream = reader
            .copy_out(&source_copy_sql(table, &columns, left_out))
            .await
            .map_err(|e| e.context(format!("reading the catalog table {name}")))?;
        pin_mut!(stream);
        let mut data = Vec::new();
        while let Some(piece) = stream.next().await {
            data.extend_from_slice(&piece.map_err(Error::from)?);
        }
        let data = String::from_utf8(data).map_err(|_| {
            Error::new(
                ErrorKind::Internal,
                format!("the catalog table {name} came back in another encoding than UTF-8"),
            )
        })?;
        out.tables.push(CatalogTable {
            schema: table.schema.clone(),
            name: table.name.clone(),
            columns,
            data,
        });
    }
    for seq in relations.iter().filter(|r| r.is_sequence) {
        let rel = qualified(&seq.schema, &seq.name);
        let row = reader
            .query_one(&format!("SELECT last_value, is_called FROM {rel}"), &[])
            .await?;
        out.sequences.push((rel, row.get(0), row.get(1)));
    }
    reader.end().await?;
    Ok(out)
}

/// Functions that loaded catalog rows name but the target lacks: a job's procedure or
/// check function, a hypertable's integer "now" function. pg_dump leaves functions out
/// under `-t`, and under `-n` those of other schemas, while the rows stay with what they
/// belong to. One line each, for the report.
/// Only the jobs `jobs` (those loaded) are looked at: the target's own jobs are its
/// business.
pub async fn missing_functions(tgt: &Target, jobs: &[i32]) -> Result<Vec<String>> {
    Ok(tgt
        .query(
            "WITH named (what, schema_name, function_name) AS (
                 SELECT format('job %s calls', id), proc_schema, proc_name
                 FROM _timescaledb_config.bgw_job WHERE id = ANY ($1)
                 UNION ALL
                 SELECT format('job %s checks its config with', id), check_schema, check_name
                 FROM _timescaledb_config.bgw_job WHERE check_name IS NOT NULL AND id = ANY ($1)
                 UNION ALL
                 SELECT format('hypertable %I.%I takes its integer now from', h.schema_name, h.table_name),
                        d.integer_now_func_schema, d.integer_now_func
                 FROM _timescaledb_catalog.dimension d
                 JOIN _timescaledb_catalog.hypertable h ON h.id = d.hypertable_id
                 WHERE d.integer_now_func IS NOT NULL)
             SELECT format('%s %I.%I, which the target does not have (the filters left it out of the schema): create it there',
                           what, schema_name, function_name)
             FROM named
             WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                               JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                               WHERE n.nspname = named.schema_name AND p.proname = named.function_name)
             ORDER BY 1",
            &[&jobs],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The catalog table whose rows with chunk id 0 refer to no chunk.
const COLUMN_STATS: (&str, &str) = ("_timescaledb_catalog", "chunk_column_stats");

/// Splits COPY text rows into those whose `column`-th field is `0` and the others.
fn split_on_zero(data: &str, column: usize) -> (Vec<&str>, String) {
    let mut zero = Vec::new();
    let mut rest = String::new();
    for line in data.lines() {
        if line.split('\t').nth(column) == Some("0") {
            zero.push(line);
        } else {
            rest.push_str(line);
            rest.push('\n');
        }
    }
    (zero, rest)
}

/// Recreates the rows of `chunk_column_stats` that stand for a whole hypertable (chunk id
/// 0). TimescaleDB writes them past the table's foreign key to `chunk`, which a COPY
/// cannot do (nor an UPDATE of a row this transaction wrote); `enable_chunk_skipping`
/// writes them its way, with the id the sequence is set to (the source's), and a row per
/// chunk already loaded, which is deleted again (the source's chunk rows follow). In
/// order of id, so that those passing rows never take the id of one already made.
async fn write_column_stats_heads(
    tgt: &TargetTx<'_>,
    ts: &str,
    table: &CatalogTable,
    heads: &[&str],
) -> Result<()> {
    let field = |line: &str, name: &str| -> Result<String> {
        let at = table
            .columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    format!("the catalog table chunk_column_stats has no column {name}"),
                )
            })?;
        Ok(line.split('\t').nth(at).unwrap_or_default().to_string())
    };
    let number = |line: &str, name: &str| -> Result<i32> {
        let v = field(line, name)?;
        v.parse().map_err(|_| {
            Error::new(
                ErrorKind::Internal,
                format!("chunk_column_stats holds {v:?} where a number belongs"),
            )
        })
    };
    let mut rows = Vec::new();
    for line in heads {
        rows.push((
            number(line, "id")?,
            number(line, "hypertable_id")?,
            copy_text_unescape(&field(line, "column_name")?),
        ));
    }
    rows.sort();
    tgt.execute("SET LOCAL timescaledb.enable_chunk_skipping = on")
        .await?;
    for (id, hypertable, column) in rows {
        let relation: String = tgt
            .query_one(
                "SELECT format('%I.%I', schema_name, table_name) FROM _timescaledb_catalog.hypertable WHERE id = $1",
                &[&hypertable],
            )
            .await?
            .get(0);
        tgt.query(
            "SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence('_timescaledb_catalog.chunk_column_stats', 'id'), $1, false)",
            &[&i64::from(id)],
        )
        .await?;
        tgt.execute(&format!(
            "SELECT {}.enable_chunk_skipping({}::regclass, {}, true)",
            crate::quote::ident(ts),
            literal(&relation),
            literal(&column)
        ))
        .await
        .map_err(|e| e.context(format!("enabling chunk skipping on {relation} ({column})")))?;
        tgt.query(
            "DELETE FROM _timescaledb_catalog.chunk_column_stats
             WHERE hypertable_id = $1 AND column_name = $2 AND chunk_id <> 0",
            &[&hypertable, &column],
        )
        .await?;
    }
    Ok(())
}

/// A field of COPY's text format as its value (backslash escapes undone).
fn copy_text_unescape(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Gives the jobs of `managed` roles (the source's superuser and the like, which are not
/// created on the target) to `login`, as every other object of theirs.
async fn map_job_owners(
    tgt: &TargetTx<'_>,
    managed: &[String],
    login: &str,
    jobs: &[i32],
) -> Result<u64> {
    let rows = tgt
        .query(
            "WITH moved AS (
                 UPDATE _timescaledb_config.bgw_job j
                 SET owner = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $2)::pg_catalog.regrole
                 WHERE j.id = ANY ($3)
                   AND j.owner IN (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = ANY ($1))
                   AND j.owner <> (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $2)
                 RETURNING 1)
             SELECT count(*) FROM moved",
            &[&managed, &login, &jobs],
        )
        .await?;
    Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)) as u64)
}

/// The ids of the jobs in `rows` (the target's own jobs are not among them).
pub fn loaded_jobs(rows: &CatalogRows) -> Vec<i32> {
    rows.tables
        .iter()
        .filter(|t| t.schema == "_timescaledb_config" && t.name == "bgw_job")
        .flat_map(|t| {
            let at = t.columns.iter().position(|c| c == "id");
            t.data
                .lines()
                .filter_map(move |l| at.and_then(|a| l.split('\t').nth(a)?.parse().ok()))
        })
        .collect()
}

/// Who owns what on the target, for catalog rows that name a role.
pub struct CatalogOwners<'a> {
    /// Source roles not created on the target, whose objects go to `login`.
    pub managed: &'a [String],
    pub login: &'a str,
}

/// Loads `rows` into the target in one transaction, after the pre-data schema (rows of
/// type `regclass` name its tables), TimescaleDB being in schema `ts`. Returns how many
/// rows were loaded, and how many jobs were given to the login role.
pub async fn write(
    tgt: &mut Target,
    ts: &str,
    rows: &CatalogRows,
    owners: &CatalogOwners<'_>,
) -> Result<(u64, u64)> {
    let settings: Vec<String> = TEXT_SETTINGS
        .iter()
        .map(|(name, value)| format!("SET LOCAL {name} = {}", literal(value)))
        .collect();
    let tx = tgt.begin().await?;
    let tgt = &tx;
    tgt.execute(&settings.join("; ")).await?;
    let loaded = async {
        let mut total = 0;
        for table in &rows.tables {
            let into = format!(
                "COPY {} ({}) FROM STDIN",
                qualified(&table.schema, &table.name),
                table
                    .columns
                    .iter()
                    .map(|c| crate::quote::ident(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let name = format!("{}.{}", table.schema, table.name);
            let mut data = table.data.clone();
            let stats = (table.schema.as_str(), table.name.as_str()) == COLUMN_STATS;
            if let Some(at) = table.columns.iter().position(|c| stats && c == "chunk_id") {
                let (heads, rest) = split_on_zero(&table.data, at);
                write_column_stats_heads(tgt, ts, table, &heads).await?;
                total += heads.len() as u64;
                data = rest;
            }
            let sink = tgt.copy_in(&into).await?;
            pin_mut!(sink);
            let copied = async {
                sink.send(Bytes::from(data)).await?;
                sink.as_mut().finish().await
            }
            .await
            .map_err(|e| Error::from(e).context(format!("loading the catalog table {name}")))?;
            total += copied;
        }
        for (rel, value, called) in &rows.sequences {
            tgt.execute(&format!(
                "SELECT pg_catalog.setval({}, {value}, {called})",
                literal(rel)
            ))
            .await?;
        }
        let jobs = map_job_owners(tgt, owners.managed, owners.login, &loaded_jobs(rows)).await?;
        Ok::<_, Error>((total, jobs))
    }
    .await?;
    tx.commit().await?;
    Ok(loaded)
}

/// Refuses to leave hypertables out when the source's catalog has a table whose rows
/// tsxfer cannot tell apart by hypertable.
pub fn check_known(relations: &[ConfigRelation], left_out: &BTreeSet<i32>) -> Result<()> {
    if left_out.is_empty() {
        return Ok(());
    }
    let unknown: Vec<String> = relations
        .iter()
        .filter(|r| !r.is_sequence && keep_condition(&r.key(), "'{}'::int4[]").is_none())
        .map(ConfigRelation::key)
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Preflight,
        format!(
            "the filters leave out hypertables, but the source's TimescaleDB catalog has tables tsxfer cannot filter by hypertable ({}); migrate all hypertables",
            unknown.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables TimescaleDB 2.19.3 marks for dumping.
    const CATALOG_2_19: &[&str] = &[
        "_timescaledb_catalog.hypertable",
        "_timescaledb_catalog.tablespace",
        "_timescaledb_catalog.dimension",
        "_timescaledb_catalog.dimension_slice",
        "_timescaledb_catalog.chunk",
        "_timescaledb_catalog.chunk_constraint",
        "_timescaledb_catalog.chunk_index",
        "_timescaledb_catalog.chunk_column_stats",
        "_timescaledb_config.bgw_job",
        "_timescaledb_catalog.metadata",
        "_timescaledb_catalog.continuous_agg",
        "_timescaledb_catalog.continuous_aggs_bucket_function",
        "_timescaledb_catalog.continuous_aggs_invalidation_threshold",
        "_timescaledb_catalog.continuous_aggs_watermark",
        "_timescaledb_catalog.continuous_aggs_hypertable_invalidation_log",
        "_timescaledb_catalog.continuous_aggs_materialization_invalidation_log",
        "_timescaledb_catalog.compression_settings",
        "_timescaledb_catalog.compression_chunk_size",
        "_timescaledb_catalog.continuous_agg_migrate_plan",
        "_timescaledb_catalog.continuous_agg_migrate_plan_step",
    ];

    fn relation(key: &str) -> ConfigRelation {
        let (schema, name) = key.split_once('.').unwrap();
        ConfigRelation {
            schema: schema.into(),
            name: name.into(),
            is_sequence: false,
            condition: String::new(),
        }
    }

    #[test]
    fn every_catalog_table_of_2_19_has_a_condition_naming_the_left_out_ids() {
        for t in CATALOG_2_19 {
            let c = keep_condition(t, "'{7,9}'::int4[]").unwrap();
            assert!(c.contains("'{7,9}'::int4[]") || c == "true", "{t}: {c}");
            assert!(!c.contains("{L}"), "{t}: {c}");
        }
        assert_eq!(keep_condition("_timescaledb_catalog.new_thing", "x"), None);
    }

    #[test]
    fn whole_hypertable_stats_rows_are_told_apart_by_their_chunk_id() {
        let data = "1\t1\t0\tk\t-9\t9\tt\n2\t1\t10\tk\t1\t24\tt\n3\t2\t0\ta\\tb\t-9\t9\tf\n";
        let (heads, rest) = split_on_zero(data, 2);
        assert_eq!(heads, ["1\t1\t0\tk\t-9\t9\tt", "3\t2\t0\ta\\tb\t-9\t9\tf"]);
        assert_eq!(rest, "2\t1\t10\tk\t1\t24\tt\n");
        assert_eq!(copy_text_unescape("a\\tb\\\\c"), "a\tb\\c");
    }

    #[test]
    fn ids_become_an_array_literal() {
        assert_eq!(id_array(&BTreeSet::new()), "'{}'::int4[]");
        assert_eq!(id_array(&[9, 1, 5].into()), "'{1,5,9}'::int4[]");
    }

    #[test]
    fn the_extension_condition_comes_first_then_the_filters() {
        let mut job = relation("_timescaledb_config.bgw_job");
        job.condition = "WHERE id >= 1000".into();
        let sql = source_copy_sql(&job, &["id".into(), "hypertable_id".into()], &[3].into());
        assert_eq!(
            sql,
            "COPY (SELECT \"id\", \"hypertable_id\" FROM (SELECT * FROM \"_timescaledb_config\".\"bgw_job\" WHERE id >= 1000) AS r \
             WHERE r.hypertable_id IS NULL OR r.hypertable_id <> ALL ('{3}'::int4[])) TO STDOUT"
        );
    }

    #[test]
    fn unknown_catalog_tables_refuse_only_a_partial_migration() {
        let mut relations: Vec<ConfigRelation> = CATALOG_2_19.iter().map(|t| relation(t)).collect();
        assert!(check_known(&relations, &[1].into()).is_ok());
        relations.push(relation("_timescaledb_catalog.hypertable_data_node"));
        assert!(check_known(&relations, &BTreeSet::new()).is_ok());
        let e = check_known(&relations, &[1].into()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Preflight);
        assert!(e.message().contains("hypertable_data_node"));
    }
}
