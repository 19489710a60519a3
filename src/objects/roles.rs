//! The roles pass: the source's roles and memberships, rewritten for a target where tsxfer
//! is not a superuser. The seed procedure does this with sed over `pg_dumpall --roles-only`;
//! here the same rewrites are made on the catalog rows, and every one is listed.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::pg::{Source, Target};
use crate::quote::{ident, literal};

/// A role as the source's catalog shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRole {
    pub name: String,
    pub bootstrap: bool,
    pub superuser: bool,
    pub inherit: bool,
    pub createrole: bool,
    pub createdb: bool,
    pub login: bool,
    pub replication: bool,
    pub bypassrls: bool,
    pub connection_limit: i32,
    pub valid_until: Option<String>,
    /// The stored password hash, when the source lets us read it.
    pub password: Option<String>,
    /// `name=value` settings for all databases.
    pub settings: Vec<String>,
    /// `name=value` settings for the migrated database only.
    pub database_settings: Vec<String>,
    /// `COMMENT ON ROLE`.
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Membership {
    pub role: String,
    pub member: String,
    pub admin_option: bool,
    pub grantor: Option<String>,
}

/// What the roles pass will do, and every liberty it takes.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RolePlan {
    /// (role, CREATE ROLE statement)
    pub creates: Vec<(String, String)>,
    /// (what, statement) for settings and memberships; a failure is a warning.
    pub extras: Vec<(String, String)>,
    pub rewrites: Vec<String>,
    pub existing: Vec<String>,
    /// Login roles created without a password (the source did not let us read it).
    pub need_password: Vec<String>,
    /// Source roles whose objects go to the target's login role instead.
    pub mapped_to_target_user: Vec<String>,
}

/// Why a source role is not created on the target, if it is not.
pub fn managed_role_reason(role: &SourceRole, target_user: &str) -> Option<String> {
    let name = role.name.as_str();
    if role.bootstrap || name == "postgres" {
        Some("the source's superuser; its objects go to the target's login role".into())
    } else if name == "tsdbadmin" || name == "tsdbexplorer" {
        Some("an administration role of the managed service".into())
    } else if name.starts_with("rds") {
        Some("an AWS RDS administration role".into())
    } else if name == target_user {
        Some("the role tsxfer logs in as on the target".into())
    } else {
        None
    }
}

/// Builds the statements for the target. Pure: a function of the catalog rows.
pub fn plan_roles(
    roles: &[SourceRole],
    memberships: &[Membership],
    target_roles: &BTreeSet<String>,
    target_user: &str,
    target_db: &str,
    passwords_readable: bool,
) -> RolePlan {
    let mut plan = RolePlan::default();
    let mut skipped: BTreeSet<&str> = BTreeSet::new();
    for role in roles {
        if let Some(reason) = managed_role_reason(role, target_user) {
            plan.rewrites.push(format!(
                "role {}: not created ({reason})",
                ident(&role.name)
            ));
            // Not applied to another role either: said, not lost without a word. Named,
            // not valued: a custom setting may hold something secret.
            let settings: Vec<&str> = role
                .settings
                .iter()
                .chain(&role.database_settings)
                .filter_map(|s| s.split_once('=').map(|(name, _)| name))
                .filter(|name| *name != RESTORING)
                .collect();
            if !settings.is_empty() {
                plan.rewrites.push(format!(
                    "role {}: its settings not applied ({})",
                    ident(&role.name),
                    settings.join(", ")
                ));
            }
            plan.mapped_to_target_user.push(role.name.clone());
            skipped.insert(&role.name);
            continue;
        }
        if target_roles.contains(&role.name) {
            // The role is the cluster's and stays as it is; what it has set in this
            // database belongs to the database, which is new.
            plan.existing.push(role.name.clone());
            push_database_settings(&mut plan, role, target_db);
            continue;
        }
        let mut dropped = Vec::new();
        if role.superuser {
            dropped.push("SUPERUSER");
        }
        if role.replication {
            dropped.push("REPLICATION");
        }
        if role.bypassrls {
            dropped.push("BYPASSRLS");
        }
        if !dropped.is_empty() {
            plan.rewrites.push(format!(
                "role {}: {} dropped (needs a superuser on the target)",
                ident(&role.name),
                dropped.join(", ")
            ));
        }
        let mut sql = format!("CREATE ROLE {}", ident(&role.name));
        sql.push_str(if role.login { " LOGIN" } else { " NOLOGIN" });
        sql.push_str(if role.inherit {
            " INHERIT"
        } else {
            " NOINHERIT"
        });
        sql.push_str(if role.createrole {
            " CREATEROLE"
        } else {
            " NOCREATEROLE"
        });
        sql.push_str(if role.createdb {
            " CREATEDB"
        } else {
            " NOCREATEDB"
        });
        if role.connection_limit >= 0 {
            sql.push_str(&format!(" CONNECTION LIMIT {}", role.connection_limit));
        }
        if let Some(until) = &role.valid_until {
            sql.push_str(&format!(" VALID UNTIL {}", literal(until)));
        }
        match &role.password {
            Some(pw) => sql.push_str(&format!(" PASSWORD {}", literal(pw))),
            None if role.login && !passwords_readable => {
                plan.need_password.push(role.name.clone());
            }
            None => {}
        }
        plan.creates.push((role.name.clone(), sql));
        if let Some(comment) = &role.comment {
            plan.extras.push((
                format!("comment on role {}", role.name),
                format!(
                    "COMMENT ON ROLE {} IS {}",
                    ident(&role.name),
                    literal(comment)
                ),
            ));
        }
        for setting in &role.settings {
            if let Some(stmt) = setting_sql(&format!("ALTER ROLE {}", ident(&role.name)), setting) {
                plan.extras
                    .push((format!("setting {setting} of role {}", role.name), stmt));
            }
        }
        push_database_settings(&mut plan, role, target_db);
    }
    let mut granted_by_dropped = 0;
    for m in memberships {
        if skipped.contains(m.role.as_str()) || skipped.contains(m.member.as_str()) {
            plan.rewrites.push(format!(
                "membership of {} in {}: dropped (a managed-service role)",
                ident(&m.member),
                ident(&m.role)
            ));
            continue;
        }
        if m.grantor.as_deref().is_some_and(|g| !skipped.contains(g)) {
            granted_by_dropped += 1;
        }
        let mut sql = format!("GRANT {} TO {}", ident(&m.role), ident(&m.member));
        if m.admin_option {
            sql.push_str(" WITH ADMIN OPTION");
        }
        plan.extras
            .push((format!("membership of {} in {}", m.member, m.role), sql));
    }
    if granted_by_dropped > 0 {
        plan.rewrites.push(format!(
            "{granted_by_dropped} membership(s): GRANTED BY not kept (the target records its login role)"
        ));
    }
    plan
}

/// Settings whose value is a list of names: the catalog keeps them as one string of
/// (double-quoted where needed) names, and SET wants each name as its own literal.
const LIST_SETTINGS: &[&str] = &[
    "search_path",
    "temp_tablespaces",
    "session_preload_libraries",
    "local_preload_libraries",
    "shared_preload_libraries",
];

/// Splits a list setting's value the way PostgreSQL does: comma-separated, each item
/// optionally double-quoted with `""` for a quote inside.
fn split_list_setting(value: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        item.push('"');
                    } else {
                        break;
                    }
                } else {
                    item.push(c);
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                item.push(c);
                chars.next();
            }
            item = item.trim_end().to_string();
        }
        items.push(item);
        while chars.peek().is_some_and(|c| *c != ',') {
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
    }
    items
}

/// `ALTER ROLE ... IN DATABASE target_db SET ...` for what `role` set in the source
/// database.
fn push_database_settings(plan: &mut RolePlan, role: &SourceRole, target_db: &str) {
    let head = format!(
        "ALTER ROLE {} IN DATABASE {}",
        ident(&role.name),
        ident(target_db)
    );
    for setting in &role.database_settings {
        if let Some(stmt) = setting_sql(&head, setting) {
            plan.extras.push((
                format!("setting {setting} of role {} in the database", role.name),
                stmt,
            ));
        }
    }
}

/// TimescaleDB's restore flag: a role that had it set is never given it on the target.
const RESTORING: &str = "timescaledb.restoring";

/// `ALTER ROLE ... SET name TO 'value'` from a `name=value` catalog entry.
fn setting_sql(head: &str, setting: &str) -> Option<String> {
    let (name, value) = setting.split_once('=')?;
    if name == RESTORING {
        return None;
    }
    let value = if LIST_SETTINGS.contains(&name.to_ascii_lowercase().as_str()) {
        split_list_setting(value)
            .iter()
            .map(|v| literal(v))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        literal(value)
    };
    Some(format!("{head} SET {} TO {value}", ident(name)))
}

/// The settings of the source database itself (`ALTER DATABASE ... SET`), as
/// `name=value`.
pub async fn read_database_settings(src: &Source) -> Result<Vec<String>> {
    Ok(src
        .query(
            "SELECT COALESCE((SELECT s.setconfig FROM pg_catalog.pg_db_role_setting s
                              JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
                              WHERE s.setrole = 0 AND d.datname = current_database()),
                             '{}'::text[])",
            &[],
        )
        .await?
        .first()
        .map(|r| r.get(0))
        .unwrap_or_default())
}

/// `ALTER DATABASE target_db SET ...` for each of `settings`.
pub fn database_setting_statements(settings: &[String], target_db: &str) -> Vec<String> {
    let head = format!("ALTER DATABASE {}", ident(target_db));
    settings
        .iter()
        .filter_map(|s| setting_sql(&head, s))
        .collect()
}

/// Reads the source's roles and memberships. Returns whether passwords were readable.
pub async fn read_source_roles(src: &Source) -> Result<(Vec<SourceRole>, Vec<Membership>, bool)> {
    let rows = src
        .query(include_str!("../sql/source_roles.sql"), &[])
        .await?;
    // Asked first: a refused query would abort the snapshot's transaction.
    let readable: bool = src
        .query_one(
            "SELECT pg_catalog.has_table_privilege('pg_catalog.pg_authid', 'SELECT')",
            &[],
        )
        .await?
        .get(0);
    let passwords: Vec<(String, String)> = if readable {
        src.pairs(
            "SELECT rolname::text, rolpassword FROM pg_catalog.pg_authid WHERE rolpassword IS NOT NULL",
        )
        .await?
    } else {
        Vec::new()
    };
    let roles = rows
        .iter()
        .map(|r| {
            let name: String = r.get("rolname");
            SourceRole {
                password: passwords
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, p)| p.clone()),
                name,
                bootstrap: r.get("bootstrap"),
                superuser: r.get("rolsuper"),
                inherit: r.get("rolinherit"),
                createrole: r.get("rolcreaterole"),
                createdb: r.get("rolcreatedb"),
                login: r.get("rolcanlogin"),
                replication: r.get("rolreplication"),
                bypassrls: r.get("rolbypassrls"),
                connection_limit: r.get("rolconnlimit"),
                valid_until: r.get("valid_until"),
                settings: r.get("settings"),
                database_settings: r.get("database_settings"),
                comment: r.get("comment"),
            }
        })
        .collect();
    let memberships = src
        .query(include_str!("../sql/source_memberships.sql"), &[])
        .await?
        .iter()
        .map(|r| Membership {
            role: r.get("role"),
            member: r.get("member"),
            admin_option: r.get("admin_option"),
            grantor: r.get("grantor"),
        })
        .collect();
    Ok((roles, memberships, readable))
}

pub async fn target_roles(tgt: &Target) -> Result<BTreeSet<String>> {
    Ok(tgt
        .query("SELECT rolname::text FROM pg_catalog.pg_roles", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Runs the plan on the target. Creating a role must work; a setting or membership the
/// target refuses is a warning, returned.
pub async fn apply_roles(tgt: &Target, plan: &RolePlan) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    for (role, sql) in &plan.creates {
        if let Err(e) = tgt.execute(sql).await {
            return Err(Error::new(
                ErrorKind::Schema,
                format!("cannot create role {} on the target: {e}", ident(role)),
            ));
        }
    }
    for (what, sql) in &plan.extras {
        if let Err(e) = tgt.execute(sql).await {
            warnings.push(format!("{what}: not applied on the target: {e}"));
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str) -> SourceRole {
        SourceRole {
            name: name.into(),
            bootstrap: false,
            superuser: false,
            inherit: true,
            createrole: false,
            createdb: false,
            login: true,
            replication: false,
            bypassrls: false,
            connection_limit: -1,
            valid_until: None,
            password: None,
            settings: vec![],
            database_settings: vec![],
            comment: None,
        }
    }

    #[test]
    fn managed_roles_are_not_created_and_are_listed() {
        let mut boot = role("admin");
        boot.bootstrap = true;
        let roles = vec![boot, role("rds_superuser"), role("tsdbadmin"), role("app")];
        let plan = plan_roles(&roles, &[], &BTreeSet::new(), "tsdbadmin", "db", true);
        assert_eq!(plan.creates.len(), 1);
        assert_eq!(plan.creates[0].0, "app");
        assert_eq!(plan.rewrites.len(), 3);
        assert!(plan.mapped_to_target_user.contains(&"admin".to_string()));
    }

    #[test]
    fn superuser_replication_bypassrls_are_dropped_and_said() {
        let mut r = role("Big \"Boss\"");
        r.superuser = true;
        r.replication = true;
        r.bypassrls = true;
        r.createdb = true;
        r.connection_limit = 5;
        r.valid_until = Some("2030-01-01 00:00:00+00".into());
        r.password = Some("SCRAM-SHA-256$x".into());
        r.settings = vec!["work_mem=64MB".into()];
        let plan = plan_roles(&[r], &[], &BTreeSet::new(), "me", "db", true);
        let sql = &plan.creates[0].1;
        assert_eq!(
            sql,
            "CREATE ROLE \"Big \"\"Boss\"\"\" LOGIN INHERIT NOCREATEROLE CREATEDB CONNECTION LIMIT 5 \
             VALID UNTIL '2030-01-01 00:00:00+00' PASSWORD 'SCRAM-SHA-256$x'"
        );
        assert!(!sql.contains("SUPER") && !sql.contains("REPLICATION") && !sql.contains("BYPASS"));
        assert!(plan.rewrites[0].contains("SUPERUSER, REPLICATION, BYPASSRLS dropped"));
        assert_eq!(
            plan.extras[0].1,
            "ALTER ROLE \"Big \"\"Boss\"\"\" SET \"work_mem\" TO '64MB'"
        );
    }

    #[test]
    fn memberships_of_managed_roles_are_dropped_granted_by_is_not_kept() {
        let roles = vec![role("rds_iam"), role("app"), role("reader")];
        let ms = vec![
            Membership {
                role: "rds_iam".into(),
                member: "app".into(),
                admin_option: false,
                grantor: None,
            },
            Membership {
                role: "reader".into(),
                member: "app".into(),
                admin_option: true,
                grantor: Some("reader".into()),
            },
        ];
        let plan = plan_roles(&roles, &ms, &BTreeSet::new(), "me", "db", true);
        let grants: Vec<_> = plan.extras.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(grants, ["GRANT \"reader\" TO \"app\" WITH ADMIN OPTION"]);
        assert!(plan.rewrites.iter().any(|r| r.contains("rds_iam")));
        assert!(plan.rewrites.iter().any(|r| r.contains("GRANTED BY")));
    }

    #[test]
    fn list_settings_are_split_into_literals() {
        assert_eq!(
            setting_sql(
                "ALTER ROLE r",
                "search_path=public, \"Ünï \"\"S\"\"\", $user"
            )
            .unwrap(),
            "ALTER ROLE r SET \"search_path\" TO 'public', 'Ünï \"S\"', '$user'"
        );
        assert_eq!(
            setting_sql("ALTER ROLE r", "work_mem=64MB").unwrap(),
            "ALTER ROLE r SET \"work_mem\" TO '64MB'"
        );
    }

    #[test]
    fn existing_roles_are_left_alone_and_unreadable_passwords_reported() {
        let roles = vec![role("app"), role("old")];
        let existing: BTreeSet<String> = ["old".to_string()].into();
        let plan = plan_roles(&roles, &[], &existing, "me", "db", false);
        assert_eq!(plan.existing, ["old"]);
        assert_eq!(plan.need_password, ["app"]);
    }

    #[test]
    fn a_managed_roles_settings_are_said_to_be_left_behind() {
        let mut admin = role("tsdbadmin");
        admin.database_settings = vec!["work_mem=8MB".into(), "app.token=s3cret".into()];
        let plan = plan_roles(
            &[admin, role("plain")],
            &[],
            &BTreeSet::new(),
            "me",
            "db",
            true,
        );
        assert!(plan.extras.is_empty(), "{plan:?}");
        assert!(
            plan.rewrites.contains(
                &"role \"tsdbadmin\": its settings not applied (work_mem, app.token)".to_string()
            ),
            "{plan:?}"
        );
        assert_eq!(plan.rewrites.len(), 2, "{plan:?}");
    }

    #[test]
    fn an_existing_role_gets_its_settings_in_the_new_database_and_nothing_else() {
        let mut old = role("old");
        old.settings = vec!["work_mem=64MB".into()];
        old.database_settings = vec!["statement_timeout=45s".into()];
        old.comment = Some("theirs".into());
        let existing: BTreeSet<String> = ["old".to_string()].into();
        let plan = plan_roles(&[old], &[], &existing, "me", "db", true);
        assert!(plan.creates.is_empty());
        let statements: Vec<_> = plan.extras.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            statements,
            ["ALTER ROLE \"old\" IN DATABASE \"db\" SET \"statement_timeout\" TO '45s'"]
        );
    }
}
