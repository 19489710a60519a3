//! pg_dump-style filters: `-n/--schema`, `-N/--exclude-schema`, `-t/--table`,
//! `-T/--exclude-table`, `--exclude-table-data`. pg_dump itself applies them to the schema
//! (with `--strict-names`), and the tables it dumped decide which units are copied, so
//! schema and data never disagree. Patterns are also matched here, the way pg_dump reads
//! them, to refuse one that matches nothing before pg_dump runs and to find the tables
//! whose data is left out.

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::pg::{Source, Target};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub schemas: Vec<String>,
    pub exclude_schemas: Vec<String>,
    pub tables: Vec<String>,
    pub exclude_tables: Vec<String>,
    pub exclude_table_data: Vec<String>,
}

impl Filters {
    pub fn is_empty(&self) -> bool {
        *self == Filters::default()
    }

    /// Whether only some schemas or tables are asked for (pg_dump then leaves out large
    /// objects, and so does tsxfer).
    pub fn includes_only_some(&self) -> bool {
        !self.schemas.is_empty() || !self.tables.is_empty()
    }

    /// The filters as pg_dump takes them, for the main schema dump.
    pub fn pg_dump_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, patterns) in [
            ("--schema", &self.schemas),
            ("--exclude-schema", &self.exclude_schemas),
            ("--table", &self.tables),
            ("--exclude-table", &self.exclude_tables),
        ] {
            args.extend(patterns.iter().map(|p| format!("{flag}={p}")));
        }
        if self.includes_only_some() {
            args.push("--strict-names".into());
        }
        args
    }
}

/// What a run or a dump is asked to copy, as the flags that ask it (`-n`, `-N`, `-t`,
/// `-T`, `--exclude-table-data`, `--hypertable`, `--split-tables-larger-than` in bytes):
/// resuming it must ask the same, since what the first command chose stays.
pub fn selection(
    filters: &Filters,
    hypertables: &[crate::source::convert::HypertableSpec],
    split_bytes: i64,
) -> String {
    let mut flags: Vec<String> = Vec::new();
    for (flag, patterns) in [
        ("-n", &filters.schemas),
        ("-N", &filters.exclude_schemas),
        ("-t", &filters.tables),
        ("-T", &filters.exclude_tables),
        ("--exclude-table-data", &filters.exclude_table_data),
    ] {
        flags.extend(patterns.iter().map(|p| format!("{flag} {p}")));
    }
    flags.extend(hypertables.iter().map(|h| {
        format!(
            "--hypertable {}.{}:{}{}",
            h.schema,
            h.table,
            h.column,
            h.interval
                .as_ref()
                .map(|i| format!(":{i}"))
                .unwrap_or_default()
        )
    }));
    flags.push(format!("--split-tables-larger-than {split_bytes}"));
    flags.join(" ")
}

/// The refusal of a resumed run or dump (`what`) whose selection differs from the first.
pub fn other_selection(what: &str, recorded: &str, asked: &str) -> Error {
    Error::new(
        ErrorKind::Preflight,
        format!(
            "{what} was started with other choices of what to copy ({recorded}) than this command ({asked}); resume it with the same flags, or start over with --restart"
        ),
    )
}

/// A pg_dump pattern as anchored regular expressions: (schema part, name part). Outside
/// double quotes letters fold to lower case, `*` is any run of characters, `?` any one
/// character, `.` separates schema from name, and other regular-expression characters keep
/// their meaning; inside double quotes everything is literal (`""` is one quote).
pub fn pattern_regex(pattern: &str) -> (Option<String>, String) {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        let cur = parts.last_mut().expect("never empty");
        if c == '"' {
            if quoted && chars.peek() == Some(&'"') {
                chars.next();
                cur.push('"');
            } else {
                quoted = !quoted;
            }
        } else if quoted {
            if "|*+?()[]{}.^$\\".contains(c) {
                cur.push('\\');
            }
            cur.push(c);
        } else {
            match c {
                '*' => cur.push_str(".*"),
                '?' => cur.push('.'),
                '.' => parts.push(String::new()),
                '$' => cur.push_str("\\$"),
                c => cur.extend(c.to_lowercase()),
            }
        }
    }
    let anchor = |s: &str| format!("^({s})$");
    match parts.len() {
        1 => (None, anchor(&parts[0])),
        _ => {
            let name = parts.pop().expect("two parts");
            (Some(anchor(&parts.join("\\."))), anchor(&name))
        }
    }
}

/// Relations (tables, partitioned tables, views, sequences) of the source a table pattern
/// matches; a pattern without a schema matches in every schema but the system ones.
pub async fn matching_relations(src: &Source, pattern: &str) -> Result<Vec<u32>> {
    let (schema, name) = pattern_regex(pattern);
    let rows = src
        .query(
            "SELECT c.oid FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
               AND c.relname::text ~ $2
               AND CASE WHEN $1::text IS NULL
                        THEN n.nspname NOT IN ('pg_catalog', 'information_schema')
                             AND n.nspname NOT LIKE 'pg\\_toast%'
                        ELSE n.nspname::text ~ $1 END",
            &[&schema, &name],
        )
        .await
        .map_err(|e| bad_pattern(pattern, e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn schema_matches(src: &Source, pattern: &str) -> Result<bool> {
    let (_, name) = pattern_regex(pattern);
    let row = src
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname::text ~ $1)",
            &[&name],
        )
        .await
        .map_err(|e| bad_pattern(pattern, e))?;
    Ok(row.get(0))
}

fn bad_pattern(pattern: &str, e: Error) -> Error {
    Error::new(
        ErrorKind::Usage,
        format!("the pattern {pattern} is not one pg_dump can read: {e}"),
    )
}

/// Refuses include and exclusion patterns that match nothing, before pg_dump runs: its
/// own refusal of an include pattern (with --strict-names) is a line of text in the
/// user's language, not something to decide on.
pub async fn check_exclusions(src: &Source, filters: &Filters) -> Result<()> {
    for (flag, patterns) in [
        ("--schema", &filters.schemas),
        ("--exclude-schema", &filters.exclude_schemas),
    ] {
        for p in patterns {
            if !schema_matches(src, p).await? {
                return Err(nothing(p, flag));
            }
        }
    }
    for (flag, patterns) in [
        ("--table", &filters.tables),
        ("--exclude-table", &filters.exclude_tables),
        ("--exclude-table-data", &filters.exclude_table_data),
    ] {
        for p in patterns {
            if matching_relations(src, p).await?.is_empty() {
                return Err(nothing(p, flag));
            }
        }
    }
    Ok(())
}

/// With `-t`, pg_dump dumps the tables and the sequences they own, nothing else: the
/// schemas they live in, the sequences their defaults call, the types of their columns,
/// the tables their foreign keys reference and the functions their triggers call must
/// already be on the target, or pg_restore fails after the target was written to (in the
/// post-data phase, after every row was copied, for the last two).
/// Refuses the run before anything is written when one is missing, naming each (and the
/// statement that makes a schema).
pub async fn check_table_dependencies(src: &Source, tgt: &Target, filters: &Filters) -> Result<()> {
    check_uses(tgt, &table_uses(src, filters).await?).await
}

/// One object a table kept by `-t` uses and pg_dump leaves out (sql/source_table_uses.sql).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableUse {
    /// schema, sequence, type, table or function.
    pub kind: String,
    /// Quoted and qualified; a function with its argument types.
    pub name: String,
    pub used_by: String,
}

/// What the tables `-t` keeps use and pg_dump leaves out (none without `-t`).
pub async fn table_uses(src: &Source, filters: &Filters) -> Result<Vec<TableUse>> {
    if filters.tables.is_empty() {
        return Ok(Vec::new());
    }
    let mut kept: Vec<u32> = Vec::new();
    for p in &filters.tables {
        kept.extend(matching_relations(src, p).await?);
    }
    for p in &filters.exclude_tables {
        let excluded = matching_relations(src, p).await?;
        kept.retain(|oid| !excluded.contains(oid));
    }
    Ok(src
        .query(include_str!("../sql/source_table_uses.sql"), &[&kept])
        .await?
        .iter()
        .map(|r| TableUse {
            kind: r.get(0),
            name: r.get(1),
            used_by: r.get(2),
        })
        .collect())
}

/// Refuses when the target lacks one of `uses` (looked up by name, as parameters: in a
/// dump they are text from a file).
pub async fn check_uses(tgt: &Target, uses: &[TableUse]) -> Result<()> {
    // Each distinct object once, all in one round trip.
    let mut distinct: Vec<(&str, &str)> = uses
        .iter()
        .map(|u| (u.kind.as_str(), u.name.as_str()))
        .collect();
    distinct.dedup();
    let (kinds, names): (Vec<&str>, Vec<&str>) = distinct.into_iter().unzip();
    let absent: Vec<(String, String)> = tgt
        .query(
            "SELECT kind, name FROM unnest($1::text[], $2::text[]) AS u(kind, name)
             WHERE NOT CASE kind
                 WHEN 'schema' THEN EXISTS (SELECT 1 FROM pg_catalog.pg_namespace
                                            WHERE pg_catalog.quote_ident(nspname) = name)
                 WHEN 'function' THEN pg_catalog.to_regprocedure(name) IS NOT NULL
                 WHEN 'type' THEN pg_catalog.to_regtype(name) IS NOT NULL
                 ELSE pg_catalog.to_regclass(name) IS NOT NULL END",
            &[&kinds, &names],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // (kind, name) -> the tables that use it, in the source query's order.
    let mut lacking: Vec<((String, String), Vec<String>)> = Vec::new();
    for u in uses
        .iter()
        .filter(|u| absent.iter().any(|(k, n)| *k == u.kind && *n == u.name))
    {
        match lacking.last_mut() {
            Some(((k, n), users)) if *k == u.kind && *n == u.name => users.push(u.used_by.clone()),
            _ => lacking.push(((u.kind.clone(), u.name.clone()), vec![u.used_by.clone()])),
        }
    }
    let schemas: Vec<&String> = lacking
        .iter()
        .filter(|((kind, _), _)| kind == "schema")
        .map(|((_, name), _)| name)
        .collect();
    let missing: Vec<String> = lacking
        .iter()
        .map(|((kind, name), users)| match kind.as_str() {
            "schema" => format!("schema {name}"),
            _ => format!("{kind} {name} (used by {})", some_of(users, 3)),
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let make: Vec<String> = schemas
        .iter()
        .map(|n| format!("CREATE SCHEMA {n};"))
        .collect();
    Err(Error::new(
        ErrorKind::Preflight,
        format!(
            "with --table, pg_dump makes only the tables and the sequences they own, and the target lacks what the tables asked use: {}; make {} there first{}, ask for those tables too, or take whole schemas with --schema, and run again",
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" },
            if make.is_empty() {
                String::new()
            } else {
                format!(" ({})", make.join(" "))
            },
        ),
    ))
}

/// `items`, the first `most` of them named and the rest counted.
fn some_of(items: &[String], most: usize) -> String {
    match items.len() {
        n if n <= most => items.join(", "),
        n => format!("{} and {} more", items[..most].join(", "), n - most),
    }
}

fn nothing(pattern: &str, flag: &str) -> Error {
    Error::new(
        ErrorKind::Preflight,
        format!("{flag} {pattern} matches nothing in the source"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_cut_and_counted() {
        let items: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        assert_eq!(some_of(&items[..3], 3), "a, b, c");
        assert_eq!(some_of(&items, 3), "a, b, c and 2 more");
    }

    #[test]
    fn patterns_read_like_pg_dump() {
        assert_eq!(pattern_regex("Foo*"), (None, "^(foo.*)$".into()));
        assert_eq!(
            pattern_regex("app.log_?"),
            (Some("^(app)$".into()), "^(log_.)$".into())
        );
        assert_eq!(
            pattern_regex("\"My Schema\".\"a.b*\""),
            (Some("^(My Schema)$".into()), "^(a\\.b\\*)$".into())
        );
        assert_eq!(
            pattern_regex("\"say \"\"hi\"\"\""),
            (None, "^(say \"hi\")$".into())
        );
        assert_eq!(pattern_regex("t[0-9]"), (None, "^(t[0-9])$".into()));
    }

    #[test]
    fn filters_go_to_pg_dump_with_strict_names_for_includes() {
        let f = Filters {
            schemas: vec!["app".into()],
            exclude_tables: vec!["app.tmp_*".into()],
            ..Filters::default()
        };
        assert_eq!(
            f.pg_dump_args(),
            [
                "--schema=app",
                "--exclude-table=app.tmp_*",
                "--strict-names"
            ]
        );
        assert!(Filters::default().pg_dump_args().is_empty());
    }
}
