//! `--hypertable schema.table:time_column[:chunk_interval]`: plain tables of the source that
//! become hypertables on the target, before their data arrives. Everything is checked on
//! the source before anything is written.

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::pg::Source;
use crate::quote::{ident, literal, qualified};
use crate::source::catalog::ServerFacts;

/// One `--hypertable` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HypertableSpec {
    pub schema: String,
    pub table: String,
    pub column: String,
    pub interval: Option<String>,
}

/// A request checked against the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversion {
    pub spec: HypertableSpec,
    /// Whether the time column is an integer (its interval is a number, not a duration).
    pub integer: bool,
    /// The table's primary key, unique, exclusion and foreign key constraints: (OID on the
    /// source, statement for the target). pg_dump adds them with `ALTER TABLE ONLY`, which a
    /// hypertable refuses, so tsxfer adds them itself.
    pub constraints: Vec<(u32, String)>,
}

fn usage(text: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::Usage,
        format!("--hypertable {text}: {why} (expected schema.table:time_column[:chunk_interval])"),
    )
}

/// Splits `text` at unquoted `sep`, keeping double-quoted parts whole (and unquoting them;
/// `""` inside quotes is one quote). Unquoted names are folded to lower case, as SQL does.
fn split_names(text: &str, sep: char) -> Option<Vec<String>> {
    let mut parts = vec![String::new()];
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        let cur = parts.last_mut()?;
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => quoted = !quoted,
            c if c == sep && !quoted => parts.push(String::new()),
            c if quoted => cur.push(c),
            c => cur.extend(c.to_lowercase()),
        }
    }
    (!quoted).then_some(parts)
}

/// Parses `schema.table:column[:interval]` (schema defaults to `public`).
pub fn parse_spec(text: &str) -> Result<HypertableSpec> {
    let (names, interval) = {
        // The interval is free text after the second unquoted colon.
        let mut quoted = false;
        let mut colons = Vec::new();
        for (i, c) in text.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ':' if !quoted => colons.push(i),
                _ => {}
            }
        }
        match colons.as_slice() {
            [] => return Err(usage(text, "no time column given")),
            [_] => (text, None),
            [_, second, ..] => (
                &text[..*second],
                Some(text[second + 1..].trim().to_string()).filter(|s| !s.is_empty()),
            ),
        }
    };
    let parts = split_names(names, ':').ok_or_else(|| usage(text, "unbalanced quotes"))?;
    let [relation, column] = parts.as_slice() else {
        return Err(usage(text, "no time column given"));
    };
    let relation_raw = names.rsplit_once(':').map(|(r, _)| r).unwrap_or(relation);
    let rel = split_names(relation_raw, '.').ok_or_else(|| usage(text, "unbalanced quotes"))?;
    let (schema, table) = match rel.as_slice() {
        [t] => ("public".to_string(), t.clone()),
        [s, t] => (s.clone(), t.clone()),
        _ => return Err(usage(text, "too many dots in the table name")),
    };
    if table.is_empty() || column.is_empty() {
        return Err(usage(text, "empty table or column name"));
    }
    Ok(HypertableSpec {
        schema,
        table,
        column: column.clone(),
        interval,
    })
}

/// `--hypertable` is for plain PostgreSQL sources.
pub fn check_source_kind(conversions: &[Conversion], source: &ServerFacts) -> Result<()> {
    if !conversions.is_empty() && source.extension("timescaledb").is_some() {
        return Err(Error::new(
            ErrorKind::Preflight,
            "--hypertable is for plain PostgreSQL sources; on a TimescaleDB source, convert the table there (create_hypertable with migrate_data) and migrate it as it is",
        ));
    }
    Ok(())
}

/// `--hypertable` needs TimescaleDB in the target database.
pub fn check_target_kind(conversions: &[Conversion], target: &ServerFacts) -> Result<()> {
    if !conversions.is_empty() && target.extension("timescaledb").is_none() {
        return Err(Error::new(
            ErrorKind::Preflight,
            "--hypertable needs TimescaleDB in the target database; have a superuser run there: CREATE EXTENSION timescaledb;",
        ));
    }
    Ok(())
}

/// Checks each request on the source: the table is a plain table, the column exists with
/// a time or integer type, and no primary key or unique constraint leaves it out (a
/// hypertable cannot enforce one that does).
pub async fn validate(src: &Source, specs: &[HypertableSpec]) -> Result<Vec<Conversion>> {
    let mut out = Vec::new();
    for spec in specs {
        let name = qualified(&spec.schema, &spec.table);
        let rows = src
            .query(
                "SELECT c.relkind::text, c.relispartition FROM pg_catalog.pg_class c
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&spec.schema, &spec.table],
            )
            .await?;
        let refuse =
            |why: String| Error::new(ErrorKind::Preflight, format!("--hypertable {name}: {why}"));
        let Some(r) = rows.first() else {
            return Err(refuse("no such table in the source".into()));
        };
        let (kind, partition): (String, bool) = (r.get(0), r.get(1));
        if kind != "r" || partition {
            return Err(refuse(
                "not a plain table (partitioned tables, partitions and views cannot become hypertables)".into(),
            ));
        }
        let rows = src
            .query(
                "SELECT format_type(a.atttypid, a.atttypmod), t.typname::text
                 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                 WHERE a.attrelid = $1::text::regclass AND a.attname = $2 AND NOT a.attisdropped AND a.attnum > 0",
                &[&name, &spec.column],
            )
            .await?;
        let Some(r) = rows.first() else {
            return Err(refuse(format!(
                "the table has no column {}",
                ident(&spec.column)
            )));
        };
        let (shown, typname): (String, String) = (r.get(0), r.get(1));
        let integer = match typname.as_str() {
            "timestamptz" | "timestamp" | "date" => false,
            "int2" | "int4" | "int8" => true,
            _ => {
                return Err(refuse(format!(
                    "column {} is {shown}; a hypertable's time column must be a timestamp, a date or an integer",
                    ident(&spec.column)
                )));
            }
        };
        if integer && spec.interval.is_none() {
            return Err(refuse(format!(
                "column {} is an integer: give the chunk interval as a number, e.g. {}:{}:100000",
                ident(&spec.column),
                name,
                ident(&spec.column)
            )));
        }
        let blocking: Vec<String> = src
            .query(
                "SELECT con.conname::text FROM pg_catalog.pg_constraint con
                 WHERE con.conrelid = $1::text::regclass AND con.contype IN ('p', 'u', 'x')
                   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                                   WHERE a.attrelid = con.conrelid AND a.attname = $2
                                     AND a.attnum = ANY (con.conkey))",
                &[&name, &spec.column],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(c) = blocking.first() {
            return Err(refuse(format!(
                "its constraint {} (primary key, unique or exclusion) does not include {}, and a hypertable cannot enforce it; add the column to it on the source, or leave the table as it is",
                ident(c),
                ident(&spec.column)
            )));
        }
        let constraints = src
            .query(
                "SELECT oid, conname::text, pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint
                 WHERE conrelid = $1::text::regclass AND contype IN ('p', 'u', 'x', 'f')
                 ORDER BY contype = 'f', oid",
                &[&name],
            )
            .await?
            .iter()
            .map(|r| {
                let (oid, con, def): (u32, String, String) = (r.get(0), r.get(1), r.get(2));
                (oid, format!("ALTER TABLE {name} ADD CONSTRAINT {} {def}", ident(&con)))
            })
            .collect();
        out.push(Conversion {
            spec: spec.clone(),
            integer,
            constraints,
        });
    }
    Ok(out)
}

impl Conversion {
    /// The call that turns the (empty) target table into a hypertable, without the time
    /// index TimescaleDB would add by default: the table gets the indexes it has on the
    /// source, no more.
    pub fn create_sql(&self, timescaledb_schema: &str) -> String {
        let ts = ident(timescaledb_schema);
        let interval = match (&self.spec.interval, self.integer) {
            (Some(i), true) => format!(", {}::bigint", literal(i)),
            (Some(i), false) => format!(", {}::interval", literal(i)),
            (None, _) => String::new(),
        };
        format!(
            "SELECT {ts}.create_hypertable({}::regclass, {ts}.by_range({}{interval}), create_default_indexes => false)",
            literal(&qualified(&self.spec.schema, &self.spec.table)),
            literal(&self.spec.column),
        )
    }

    pub fn relation(&self) -> String {
        qualified(&self.spec.schema, &self.spec.table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_defaults_quotes_and_intervals() {
        assert_eq!(
            parse_spec("metrics:time").unwrap(),
            HypertableSpec {
                schema: "public".into(),
                table: "metrics".into(),
                column: "time".into(),
                interval: None
            }
        );
        let s = parse_spec("\"My Schema\".\"Zeit:Reihe\":\"Ts\":1 day").unwrap();
        assert_eq!(s.schema, "My Schema");
        assert_eq!(s.table, "Zeit:Reihe");
        assert_eq!(s.column, "Ts");
        assert_eq!(s.interval.as_deref(), Some("1 day"));
        let s = parse_spec("App.Events:Id:100000").unwrap();
        assert_eq!((s.schema.as_str(), s.table.as_str()), ("app", "events"));
        assert_eq!(s.interval.as_deref(), Some("100000"));
    }

    #[test]
    fn malformed_specs_are_usage_errors() {
        for bad in ["metrics", "a.b.c:t", "\"open:t", ":t", "t:"] {
            let e = parse_spec(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage, "{bad}");
        }
    }

    #[test]
    fn create_calls_are_schema_qualified_and_typed() {
        let c = Conversion {
            spec: parse_spec("s.t:time:7 days").unwrap(),
            integer: false,
            constraints: vec![],
        };
        assert_eq!(
            c.create_sql("public"),
            "SELECT \"public\".create_hypertable('\"s\".\"t\"'::regclass, \"public\".by_range('time', '7 days'::interval), create_default_indexes => false)"
        );
        let c = Conversion {
            spec: parse_spec("t:id:1000").unwrap(),
            integer: true,
            constraints: vec![],
        };
        assert!(
            c.create_sql("ts")
                .ends_with("by_range('id', '1000'::bigint), create_default_indexes => false)")
        );
    }
}
