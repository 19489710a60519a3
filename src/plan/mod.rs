//! Work units and their order: a pure function from what the catalog says to the order the
//! copy pool takes units in.

pub mod unit_book;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::quote;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    Table,
    Partition,
    /// A hypertable's parent table (normally empty: its rows live in chunks).
    Hypertable,
    Chunk,
    /// The internal table of a compressed chunk, copied as it is.
    CompressedChunk,
    /// Rows users added to another extension's configuration table.
    ExtensionConfig,
    LargeObjects,
}

impl UnitKind {
    /// Every unit kind, in the order summaries list them.
    pub const ALL: [UnitKind; 7] = [
        UnitKind::Table,
        UnitKind::Partition,
        UnitKind::Hypertable,
        UnitKind::Chunk,
        UnitKind::CompressedChunk,
        UnitKind::ExtensionConfig,
        UnitKind::LargeObjects,
    ];

    /// The kind [`UnitKind::label`] names.
    pub fn from_label(label: &str) -> Option<UnitKind> {
        UnitKind::ALL.into_iter().find(|k| k.label() == label)
    }

    pub fn label(self) -> &'static str {
        match self {
            UnitKind::Table => "table",
            UnitKind::Partition => "partition",
            UnitKind::Hypertable => "hypertable",
            UnitKind::Chunk => "chunk",
            UnitKind::CompressedChunk => "compressed chunk",
            UnitKind::ExtensionConfig => "extension config",
            UnitKind::LargeObjects => "large objects",
        }
    }
}

/// One part of a table copied in several (a range of its pages), so that several streams
/// share a big table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pages {
    /// Which part (from 1), of how many.
    pub part: u32,
    pub parts: u32,
    /// The first page of the part; the first part has no lower bound.
    pub from: u32,
    /// The first page of the next part; the last part has no upper bound, so it also
    /// takes rows in pages the table grew by after the plan was made.
    pub to: Option<u32>,
}

/// One piece of data that one COPY stream moves in one target transaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyUnit {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub kind: UnitKind,
    /// Columns COPY moves, in table order (dropped and generated columns left out).
    pub columns: Vec<String>,
    /// Binary COPY when every column's type allows it; text otherwise.
    pub binary: bool,
    /// A WHERE condition (extension configuration tables only).
    pub filter: Option<String>,
    /// Columns of TimescaleDB's compressed_data type (compressed chunks only).
    pub compressed_columns: Vec<String>,
    /// Send TimescaleDB's one-byte "all values NULL" placeholder in those columns as SQL
    /// NULL: TimescaleDB 2.19 cannot read its own placeholder back (timescaledb#8893),
    /// and reads a NULL there as "every value NULL" when, as on a freshly restored
    /// chunk, the column has no missing-value default. A binary COPY is rewritten as it
    /// passes ([`crate::copy::NullPlaceholderRewriter`]), a text COPY by its query.
    pub null_placeholders: bool,
    /// The target table was made a hypertable (`--hypertable`): its rows land in chunks.
    #[serde(default)]
    pub into_hypertable: bool,
    pub estimated_bytes: i64,
    /// Known up front only for large objects.
    pub estimated_rows: Option<i64>,
    /// Set when the table is copied in parts: this unit's range of pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<Pages>,
}

impl CopyUnit {
    pub fn table(oid: u32, schema: String, name: String, kind: UnitKind) -> CopyUnit {
        CopyUnit {
            oid,
            schema,
            name,
            kind,
            columns: Vec::new(),
            binary: true,
            filter: None,
            compressed_columns: Vec::new(),
            null_placeholders: false,
            into_hypertable: false,
            estimated_bytes: 0,
            estimated_rows: None,
            pages: None,
        }
    }

    pub fn large_objects(count: i64, bytes: i64) -> CopyUnit {
        CopyUnit {
            estimated_bytes: bytes,
            estimated_rows: Some(count),
            ..CopyUnit::table(
                0,
                String::new(),
                "large objects".into(),
                UnitKind::LargeObjects,
            )
        }
    }

    /// The quoted `schema.table` (or "large objects").
    pub fn relation(&self) -> String {
        if self.kind == UnitKind::LargeObjects {
            self.name.clone()
        } else {
            quote::qualified(&self.schema, &self.name)
        }
    }

    /// What people read: the relation, and which part of it for a table copied in parts.
    pub fn title(&self) -> String {
        match self.pages {
            Some(p) => format!("{} (part {} of {})", self.relation(), p.part, p.parts),
            None => self.relation(),
        }
    }

    /// Whether the unit is a whole plain table or partition bigger than `threshold`, to
    /// be copied in parts (a configuration table's condition keeps it whole).
    pub fn splits(&self, threshold: i64) -> bool {
        matches!(self.kind, UnitKind::Table | UnitKind::Partition)
            && self.can_be_split()
            && self.pages.is_none()
            && self.estimated_bytes > threshold
    }

    /// Whether the unit may be copied in parts: a whole plain table or partition (by
    /// ranges of its pages), or the large objects (by ranges of their OIDs).
    pub fn can_be_split(&self) -> bool {
        matches!(
            self.kind,
            UnitKind::Table | UnitKind::Partition | UnitKind::LargeObjects
        ) && self.filter.is_none()
    }

    /// The unit's large objects as a binary COPY of rows (oid, comment, offset, data) of
    /// at most [`LARGE_OBJECT_SLICE`] bytes each, the comment on the first slice only
    /// (large-object units only). No object is read whole, so none is limited by the
    /// 1 GB of a value, and the server holds one slice per object at a time.
    pub fn large_objects_copy_out_sql(&self) -> String {
        let n = LARGE_OBJECT_SLICE;
        format!(
            "COPY (WITH RECURSIVE slice(loid, comment, off, data) AS (
                     SELECT oid, pg_catalog.obj_description(oid, 'pg_largeobject'), 0::int8,
                            pg_catalog.lo_get(oid, 0, {n})
                     FROM pg_catalog.pg_largeobject_metadata WHERE {}
                   UNION ALL
                     SELECT loid, NULL, off + {n}, pg_catalog.lo_get(loid, off + {n}, {n})
                     FROM slice WHERE pg_catalog.octet_length(data) = {n})
                   SELECT loid, comment, off, data FROM slice) TO STDOUT (FORMAT binary)",
            self.large_object_condition()
        )
    }

    /// The large objects the unit takes, as a condition on `oid` (large-object units
    /// only): its range of OIDs when the large objects are copied in parts.
    pub fn large_object_condition(&self) -> String {
        debug_assert_eq!(self.kind, UnitKind::LargeObjects);
        let bounds: Vec<String> = self
            .pages
            .map(|p| {
                [
                    (p.from > 0).then(|| format!("oid >= {}::pg_catalog.oid", p.from)),
                    p.to.map(|to| format!("oid < {to}::pg_catalog.oid")),
                ]
            })
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        if bounds.is_empty() {
            "true".into()
        } else {
            bounds.join(" AND ")
        }
    }

    /// Which part of its table the unit is (0 for a whole table).
    pub fn part(&self) -> u32 {
        self.pages.map_or(0, |p| p.part)
    }

    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote::ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// ` (a, b)`, or nothing for a table without columns.
    fn column_clause(&self) -> String {
        if self.columns.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.column_list())
        }
    }

    fn format_name(&self) -> &'static str {
        if self.binary { "binary" } else { "text" }
    }

    fn format_clause(&self) -> String {
        format!("(FORMAT {})", self.format_name())
    }

    /// Whether the source's query turns the placeholders into NULL (text COPY only).
    fn rewrites_in_sql(&self) -> bool {
        self.null_placeholders && !self.binary && !self.compressed_columns.is_empty()
    }

    /// Positions in the column list of the columns whose placeholders the relay turns
    /// into NULL, for a binary COPY that needs it.
    pub fn placeholder_positions(&self) -> Option<Vec<usize>> {
        if !self.null_placeholders || !self.binary || self.compressed_columns.is_empty() {
            return None;
        }
        Some(
            self.columns
                .iter()
                .enumerate()
                .filter(|(_, c)| self.compressed_columns.contains(c))
                .map(|(i, _)| i)
                .collect(),
        )
    }

    /// The select list when the source side needs a query rather than a plain table.
    fn select_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| {
                let q = quote::ident(c);
                if self.rewrites_in_sql() && self.compressed_columns.contains(c) {
                    format!(
                        "CASE WHEN pg_catalog.pg_column_size({q}) < 8 AND {q}::text = 'Bg==' \
                         THEN NULL ELSE {q} END AS {q}"
                    )
                } else {
                    q
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The rows the unit takes of its table, when not all: the extension's condition of
    /// a configuration table, or the part's range of pages (a TID range scan reads only
    /// those pages).
    fn condition(&self) -> Option<String> {
        if let Some(p) = self.pages {
            let bounds: Vec<String> = [
                (p.from > 0).then(|| format!("ctid >= '({},0)'::pg_catalog.tid", p.from)),
                p.to.map(|to| format!("ctid < '({to},0)'::pg_catalog.tid")),
            ]
            .into_iter()
            .flatten()
            .collect();
            return (!bounds.is_empty()).then(|| format!("WHERE {}", bounds.join(" AND ")));
        }
        self.filter.clone()
    }

    /// The source side: the unit's rows, and only its own (COPY of a table never
    /// includes rows of its inheritance children).
    pub fn copy_out_sql(&self) -> String {
        let condition = self.condition();
        if self.rewrites_in_sql() || condition.is_some() {
            format!(
                "COPY (SELECT {} FROM ONLY {}{}) TO STDOUT {}",
                self.select_list(),
                self.relation(),
                condition.map(|c| format!(" {c}")).unwrap_or_default(),
                self.format_clause()
            )
        } else {
            format!(
                "COPY {}{} TO STDOUT {}",
                self.relation(),
                self.column_clause(),
                self.format_clause()
            )
        }
    }

    pub fn copy_in_sql(&self) -> String {
        format!(
            "COPY {}{} FROM STDIN {}",
            self.relation(),
            self.column_clause(),
            self.format_clause()
        )
    }

    /// Whether the unit fills a leaf table that tsxfer created and fills alone: not a
    /// hypertable's parent (empty; its ANALYZE would read every chunk), not a table that
    /// became a hypertable on the target, not another extension's configuration table
    /// (the target may have rows of its own there), not a part of a table copied in
    /// several (the parts share it). Only such a table is emptied and
    /// loaded with COPY FREEZE (chunks also need a target where TRUNCATE is PostgreSQL's
    /// own, see `copy::CopyOptions`) and analyzed as soon as its copy commits.
    pub fn fills_own_table(&self) -> bool {
        if self.pages.is_some() {
            return false;
        }
        match self.kind {
            UnitKind::Table | UnitKind::Partition | UnitKind::Chunk | UnitKind::CompressedChunk => {
                !self.into_hypertable
            }
            UnitKind::Hypertable | UnitKind::ExtensionConfig | UnitKind::LargeObjects => false,
        }
    }

    /// Empties the unit's own table (a rolled-back attempt left nothing, but COPY FREEZE
    /// needs the table truncated in the current transaction).
    pub fn truncate_sql(&self) -> String {
        format!("TRUNCATE ONLY {}", self.relation())
    }

    /// [`CopyUnit::copy_in_sql`] with FREEZE: rows are written frozen and their pages
    /// all-visible, so neither the index builds, ANALYZE nor VACUUM on the target have
    /// hint bits to set or tuples to freeze afterwards.
    pub fn frozen_copy_in_sql(&self) -> String {
        format!(
            "COPY {}{} FROM STDIN (FORMAT {}, FREEZE)",
            self.relation(),
            self.column_clause(),
            self.format_name()
        )
    }

    /// Counts the unit's rows on the target (for verification); for a part, its whole
    /// table's (rows do not keep their pages on the way).
    pub fn count_sql(&self) -> String {
        match (&self.filter, self.kind) {
            (_, UnitKind::LargeObjects) => {
                "SELECT count(*) FROM pg_catalog.pg_largeobject_metadata".into()
            }
            (None, _) if self.into_hypertable => {
                format!("SELECT count(*) FROM {}", self.relation())
            }
            (Some(cond), _) => format!("SELECT count(*) FROM ONLY {} {}", self.relation(), cond),
            (None, _) => format!("SELECT count(*) FROM ONLY {}", self.relation()),
        }
    }
}

/// Largest first, so the long units start early and the pool ends together; ties by
/// name so a plan reads the same twice.
pub fn order_units(mut units: Vec<CopyUnit>) -> Vec<CopyUnit> {
    units.sort_by(|a, b| {
        b.estimated_bytes
            .cmp(&a.estimated_bytes)
            .then_with(|| a.schema.cmp(&b.schema))
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.part().cmp(&b.part()))
    });
    units
}

/// Most parts one table is split into.
pub const MAX_PARTS: u32 = 1024;

/// When tables are copied in parts.
#[derive(Debug, Clone, Copy)]
pub struct Split {
    /// The size of a part (0: tables are copied whole).
    pub part_bytes: i64,
    /// The streams that share the units.
    pub streams: usize,
}

impl Split {
    /// The tables to copy in parts (by OID): plain tables and partitions bigger than a
    /// part, and than their share of all the units' bytes over the streams. A smaller
    /// table ends before the others' work does, and is better loaded whole (with FREEZE).
    pub fn tables(&self, units: &[CopyUnit]) -> Vec<u32> {
        if self.part_bytes <= 0 {
            return Vec::new();
        }
        let total: i64 = units.iter().map(|u| u.estimated_bytes).sum();
        let threshold = self.part_bytes.max(total / self.streams.max(1) as i64);
        units
            .iter()
            .filter(|u| u.splits(threshold))
            .map(|u| u.oid)
            .collect()
    }
}

/// Splits the tables of `heap_pages` (the tables to split, by OID, with their pages as
/// the plan was made) into ranges of their pages of about `part_bytes` each, so that
/// several streams copy each at once. Other units, and tables of one page, stay whole.
pub fn split_units(
    units: Vec<CopyUnit>,
    part_bytes: i64,
    heap_pages: &HashMap<u32, u32>,
) -> Vec<CopyUnit> {
    let mut out = Vec::with_capacity(units.len());
    for u in units {
        let parts = match heap_pages.get(&u.oid) {
            Some(&pages) if part_bytes > 0 => {
                let wanted = (u.estimated_bytes + part_bytes - 1) / part_bytes;
                wanted.min(i64::from(pages)).min(i64::from(MAX_PARTS)) as u32
            }
            _ => 1,
        };
        if parts < 2 {
            out.push(u);
            continue;
        }
        let pages = heap_pages[&u.oid];
        let start = |i: u32| (u64::from(pages) * u64::from(i) / u64::from(parts)) as u32;
        for i in 0..parts {
            let mut part = u.clone();
            part.estimated_bytes = u.estimated_bytes / i64::from(parts);
            part.pages = Some(Pages {
                part: i + 1,
                parts,
                from: start(i),
                to: (i + 1 < parts).then(|| start(i + 1)),
            });
            out.push(part);
        }
    }
    out
}

/// The most bytes of a large object one row of a COPY of large objects holds.
pub const LARGE_OBJECT_SLICE: i32 = 1 << 20;

/// Large objects one unit copies (at least), each unit in its own target transaction: a
/// run that stops keeps the parts it committed.
pub const LARGE_OBJECTS_PER_UNIT: i64 = 1000;

/// How many large objects each part takes when there are `count`: at least
/// [`LARGE_OBJECTS_PER_UNIT`], and few enough that there are at most [`MAX_PARTS`] parts.
pub fn large_objects_per_part(count: i64) -> i64 {
    let parts = i64::from(MAX_PARTS);
    LARGE_OBJECTS_PER_UNIT.max((count + parts - 1) / parts)
}

/// Cuts the large-objects unit `unit` into parts that start at the OIDs `starts` (in
/// order, the first OID of parts 2 to N, [`large_objects_per_part`] objects apart on the
/// source): part 1 has no lower bound and the last no upper one, so the parts cover every
/// OID once whatever the boundaries are.
pub fn split_large_objects(unit: CopyUnit, starts: &[u32]) -> Vec<CopyUnit> {
    let starts: Vec<u32> = starts.iter().copied().filter(|&s| s > 0).collect();
    if starts.is_empty()
        || starts.len() >= MAX_PARTS as usize
        || starts.windows(2).any(|w| w[0] >= w[1])
    {
        return vec![unit];
    }
    let count = unit.estimated_rows.unwrap_or(0);
    let per_part = large_objects_per_part(count);
    let parts = starts.len() as u32 + 1;
    (0..parts)
        .map(|i| {
            let mut part = unit.clone();
            let before = i64::from(i) * per_part;
            let rows = if i + 1 < parts {
                per_part
            } else {
                (count - before).max(0)
            };
            part.estimated_rows = Some(rows);
            part.estimated_bytes = unit.estimated_bytes / i64::from(parts);
            part.pages = Some(Pages {
                part: i + 1,
                parts,
                from: if i == 0 { 0 } else { starts[i as usize - 1] },
                to: starts.get(i as usize).copied(),
            });
            part
        })
        .collect()
}

/// Human-readable byte count (binary units).
pub fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(schema: &str, name: &str, bytes: i64) -> CopyUnit {
        let mut u = CopyUnit::table(1, schema.into(), name.into(), UnitKind::Table);
        u.estimated_bytes = bytes;
        u.columns = vec!["a".into(), "We\"ird".into()];
        u
    }

    #[test]
    fn largest_units_first_ties_by_name() {
        let ordered = order_units(vec![
            unit("s", "b", 10),
            unit("s", "small", 1),
            unit("s", "a", 10),
            unit("s", "big", 1000),
        ]);
        let names: Vec<_> = ordered.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["big", "a", "b", "small"]);
    }

    #[test]
    fn copy_statements_quote_everything() {
        let mut u = unit("My Schema", "t\"1", 0);
        assert_eq!(
            u.copy_out_sql(),
            "COPY \"My Schema\".\"t\"\"1\" (\"a\", \"We\"\"ird\") TO STDOUT (FORMAT binary)"
        );
        u.binary = false;
        assert_eq!(
            u.copy_in_sql(),
            "COPY \"My Schema\".\"t\"\"1\" (\"a\", \"We\"\"ird\") FROM STDIN (FORMAT text)"
        );
        u.filter = Some("WHERE a > 1".into());
        assert!(
            u.copy_out_sql()
                .starts_with("COPY (SELECT \"a\", \"We\"\"ird\" FROM ONLY")
        );
        assert!(u.count_sql().ends_with("WHERE a > 1"));
    }

    #[test]
    fn placeholders_are_rewritten_by_the_relay_in_binary_and_by_the_query_in_text() {
        let mut u = CopyUnit::table(1, "s".into(), "c".into(), UnitKind::CompressedChunk);
        u.columns = vec![
            "seg".into(),
            "v".into(),
            "_ts_meta_count".into(),
            "w".into(),
        ];
        u.compressed_columns = vec!["v".into(), "w".into()];
        assert_eq!(u.placeholder_positions(), None);
        u.null_placeholders = true;
        assert_eq!(u.placeholder_positions(), Some(vec![1, 3]));
        assert_eq!(
            u.copy_out_sql(),
            "COPY \"s\".\"c\" (\"seg\", \"v\", \"_ts_meta_count\", \"w\") TO STDOUT (FORMAT binary)"
        );
        u.binary = false;
        assert_eq!(u.placeholder_positions(), None);
        let sql = u.copy_out_sql();
        assert!(sql.starts_with("COPY (SELECT \"seg\", CASE WHEN"), "{sql}");
        assert!(
            sql.ends_with("FROM ONLY \"s\".\"c\") TO STDOUT (FORMAT text)"),
            "{sql}"
        );
    }

    #[test]
    fn only_leaf_tables_that_tsxfer_fills_alone_are_its_own() {
        let mut u = unit("s", "t", 0);
        assert!(u.fills_own_table());
        assert_eq!(u.truncate_sql(), "TRUNCATE ONLY \"s\".\"t\"");
        assert_eq!(
            u.frozen_copy_in_sql(),
            "COPY \"s\".\"t\" (\"a\", \"We\"\"ird\") FROM STDIN (FORMAT binary, FREEZE)"
        );
        u.into_hypertable = true;
        assert!(!u.fills_own_table());
        for kind in [
            UnitKind::Partition,
            UnitKind::Chunk,
            UnitKind::CompressedChunk,
        ] {
            u = unit("s", "t", 0);
            u.kind = kind;
            assert!(u.fills_own_table(), "{kind:?}");
        }
        for kind in [UnitKind::Hypertable, UnitKind::ExtensionConfig] {
            u = unit("s", "t", 0);
            u.kind = kind;
            assert!(!u.fills_own_table(), "{kind:?}");
        }
        assert!(!CopyUnit::large_objects(1, 1).fills_own_table());
    }

    /// What extract does: the tables `split` chooses, cut by their `pages`.
    fn split_chosen(
        units: Vec<CopyUnit>,
        split: Split,
        pages: &HashMap<u32, u32>,
    ) -> Vec<CopyUnit> {
        let chosen: HashMap<u32, u32> = split
            .tables(&units)
            .into_iter()
            .filter_map(|oid| pages.get(&oid).map(|&p| (oid, p)))
            .collect();
        split_units(units, split.part_bytes, &chosen)
    }

    #[test]
    fn big_plain_tables_are_split_into_page_ranges_that_cover_every_page() {
        let mut chunk = unit("_timescaledb_internal", "_hyper_1_1_chunk", 900);
        chunk.kind = UnitKind::Chunk;
        chunk.oid = 2;
        let mut small = unit("s", "small", 90);
        small.oid = 3;
        let mut big = unit("s", "big", 1000);
        big.oid = 4;
        let pages = HashMap::from([(2, 100), (3, 10), (4, 101)]);
        let split = |part_bytes| Split {
            part_bytes,
            streams: 2,
        };
        let units = order_units(split_chosen(vec![chunk, small, big], split(300), &pages));
        let names: Vec<String> = units.iter().map(CopyUnit::title).collect();
        assert_eq!(
            names,
            [
                "\"_timescaledb_internal\".\"_hyper_1_1_chunk\"",
                "\"s\".\"big\" (part 1 of 4)",
                "\"s\".\"big\" (part 2 of 4)",
                "\"s\".\"big\" (part 3 of 4)",
                "\"s\".\"big\" (part 4 of 4)",
                "\"s\".\"small\"",
            ]
        );
        let parts: Vec<Pages> = units.iter().filter_map(|u| u.pages).collect();
        assert_eq!(parts[0].from, 0);
        for w in parts.windows(2) {
            assert_eq!(w[0].to, Some(w[1].from), "parts meet");
        }
        assert_eq!(parts[3].to, None, "the last part is open");
        assert!(units[1..5].iter().all(|u| u.estimated_bytes == 250));
        assert!(units[1..5].iter().all(|u| !u.fills_own_table()));
        assert_eq!(
            units[1].copy_out_sql(),
            "COPY (SELECT \"a\", \"We\"\"ird\" FROM ONLY \"s\".\"big\" WHERE ctid < '(25,0)'::pg_catalog.tid) TO STDOUT (FORMAT binary)"
        );
        assert!(units[2].copy_out_sql().contains(
            "WHERE ctid >= '(25,0)'::pg_catalog.tid AND ctid < '(50,0)'::pg_catalog.tid)"
        ));
        assert!(
            units[4]
                .copy_out_sql()
                .contains("WHERE ctid >= '(75,0)'::pg_catalog.tid)")
        );
        assert_eq!(
            units[4].count_sql(),
            "SELECT count(*) FROM ONLY \"s\".\"big\""
        );

        let mut two_pages = unit("s", "t", 1000);
        two_pages.oid = 5;
        let parts = split_chosen(vec![two_pages.clone()], split(10), &HashMap::from([(5, 2)]));
        assert_eq!(parts.len(), 2, "no more parts than pages");
        assert_eq!(
            split_chosen(vec![two_pages.clone()], split(0), &pages).len(),
            1,
            "0 never splits"
        );
        two_pages.filter = Some("WHERE true".into());
        assert_eq!(
            split_chosen(vec![two_pages], split(10), &HashMap::from([(5, 2)])).len(),
            1,
            "a configuration table's condition stays whole"
        );
        // A table no bigger than its share of the work (here 1000 of 2500 bytes over two
        // streams) stays whole, however small the parts asked for.
        let mut other = unit("s", "other", 1500);
        other.oid = 6;
        let mut mid = unit("s", "mid", 1000);
        mid.oid = 7;
        let pages = HashMap::from([(6, 100), (7, 100)]);
        let units = split_chosen(vec![other, mid], split(100), &pages);
        let titles: Vec<String> = units.iter().map(CopyUnit::title).collect();
        assert_eq!(titles.len(), 16, "{titles:?}");
        assert!(titles.contains(&"\"s\".\"mid\"".to_string()), "{titles:?}");
    }

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn large_objects_are_cut_at_their_oids_and_the_parts_cover_every_oid_once() {
        let whole = CopyUnit::large_objects(2500, 25_000);
        assert_eq!(whole.large_object_condition(), "true");
        let parts = split_large_objects(whole.clone(), &[5000, 9000]);
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts[0].large_object_condition(),
            "oid < 5000::pg_catalog.oid"
        );
        assert_eq!(
            parts[1].large_object_condition(),
            "oid >= 5000::pg_catalog.oid AND oid < 9000::pg_catalog.oid"
        );
        assert_eq!(
            parts[2].large_object_condition(),
            "oid >= 9000::pg_catalog.oid"
        );
        let rows: Vec<_> = parts.iter().map(|p| p.estimated_rows).collect();
        assert_eq!(rows, [Some(1000), Some(1000), Some(500)]);
        assert_eq!(parts[1].title(), "large objects (part 2 of 3)");
        assert!(parts.iter().all(|p| !p.fills_own_table()));
        for bad in [&[][..], &[9000, 5000], &[5000, 5000], &[0]] {
            let kept = split_large_objects(whole.clone(), bad);
            assert_eq!(kept.len(), 1, "{bad:?}");
            assert!(kept[0].pages.is_none());
        }
    }

    #[test]
    fn large_object_parts_stay_within_the_most_parts_a_unit_book_takes() {
        assert_eq!(large_objects_per_part(10), LARGE_OBJECTS_PER_UNIT);
        assert_eq!(large_objects_per_part(5_000_000), 4883);
        assert!(5_000_000 / large_objects_per_part(5_000_000) < i64::from(MAX_PARTS));
        let big = CopyUnit::large_objects(1, 1);
        assert!(!big.splits(0), "large objects are not cut by pages");
    }
}
