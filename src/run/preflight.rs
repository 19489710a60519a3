//! Checks made before anything is written: each problem is one sentence, and a refusal
//! leaves both servers as they were.

use crate::error::{Error, ErrorKind, Result};
use crate::pg::conninfo::ConnInfo;
use crate::pg::{Source, Target};
use crate::quote::{ident, literal};
use crate::source::catalog::{self, ServerFacts};

fn refuse(message: String) -> Error {
    Error::new(ErrorKind::Preflight, message)
}

/// The TimescaleDB part: same version on both sides, and the target able to take a
/// restore. Returns the target's extension schema when TimescaleDB is in play.
async fn check_timescaledb(
    tgt: &Target,
    source: &ServerFacts,
    target: &ServerFacts,
) -> Result<Option<String>> {
    let Some(src_ts) = source.extension("timescaledb") else {
        return Ok(None);
    };
    let Some(tgt_ts) = target.extension("timescaledb") else {
        let available = tgt
            .query(
                "SELECT version FROM pg_catalog.pg_available_extension_versions
                 WHERE name = 'timescaledb' AND version = $1",
                &[&src_ts.version],
            )
            .await?;
        return Err(refuse(if available.is_empty() {
            format!(
                "the source uses TimescaleDB {} but the target server does not offer that version; install TimescaleDB {} on the target server",
                src_ts.version, src_ts.version
            )
        } else {
            format!(
                "the target database has no TimescaleDB; have a superuser run there: CREATE EXTENSION timescaledb VERSION {};",
                literal(&src_ts.version)
            )
        }));
    };
    if let Some(message) = version_mismatch(&src_ts.version, &tgt_ts.version) {
        return Err(refuse(message));
    }
    let schema = ident(&tgt_ts.schema);
    for f in ["timescaledb_pre_restore", "timescaledb_post_restore"] {
        let sig = format!("{schema}.{f}()");
        let row = tgt
            .query_one(
                "SELECT pg_catalog.has_function_privilege($1, 'EXECUTE')",
                &[&sig],
            )
            .await?;
        if !row.get::<_, bool>(0) {
            return Err(refuse(format!(
                "the target role {} may not run {sig}; grant it EXECUTE (managed services do) or connect as a role that may",
                ident(&target.login)
            )));
        }
    }
    Ok(Some(tgt_ts.schema.clone()))
}

/// The refusal for different TimescaleDB versions, with the statement that fixes it: the
/// older side is updated (a database cannot go back to an older TimescaleDB).
pub fn version_mismatch(source: &str, target: &str) -> Option<String> {
    if source == target {
        return None;
    }
    let (older, newer) = if version_less(source, target) {
        ("source", target)
    } else {
        ("target", source)
    };
    Some(format!(
        "TimescaleDB is {source} on the source and {target} on the target; update the {older} first (psql -X, as the extension's owner): ALTER EXTENSION timescaledb UPDATE TO {};",
        literal(newer)
    ))
}

/// Compares dotted version strings numerically ("2.9.1" < "2.19.3").
pub fn version_less(a: &str, b: &str) -> bool {
    let parse = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    parse(a) < parse(b)
}

/// Everything preflight learned, for the later phases.
pub struct PreflightReport {
    pub source: ServerFacts,
    pub target: ServerFacts,
    /// The schema of TimescaleDB on the target, when the migration involves it.
    pub timescaledb_schema: Option<String>,
    pub warnings: Vec<String>,
}

pub async fn check(
    src: &Source,
    tgt: &Target,
    target: &ConnInfo,
    allow_non_empty: bool,
) -> Result<PreflightReport> {
    let source = check_source(src).await?;
    check_target(source, tgt, target, allow_non_empty).await
}

/// Refuses a target that is the source database itself, however the two connection
/// strings spell it (another host name, a socket, a pooler, a service): anything written
/// there would overwrite, or with `--restart` drop, the data being migrated. Must run
/// before anything is written to the target.
pub async fn check_not_source(src: &Source, tgt: &Target) -> Result<()> {
    let key = src.hold_marker().await?;
    let seen = tgt.sees_marker(key).await;
    src.release_marker(key).await?;
    if seen? {
        return Err(refuse(
            "the target is the source database itself (the same database of the same server); give --target the database to fill".into(),
        ));
    }
    Ok(())
}

/// Refuses a target that is the database a dump was taken from (`source_id`, as recorded
/// in its manifest).
pub async fn check_not_dump_source(tgt: &Target, source_id: &str) -> Result<()> {
    if tgt.identity().await? == source_id {
        return Err(refuse(
            "the target is the database this dump was taken from; give --target the database to fill".into(),
        ));
    }
    Ok(())
}

/// What the source is, refusing one tsxfer cannot read whole.
pub async fn check_source(src: &Source) -> Result<ServerFacts> {
    let source = catalog::source_facts(src).await?;
    if source.extension("timescaledb").is_some() && catalog::is_multinode(src).await? {
        return Err(refuse(
            "the source has distributed hypertables (TimescaleDB multi-node); tsxfer cannot migrate multi-node databases: move the data into regular hypertables first".into(),
        ));
    }
    Ok(source)
}

/// Whether the target (`tgt`, connected with `info`) can take what was read from a source
/// described by `source` (live, or recorded in a dump's manifest).
pub async fn check_target(
    source: ServerFacts,
    tgt: &Target,
    info: &ConnInfo,
    allow_non_empty: bool,
) -> Result<PreflightReport> {
    if !Target::options_reach_session(info).await? {
        return Err(refuse(
            "the target is reached through a connection pooler: settings given when a session opens do not reach it (pgbouncer refuses or drops them). A pooler hands out server sessions opened before TimescaleDB's restoring mode was set, and pg_restore's own settings never arrive; connect to the database's own port instead (on Timescale Cloud, the service's direct URL, not the pooler's)".into(),
        ));
    }
    let target = catalog::target_facts(tgt).await?;
    let mut warnings = Vec::new();
    if source.major() != target.major() {
        return Err(refuse(format!(
            "the source runs PostgreSQL {} and the target {}; tsxfer copies between servers of the same major version (upgrade the older one with pg_upgrade first)",
            source.version, target.version
        )));
    }
    let available: Vec<String> = tgt
        .query(
            "SELECT name::text FROM pg_catalog.pg_available_extensions",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing: Vec<String> = source
        .extensions
        .iter()
        .filter(|e| !available.contains(&e.name))
        .map(|e| format!("{} {}", e.name, e.version))
        .collect();
    if !missing.is_empty() {
        return Err(refuse(format!(
            "the target server does not offer these extensions of the source: {}; install them on the target server first",
            missing.join(", ")
        )));
    }
    let names: Vec<String> = source.extensions.iter().map(|e| e.name.clone()).collect();
    let forbidden: Vec<String> = tgt
        .query(
            include_str!("../sql/target_uncreatable_extensions.sql"),
            &[&names],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !forbidden.is_empty() {
        return Err(refuse(format!(
            "the target role {} may not create these extensions of the source: {} (they are not trusted, and it is not a superuser); have a superuser of the target run CREATE EXTENSION for each in database {} first",
            ident(&target.login),
            forbidden.join(", "),
            ident(&target.dbname)
        )));
    }
    let unusable: Vec<String> = tgt
        .query(
            "SELECT w.fdwname::text FROM pg_catalog.pg_foreign_data_wrapper w
             WHERE w.fdwname = ANY ($1::text[])
               AND NOT pg_catalog.has_foreign_data_wrapper_privilege(w.oid, 'USAGE')
             ORDER BY 1",
            &[&source.foreign_data_wrappers],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !unusable.is_empty() {
        return Err(refuse(format!(
            "the source has foreign servers of {}, which the target role {} may not use to make servers; have a superuser of the target run GRANT USAGE ON FOREIGN DATA WRAPPER ... TO {} first",
            unusable.join(", "),
            ident(&target.login),
            ident(&target.login)
        )));
    }
    let timescaledb_schema = check_timescaledb(tgt, &source, &target).await?;
    let can_create: bool = tgt
        .query_one(
            "SELECT pg_catalog.has_database_privilege(current_database(), 'CREATE')",
            &[],
        )
        .await?
        .get(0);
    if !can_create {
        return Err(refuse(format!(
            "the target role {} has no CREATE privilege on database {}; connect as the database owner or GRANT CREATE ON DATABASE {} TO {}",
            ident(&target.login),
            ident(&target.dbname),
            ident(&target.dbname),
            ident(&target.login)
        )));
    }
    let row = tgt
        .query_one(include_str!("../sql/target_user_tables.sql"), &[])
        .await?;
    let count: i64 = row.get(0);
    if count > 0 && !allow_non_empty {
        let examples: Vec<String> = row.get(1);
        return Err(refuse(format!(
            "the target database {} is not empty: it holds {count} table(s) (e.g. {}); migrate into an empty database",
            ident(&target.dbname),
            examples.join(", ")
        )));
    }
    if !source.superuser {
        warnings.push(format!(
            "the source role {} is not a superuser: role passwords cannot be read, and objects it may not read will fail the run",
            ident(&source.login)
        ));
    }
    Ok(PreflightReport {
        source,
        target,
        timescaledb_schema,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_less("2.9.1", "2.19.3"));
        assert!(!version_less("2.19.3", "2.19.3"));
        assert!(version_less("2.19.3", "2.20.0-rc1"));
    }

    #[test]
    fn a_version_mismatch_says_which_side_to_update_and_how() {
        assert_eq!(version_mismatch("2.19.3", "2.19.3"), None);
        let m = version_mismatch("2.18.2", "2.19.3").unwrap();
        assert!(m.contains("update the source first"), "{m}");
        assert!(
            m.ends_with("ALTER EXTENSION timescaledb UPDATE TO '2.19.3';"),
            "{m}"
        );
        let m = version_mismatch("2.19.3", "2.17.0").unwrap();
        assert!(m.contains("update the target first"), "{m}");
        assert!(m.ends_with("UPDATE TO '2.19.3';"), "{m}");
    }
}
