//! Owners and grants. pg_restore runs with `--no-owner --no-acl` because its owner and
//! grant statements name roles a managed target does not have (`postgres`, `rds*`) and a
//! failed statement loses the grants beside it. Here they are rebuilt from the source's
//! catalog: each object's owner, then its exact privileges, with managed-service roles
//! mapped to the target's login role or dropped, and every such change listed.
//!
//! One file because reading, mapping and applying privileges are one rule set: what is
//! read decides what may be applied, and both sides must name objects the same way.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pg::{Source, Target};
use crate::quote::ident;

/// Statements that run in one round trip; each batch is one transaction, so this also
/// bounds the locks one transaction takes (an owner change locks a table, its TOAST
/// table and its indexes).
const BATCH: usize = 50;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnedObject {
    pub kind: String,
    pub object: String,
    pub schema: String,
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub kind: String,
    pub object: String,
    pub column: String,
    pub owner: String,
    /// Empty for PUBLIC.
    pub grantee: String,
    pub privilege: String,
    pub grantable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefaultGrant {
    pub role: String,
    pub schema: String,
    pub objtype: String,
    pub grantee: String,
    pub privilege: String,
    pub grantable: bool,
}

/// A privilege on an extension's object that the source has changed from what the
/// extension's script left (pg_init_privs): to grant or to revoke again on the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberPrivilege {
    pub kind: String,
    pub object: String,
    pub extension: String,
    pub grant: bool,
    /// Empty for PUBLIC.
    pub grantee: String,
    pub privilege: String,
    pub grantable: bool,
}

/// The source's owners and privileges.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourcePrivileges {
    pub owners: Vec<OwnedObject>,
    pub grants: Vec<Grant>,
    pub defaults: Vec<DefaultGrant>,
    #[serde(default)]
    pub extension_members: Vec<MemberPrivilege>,
}

pub async fn read(src: &Source) -> Result<SourcePrivileges> {
    let owners = src
        .query(include_str!("../sql/source_owners.sql"), &[])
        .await?
        .iter()
        .map(|r| OwnedObject {
            kind: r.get(0),
            object: r.get(1),
            schema: r.get(2),
            owner: r.get(3),
        })
        .collect();
    let grants = src
        .query(include_str!("../sql/source_acls.sql"), &[])
        .await?
        .iter()
        .map(|r| Grant {
            kind: r.get(0),
            object: r.get(1),
            column: r.get(2),
            owner: r.get(3),
            grantee: r.get(4),
            privilege: r.get(5),
            grantable: r.get(6),
        })
        .collect();
    let defaults = src
        .query(include_str!("../sql/source_default_acls.sql"), &[])
        .await?
        .iter()
        .map(|r| DefaultGrant {
            role: r.get(0),
            schema: r.get(1),
            objtype: r.get(2),
            grantee: r.get(3),
            privilege: r.get(4),
            grantable: r.get(5),
        })
        .collect();
    let extension_members = src
        .query(include_str!("../sql/source_extension_member_acls.sql"), &[])
        .await?
        .iter()
        .map(|r| MemberPrivilege {
            kind: r.get(0),
            object: r.get(1),
            extension: r.get(2),
            grant: r.get::<_, String>(3) == "GRANT",
            grantee: r.get(4),
            privilege: r.get(5),
            grantable: r.get(6),
        })
        .collect();
    Ok(SourcePrivileges {
        owners,
        grants,
        defaults,
        extension_members,
    })
}

/// Object kinds, privileges and default-privilege object types as tsxfer reads them from
/// a source: nothing else may come from a dump's manifest, where they become SQL words.
const KINDS: &[&str] = &[
    "SCHEMA",
    "TABLE",
    "VIEW",
    "MATERIALIZED VIEW",
    "FOREIGN TABLE",
    "SEQUENCE",
    "TYPE",
    "DOMAIN",
    "FUNCTION",
    "PROCEDURE",
    "AGGREGATE",
    "LARGE OBJECT",
];
const PRIVILEGES: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
    "USAGE",
    "CREATE",
    "EXECUTE",
    "CONNECT",
    "TEMPORARY",
];
const DEFAULT_OBJECT_TYPES: &[&str] = &["r", "S", "f", "T", "n"];

impl SourcePrivileges {
    /// Refuses kinds, privileges and object types tsxfer would not have read (a dump's
    /// manifest may have been edited): names one.
    pub fn check_words(&self) -> std::result::Result<(), String> {
        let bad =
            |what: &str, v: &str| Err(format!("unknown {what} {v:?} among owners and grants"));
        for o in &self.owners {
            if !KINDS.contains(&o.kind.as_str()) {
                return bad("object kind", &o.kind);
            }
        }
        for g in &self.grants {
            if !KINDS.contains(&g.kind.as_str()) {
                return bad("object kind", &g.kind);
            }
            if !PRIVILEGES.contains(&g.privilege.as_str()) {
                return bad("privilege", &g.privilege);
            }
        }
        for m in &self.extension_members {
            if !KINDS.contains(&m.kind.as_str()) {
                return bad("object kind", &m.kind);
            }
            if !PRIVILEGES.contains(&m.privilege.as_str()) {
                return bad("privilege", &m.privilege);
            }
        }
        for d in &self.defaults {
            if !DEFAULT_OBJECT_TYPES.contains(&d.objtype.as_str()) {
                return bad("object type", &d.objtype);
            }
            if !PRIVILEGES.contains(&d.privilege.as_str()) {
                return bad("privilege", &d.privilege);
            }
        }
        Ok(())
    }
}

/// Owners and grants of a dump with each object named as the target itself names it: the
/// manifest's object names are looked up on the target as bound parameters, and the
/// target's own rendering of the object it finds (quoted by the server) goes into the
/// statements. Entries naming nothing on the target are left out; returns how many.
pub async fn resolved_on_target(
    src: &SourcePrivileges,
    tgt: &mut Target,
) -> Result<(SourcePrivileges, usize)> {
    let pairs: BTreeSet<(&str, &str)> = src
        .owners
        .iter()
        .map(|o| (o.kind.as_str(), o.object.as_str()))
        .chain(
            src.grants
                .iter()
                .map(|g| (g.kind.as_str(), g.object.as_str())),
        )
        .chain(
            src.extension_members
                .iter()
                .map(|m| (m.kind.as_str(), m.object.as_str())),
        )
        .collect();
    let (kinds, objects): (Vec<&str>, Vec<&str>) = pairs.into_iter().unzip();
    let tx = tgt.begin().await?;
    tx.execute("SET LOCAL search_path = pg_catalog").await?;
    let rows = tx
        .query(
            include_str!("../sql/target_resolve_objects.sql"),
            &[&kinds, &objects],
        )
        .await?;
    tx.commit().await?;
    let names: BTreeMap<(String, String), String> = rows
        .iter()
        .filter_map(|r| {
            let name: Option<String> = r.get(2);
            name.map(|n| ((r.get(0), r.get(1)), n))
        })
        .collect();
    let name_of = |kind: &str, object: &str| names.get(&(kind.to_string(), object.to_string()));
    let mut left_out = 0;
    let owners = src
        .owners
        .iter()
        .filter_map(|o| match name_of(&o.kind, &o.object) {
            Some(n) => Some(OwnedObject {
                object: n.clone(),
                ..o.clone()
            }),
            None => {
                left_out += 1;
                None
            }
        })
        .collect();
    let grants = src
        .grants
        .iter()
        .filter_map(|g| match name_of(&g.kind, &g.object) {
            Some(n) => Some(Grant {
                object: n.clone(),
                ..g.clone()
            }),
            None => {
                left_out += 1;
                None
            }
        })
        .collect();
    let extension_members = src
        .extension_members
        .iter()
        .filter_map(|m| match name_of(&m.kind, &m.object) {
            Some(n) => Some(MemberPrivilege {
                object: n.clone(),
                ..m.clone()
            }),
            None => {
                left_out += 1;
                None
            }
        })
        .collect();
    Ok((
        SourcePrivileges {
            owners,
            grants,
            defaults: src.defaults.clone(),
            extension_members,
        },
        left_out,
    ))
}

/// The statements for the target, split in the order they must run.
#[derive(Debug, Default)]
pub struct PrivilegePlan {
    pub owners: Vec<String>,
    /// For each owner statement: what gives the intended owner the same rights should the
    /// target refuse to change the owner (it refuses a new owner without CREATE on the
    /// schema, as for chunks in TimescaleDB's internal schema).
    pub owner_fallbacks: Vec<Option<String>>,
    pub grants: Vec<String>,
    /// Roles the login role must be able to act as (to give objects to them).
    pub acting_roles: BTreeSet<String>,
    /// (schema, role) pairs that need CREATE on the schema to own objects there.
    pub schema_owners: BTreeSet<(String, String)>,
    /// (kind, object, statement) for privileges on extensions' objects: applied where the
    /// login role may act for the object's owner on the target.
    pub member_grants: Vec<(String, String, String)>,
    pub rewrites: Vec<String>,
}

fn grantee_sql(grantee: &str) -> String {
    if grantee.is_empty() {
        "PUBLIC".into()
    } else {
        ident(grantee)
    }
}

/// Builds owner and grant statements. `managed` roles are not on the target: objects they
/// own stay with `login`; grants to them are dropped (and counted in `rewrites`).
pub fn plan(src: &SourcePrivileges, managed: &BTreeSet<String>, login: &str) -> PrivilegePlan {
    let mut plan = PrivilegePlan::default();
    let map_owner = |owner: &str| -> String {
        if managed.contains(owner) {
            login.to_string()
        } else {
            owner.to_string()
        }
    };
    // Schemas first: an owner of a schema then has CREATE on it when it is given the
    // objects in it.
    let mut owners: Vec<&OwnedObject> = src.owners.iter().collect();
    owners.sort_by_key(|o| o.kind != "SCHEMA");
    let mut schema_owner: BTreeMap<&str, String> = BTreeMap::new();
    for o in owners {
        let owner = map_owner(&o.owner);
        if o.kind == "SCHEMA" {
            schema_owner.insert(&o.schema, owner.clone());
        }
        if owner == login {
            continue;
        }
        plan.owners.push(format!(
            "ALTER {} {} OWNER TO {}",
            o.kind,
            o.object,
            ident(&owner)
        ));
        let grant_kind = match o.kind.as_str() {
            "TABLE" | "VIEW" | "MATERIALIZED VIEW" | "FOREIGN TABLE" => Some("TABLE"),
            "SEQUENCE" => Some("SEQUENCE"),
            "FUNCTION" | "AGGREGATE" => Some("FUNCTION"),
            "PROCEDURE" => Some("PROCEDURE"),
            _ => None,
        };
        plan.owner_fallbacks.push(grant_kind.map(|k| {
            format!(
                "GRANT ALL ON {k} {} TO {} WITH GRANT OPTION",
                o.object,
                ident(&owner)
            )
        }));
        plan.acting_roles.insert(owner.clone());
        if !o.schema.is_empty() {
            plan.schema_owners.insert((o.schema.clone(), owner));
        }
    }
    // A schema's owner needs no CREATE lent on it, and taking a lent one back would take
    // the owner's own right.
    plan.schema_owners
        .retain(|(schema, role)| schema_owner.get(schema.as_str()) != Some(role));
    let mut dropped: BTreeMap<String, usize> = BTreeMap::new();
    let mut reset: BTreeSet<(String, String)> = BTreeSet::new();
    for g in &src.grants {
        let owner = map_owner(&g.owner);
        if g.column.is_empty() && reset.insert((g.kind.clone(), g.object.clone())) {
            // An explicit ACL replaces the defaults: start from none, then grant exactly.
            plan.grants
                .push(format!("REVOKE ALL ON {} {} FROM PUBLIC", g.kind, g.object));
            plan.grants.push(format!(
                "REVOKE ALL ON {} {} FROM {}",
                g.kind,
                g.object,
                ident(&owner)
            ));
        }
        let grantee = if managed.contains(&g.grantee) {
            if g.grantee != g.owner {
                *dropped.entry(g.grantee.clone()).or_default() += 1;
                continue;
            }
            owner.clone()
        } else {
            g.grantee.clone()
        };
        let privilege = if g.column.is_empty() {
            g.privilege.clone()
        } else {
            format!("{} ({})", g.privilege, ident(&g.column))
        };
        plan.grants.push(format!(
            "GRANT {privilege} ON {} {} TO {}{}",
            g.kind,
            g.object,
            grantee_sql(&grantee),
            if g.grantable {
                " WITH GRANT OPTION"
            } else {
                ""
            }
        ));
    }
    let mut reset_defaults: BTreeSet<(String, String)> = BTreeSet::new();
    for d in &src.defaults {
        let role = map_owner(&d.role);
        let objects = match d.objtype.as_str() {
            "r" => "TABLES",
            "S" => "SEQUENCES",
            "f" => "FUNCTIONS",
            "T" => "TYPES",
            "n" => "SCHEMAS",
            _ => continue,
        };
        let head = if d.schema.is_empty() {
            format!("ALTER DEFAULT PRIVILEGES FOR ROLE {}", ident(&role))
        } else {
            format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {}",
                ident(&role),
                ident(&d.schema)
            )
        };
        plan.acting_roles.insert(role.clone());
        if d.schema.is_empty() && reset_defaults.insert((role.clone(), d.objtype.clone())) {
            plan.grants
                .push(format!("{head} REVOKE ALL ON {objects} FROM PUBLIC"));
            plan.grants.push(format!(
                "{head} REVOKE ALL ON {objects} FROM {}",
                ident(&role)
            ));
        }
        let grantee = if managed.contains(&d.grantee) {
            if d.grantee != d.role {
                *dropped.entry(d.grantee.clone()).or_default() += 1;
                continue;
            }
            role.clone()
        } else {
            d.grantee.clone()
        };
        plan.grants.push(format!(
            "{head} GRANT {} ON {objects} TO {}{}",
            d.privilege,
            grantee_sql(&grantee),
            if d.grantable {
                " WITH GRANT OPTION"
            } else {
                ""
            }
        ));
    }
    for m in &src.extension_members {
        if managed.contains(&m.grantee) {
            *dropped.entry(m.grantee.clone()).or_default() += 1;
            continue;
        }
        let statement = if m.grant {
            format!(
                "GRANT {} ON {} {} TO {}{}",
                m.privilege,
                m.kind,
                m.object,
                grantee_sql(&m.grantee),
                if m.grantable {
                    " WITH GRANT OPTION"
                } else {
                    ""
                }
            )
        } else {
            format!(
                "REVOKE {} ON {} {} FROM {}",
                m.privilege,
                m.kind,
                m.object,
                grantee_sql(&m.grantee)
            )
        };
        plan.member_grants
            .push((m.kind.clone(), m.object.clone(), statement));
    }
    for (role, n) in dropped {
        plan.rewrites.push(format!(
            "{n} privilege(s) granted to or by {} dropped (a managed-service role)",
            ident(&role)
        ));
    }
    plan.acting_roles.remove(login);
    plan
}

/// Runs statements in batches; a batch that fails is retried one statement at a time so
/// one refused statement does not take its neighbours with it. Returns the refused
/// statements' indexes with the target's error; a failure worth retrying (the target went
/// away) ends it with that error instead, so that the phase is run again.
pub async fn run_batches(tgt: &Target, statements: &[String]) -> Result<Vec<(usize, Error)>> {
    let mut refused = Vec::new();
    for (b, batch) in statements.chunks(BATCH).enumerate() {
        let sql = batch.join(";\n");
        match tgt.execute(&sql).await {
            Ok(()) => continue,
            Err(e) if e.is_retryable() => return Err(e),
            Err(_) => {}
        }
        for (i, stmt) in batch.iter().enumerate() {
            match tgt.execute(stmt).await {
                Ok(()) => {}
                Err(e) if e.is_retryable() => return Err(e),
                Err(e) => refused.push((b * BATCH + i, e)),
            }
        }
    }
    Ok(refused)
}

/// Whether a refusal says the object is not on the target (filters left it out).
pub fn names_a_missing_object(e: &Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.has_sqlstate(&[
        SqlState::UNDEFINED_TABLE,
        SqlState::UNDEFINED_FUNCTION,
        SqlState::UNDEFINED_OBJECT,
        SqlState::UNDEFINED_COLUMN,
        SqlState::INVALID_SCHEMA_NAME,
    ])
}

/// One line per distinct reason, with a count and the first statement refused for it.
pub fn summarize(what: &str, statements: &[String], refused: &[(usize, Error)]) -> Vec<String> {
    let mut by_reason: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (i, reason) in refused {
        by_reason.entry(reason.to_string()).or_insert((0, *i)).0 += 1;
    }
    by_reason
        .into_iter()
        .map(|(reason, (n, first))| {
            format!(
                "{what}: {n} statement(s) refused by the target: {reason} (first: `{}`)",
                statements[first]
            )
        })
        .collect()
}

/// Runs and summarizes in one go, for statements whose refusal needs no follow-up;
/// `keep` says which refusals to report.
pub async fn run_and_summarize(
    tgt: &Target,
    statements: &[String],
    what: &str,
    keep: impl Fn(&Error) -> bool,
) -> Result<Vec<String>> {
    let mut refused = run_batches(tgt, statements).await?;
    refused.retain(|(_, e)| keep(e));
    Ok(summarize(what, statements, &refused))
}

/// Makes the login role able to act as each role in `roles` for the duration of the run;
/// returns the memberships it granted itself (to revoke at the end) and warnings.
pub async fn acquire_roles(
    tgt: &Target,
    login: &str,
    roles: &BTreeSet<String>,
) -> Result<(Vec<String>, Vec<String>)> {
    let mut granted = Vec::new();
    let mut warnings = Vec::new();
    for role in roles {
        let row = tgt
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)
                        AND pg_catalog.pg_has_role($2, $1, 'MEMBER')",
                &[role, &login],
            )
            .await?;
        if row.get::<_, bool>(0) {
            continue;
        }
        match tgt
            .execute(&format!("GRANT {} TO {}", ident(role), ident(login)))
            .await
        {
            Ok(()) => granted.push(role.clone()),
            Err(e) => warnings.push(format!(
                "cannot act as role {} on the target ({e}); objects it owns stay with {}",
                ident(role),
                ident(login)
            )),
        }
    }
    Ok((granted, warnings))
}

/// Applies the privileges on extensions' objects of [`PrivilegePlan::member_grants`]. An
/// object whose owner on the target the login role cannot act for (an extension a
/// superuser created) keeps the extension's privileges: GRANT and REVOKE would only warn
/// there, so those are listed instead. Returns warnings.
pub async fn apply_member_grants(
    tgt: &Target,
    member_grants: &[(String, String, String)],
) -> Result<Vec<String>> {
    let mut allowed = Vec::new();
    let mut not_allowed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (kind, object, statement) in member_grants {
        let owner_sql = match kind.as_str() {
            "FUNCTION" | "PROCEDURE" => {
                "SELECT proowner FROM pg_catalog.pg_proc WHERE oid = pg_catalog.to_regprocedure($1)"
            }
            "SCHEMA" => {
                "SELECT nspowner FROM pg_catalog.pg_namespace WHERE oid = pg_catalog.to_regnamespace($1)"
            }
            _ => "SELECT relowner FROM pg_catalog.pg_class WHERE oid = pg_catalog.to_regclass($1)",
        };
        let may: Option<bool> = tgt
            .query(
                &format!(
                    "SELECT pg_catalog.pg_has_role(o.owner, 'USAGE') FROM ({owner_sql}) AS o (owner)"
                ),
                &[object],
            )
            .await?
            .first()
            .map(|r| r.get(0));
        match may {
            Some(true) => allowed.push(statement.clone()),
            Some(false) => not_allowed
                .entry(object.clone())
                .or_default()
                .push(statement.clone()),
            None => {}
        }
    }
    let mut warnings =
        run_and_summarize(tgt, &allowed, "privilege on an extension's object", |_| {
            true
        })
        .await?;
    for (object, statements) in not_allowed {
        warnings.push(format!(
            "{object} belongs to an extension whose objects the target role may not change; its privileges stay as the extension made them (run as its owner: {})",
            statements.join("; ")
        ));
    }
    Ok(warnings)
}

/// Lifts `FORCE ROW LEVEL SECURITY` from those of `tables` (quoted and qualified) that
/// have it on the target, so that counting their rows as a member of their owner sees all
/// of them; [`force_row_security`] puts it back. Returns warnings for tables it could not
/// lift it from.
pub async fn lift_forced_row_security(tgt: &Target, tables: &[String]) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    for t in tables {
        let forced: bool = tgt
            .query_one(
                "SELECT COALESCE((SELECT relforcerowsecurity FROM pg_catalog.pg_class
                                  WHERE oid = pg_catalog.to_regclass($1)), false)",
                &[t],
            )
            .await?
            .get(0);
        if !forced {
            continue;
        }
        if let Err(e) = tgt
            .execute(&format!("ALTER TABLE {t} NO FORCE ROW LEVEL SECURITY"))
            .await
        {
            warnings.push(format!(
                "{t}: row-level security could not be lifted for counting ({e}); its count goes through its policies"
            ));
        }
    }
    Ok(warnings)
}

/// Puts `FORCE ROW LEVEL SECURITY` (back) on those of `tables` the target has; returns
/// warnings for those it could not.
pub async fn force_row_security(tgt: &Target, tables: &[String]) -> Result<Vec<String>> {
    let statements: Vec<String> = tables
        .iter()
        .map(|t| {
            format!(
                "DO $tsxfer$ BEGIN IF pg_catalog.to_regclass({lit}) IS NOT NULL THEN ALTER TABLE {t} FORCE ROW LEVEL SECURITY; END IF; END $tsxfer$",
                lit = crate::quote::literal(t)
            )
        })
        .collect();
    run_and_summarize(tgt, &statements, "forced row-level security", |_| true).await
}

/// Gives each future owner CREATE on its schemas where it lacks it (PostgreSQL asks that of
/// a new owner); returns the statements that take it back.
pub async fn lend_schema_create(
    tgt: &Target,
    pairs: &BTreeSet<(String, String)>,
) -> Result<Vec<String>> {
    let mut undo = Vec::new();
    for (schema, role) in pairs {
        let row = tgt
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $2)
                    AND EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)
                    AND NOT pg_catalog.has_schema_privilege($2, $1, 'CREATE')",
                &[schema, role],
            )
            .await?;
        if !row.get::<_, bool>(0) {
            continue;
        }
        let grant = format!(
            "GRANT CREATE ON SCHEMA {} TO {}",
            ident(schema),
            ident(role)
        );
        if tgt.execute(&grant).await.is_ok() {
            undo.push(format!(
                "REVOKE CREATE ON SCHEMA {} FROM {}",
                ident(schema),
                ident(role)
            ));
        }
    }
    Ok(undo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(object: &str, owner: &str, grantee: &str, privilege: &str) -> Grant {
        Grant {
            kind: "TABLE".into(),
            object: object.into(),
            column: String::new(),
            owner: owner.into(),
            grantee: grantee.into(),
            privilege: privilege.into(),
            grantable: false,
        }
    }

    #[test]
    fn owners_of_managed_roles_stay_with_login_others_are_set() {
        let src = SourcePrivileges {
            owners: vec![
                OwnedObject {
                    kind: "TABLE".into(),
                    object: "\"public\".\"a\"".into(),
                    schema: "public".into(),
                    owner: "postgres".into(),
                },
                OwnedObject {
                    kind: "FUNCTION".into(),
                    object: "public.f(integer)".into(),
                    schema: "public".into(),
                    owner: "app".into(),
                },
            ],
            grants: vec![],
            defaults: vec![],
            extension_members: vec![],
        };
        let managed: BTreeSet<String> = ["postgres".to_string()].into();
        let p = plan(&src, &managed, "tsdbadmin");
        assert_eq!(
            p.owners,
            ["ALTER FUNCTION public.f(integer) OWNER TO \"app\""]
        );
        assert_eq!(p.acting_roles, ["app".to_string()].into());
        assert!(
            p.schema_owners
                .contains(&("public".to_string(), "app".to_string()))
        );
    }

    #[test]
    fn a_schema_owner_is_given_its_schema_first_and_lent_nothing_on_it() {
        let owned = |kind: &str, object: &str, owner: &str| OwnedObject {
            kind: kind.into(),
            object: object.into(),
            schema: "app".into(),
            owner: owner.into(),
        };
        let src = SourcePrivileges {
            owners: vec![
                owned("TABLE", "\"app\".\"t\"", "app"),
                owned("TABLE", "\"app\".\"u\"", "other"),
                owned("SCHEMA", "\"app\"", "app"),
            ],
            grants: vec![],
            defaults: vec![],
            extension_members: vec![],
        };
        let p = plan(&src, &BTreeSet::new(), "tsdbadmin");
        assert_eq!(p.owners[0], "ALTER SCHEMA \"app\" OWNER TO \"app\"");
        assert_eq!(
            p.schema_owners,
            [("app".to_string(), "other".to_string())].into()
        );
    }

    #[test]
    fn acls_are_rebuilt_exactly_and_managed_grantees_dropped() {
        let mut column = grant("\"public\".\"t\"", "app", "reader", "SELECT");
        column.column = "Secret col".into();
        let mut withgrant = grant("\"public\".\"t\"", "app", "", "SELECT");
        withgrant.grantable = false;
        let src = SourcePrivileges {
            owners: vec![],
            grants: vec![
                grant("\"public\".\"t\"", "postgres", "postgres", "INSERT"),
                grant("\"public\".\"t\"", "postgres", "rds_superuser", "SELECT"),
                withgrant,
                column,
            ],
            defaults: vec![DefaultGrant {
                role: "app".into(),
                schema: "s".into(),
                objtype: "r".into(),
                grantee: "reader".into(),
                privilege: "SELECT".into(),
                grantable: true,
            }],
            extension_members: vec![],
        };
        let managed: BTreeSet<String> =
            ["postgres".to_string(), "rds_superuser".to_string()].into();
        let p = plan(&src, &managed, "tsdbadmin");
        assert_eq!(
            p.grants,
            [
                "REVOKE ALL ON TABLE \"public\".\"t\" FROM PUBLIC",
                "REVOKE ALL ON TABLE \"public\".\"t\" FROM \"tsdbadmin\"",
                "GRANT INSERT ON TABLE \"public\".\"t\" TO \"tsdbadmin\"",
                "GRANT SELECT ON TABLE \"public\".\"t\" TO PUBLIC",
                "GRANT SELECT (\"Secret col\") ON TABLE \"public\".\"t\" TO \"reader\"",
                "ALTER DEFAULT PRIVILEGES FOR ROLE \"app\" IN SCHEMA \"s\" GRANT SELECT ON TABLES TO \"reader\" WITH GRANT OPTION",
            ]
        );
        assert_eq!(p.rewrites.len(), 1);
        assert!(p.rewrites[0].contains("rds_superuser"));
    }
}
