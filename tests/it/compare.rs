//! Compares a source database with its migrated copy, through SQL only.
//!
//! Every catalog query returns one JSON array of `[key, value]` pairs, so psql's text
//! output never has to be split on a separator. The two sides' pairs are matched by key,
//! and each difference becomes one line saying what differs and where.
//!
//! What legitimately differs between a source and a correct migration is normalized away
//! rather than compared:
//! - OIDs, relfilenodes, chunk creation times, job ids and next start times;
//! - who ran the migration: on each side, superusers, the owner of the compared database
//!   and the roles named `postgres` and `tsdbadmin` are shown as `<admin>`, and
//!   memberships granted to `<admin>` are ignored;
//! - `rds_*` roles: ACL entries naming them are dropped on both sides (the migration drops
//!   such roles and grants), and the target must have no such role at all;
//! - SUPERUSER, REPLICATION and BYPASSRLS are not compared: the target must have them off;
//! - TimescaleDB's own catalog (extension members) is compared through its information
//!   views, not row by row; its sequences only have to be no lower on the target.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::cluster::Cluster;

/// Session settings that make value output independent of how each server is configured.
const SESSION_SETUP: &str = "SET TimeZone = 'UTC';\n\
    SET DateStyle = 'ISO, MDY';\n\
    SET IntervalStyle = 'postgres';\n\
    SET extra_float_digits = 1;\n\
    SET bytea_output = 'hex';\n\
    SET lc_monetary = 'C';\n\
    SET statement_timeout = 0;\n\
    SET search_path = pg_catalog;\n";

/// Roles as compared: superusers, the database owner and the well-known admin roles
/// `postgres` and `tsdbadmin` (whoever ran the migration on that side) become `<admin>`.
const ROLES_CTE: &str = "roles AS (\
    SELECT r.oid, r.rolname::text AS rolname, \
           CASE WHEN r.rolsuper OR r.rolname IN ('postgres', 'tsdbadmin') \
                  OR r.oid = (SELECT datdba FROM pg_database WHERE datname = current_database()) \
                THEN '<admin>' ELSE r.rolname::text END AS name \
    FROM pg_roles r)";

/// Roles created by the fixtures (roles.sql).
const FIXTURE_ROLE: &str = "(rolname LIKE 'tsx\\_%' OR rolname LIKE 'Tsx %')";

/// Relations fetched by one data query: each takes a lock per relation (and per chunk
/// when read through its parent), so keep well inside the default lock budget.
const DATA_BATCH_WEIGHT: usize = 40;

/// Alias of the row in row-hash queries; quoted so that no real column shadows it.
const ROW_ALIAS: &str = "\"tsxfer compare row\"";

/// Differences a non-superuser target cannot avoid, and that tsxfer reports instead:
/// chunk tables in TimescaleDB's internal schema stay with the login role when the target
/// does not let it give other roles CREATE there.
pub fn unavoidable(diff: &str) -> bool {
    diff.contains("_timescaledb_internal") && (diff.contains("owner") || diff.contains("acl"))
}

/// Fails the test, listing them, on the differences between a source database and the
/// target it was migrated into, those in [`unavoidable`] left out.
pub fn assert_migrated(src: &Cluster, src_db: &str, tgt: &Cluster, tgt_db: &str) {
    let diffs: Vec<String> = compare_databases(src, src_db, tgt, tgt_db)
        .into_iter()
        .filter(|d| !unavoidable(d))
        .collect();
    assert!(
        diffs.is_empty(),
        "source and target differ:\n{}",
        diffs.join("\n")
    );
}

/// Compare a source database and a migrated target database; return human-readable
/// differences (empty = equal).
pub fn compare_databases(src: &Cluster, src_db: &str, tgt: &Cluster, tgt_db: &str) -> Vec<String> {
    let src = Side {
        cluster: src,
        db: src_db,
    };
    let tgt = Side {
        cluster: tgt,
        db: tgt_db,
    };
    let mut diffs = Vec::new();

    for (what, sql) in catalog_checks() {
        diff_maps(what, &src.pairs(&sql), &tgt.pairs(&sql), &mut diffs);
    }
    compare_roles(&src, &tgt, &mut diffs);

    let src_ts = src.has_timescaledb();
    let tgt_ts = tgt.has_timescaledb();
    if src_ts && !tgt_ts {
        diffs.push("extension timescaledb: installed in source, missing in target".to_string());
    }
    let timescaledb = src_ts && tgt_ts;
    if timescaledb {
        for (what, sql) in timescaledb_checks() {
            diff_maps(what, &src.pairs(&sql), &tgt.pairs(&sql), &mut diffs);
        }
        diff_job_sets(&src.pairs(JOBS_SQL), &tgt.pairs(JOBS_SQL), &mut diffs);
    }

    compare_data(&src, &tgt, timescaledb, &mut diffs);
    diffs
}

/// Row count of a relation through its parent (e.g. a hypertable), as an i64.
pub fn count_rows(c: &Cluster, db: &str, relation_sql: &str) -> i64 {
    let out = c.psql(db, &format!("SELECT count(*) FROM {relation_sql}"));
    out.parse()
        .unwrap_or_else(|e| panic!("count of {relation_sql} in {db}: {out:?} is not a number: {e}"))
}

/// One database on one cluster.
struct Side<'a> {
    cluster: &'a Cluster,
    db: &'a str,
}

impl Side<'_> {
    /// Runs one query returning a single JSON value (after the session setup).
    fn json(&self, select_json: &str) -> Value {
        let out = self
            .cluster
            .psql(self.db, &format!("{SESSION_SETUP}{select_json};"));
        serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!(
                "cluster {} db {}: cannot parse query output as JSON: {e}\n{out}",
                self.cluster.name, self.db
            )
        })
    }

    /// Runs a query returning columns `(k text, v jsonb)` (it may use the `roles` CTE)
    /// and returns its rows by key. A repeated key gets a ` #2`, ` #3`... suffix so no
    /// row is lost.
    fn pairs(&self, select_k_v: &str) -> BTreeMap<String, Value> {
        let rows = self.json(&format!(
            "WITH {ROLES_CTE}, entries (k, v) AS ({select_k_v})\n\
             SELECT coalesce(jsonb_agg(jsonb_build_array(k, v) ORDER BY k COLLATE \"C\"), '[]'::jsonb)::text \
             FROM entries"
        ));
        let rows: Vec<(String, Value)> = serde_json::from_value(rows).unwrap_or_else(|e| {
            panic!(
                "cluster {} db {}: query output is not [[key, value], ...]: {e}\n--- query ---\n{select_k_v}",
                self.cluster.name, self.db
            )
        });
        let mut map = BTreeMap::new();
        for (key, value) in rows {
            let mut unique = key.clone();
            let mut n = 1;
            while map.contains_key(&unique) {
                n += 1;
                unique = format!("{key} #{n}");
            }
            map.insert(unique, value);
        }
        map
    }

    fn has_timescaledb(&self) -> bool {
        self.cluster.psql(
            self.db,
            "SELECT count(*) FROM pg_catalog.pg_extension WHERE extname = 'timescaledb'",
        ) == "1"
    }

    /// Runs data probes (key, SQL scalar subquery returning text) in batches.
    fn probe(&self, probes: &[DataProbe]) -> BTreeMap<String, String> {
        let mut result = BTreeMap::new();
        let mut batch: Vec<&DataProbe> = Vec::new();
        let mut weight = 0;
        for (i, probe) in probes.iter().enumerate() {
            batch.push(probe);
            weight += probe.weight;
            let last = i + 1 == probes.len();
            if weight >= DATA_BATCH_WEIGHT || last {
                let selects: Vec<String> = batch
                    .iter()
                    .map(|p| format!("SELECT {} AS k, ({}) AS v", sql_literal(&p.key), p.sql))
                    .collect();
                let values = self.json(&format!(
                    "SELECT coalesce(jsonb_object_agg(k, v), '{{}}'::jsonb)::text FROM ({}) AS probes",
                    selects.join("\nUNION ALL\n")
                ));
                if let Value::Object(values) = values {
                    for (k, v) in values {
                        let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                        result.insert(k, v);
                    }
                }
                batch.clear();
                weight = 0;
            }
        }
        result
    }
}

// --- catalog -------------------------------------------------------------------------

/// `nsp` (an alias of pg_namespace) is a user schema.
fn user_schema(nsp: &str) -> String {
    format!(
        "{nsp}.nspname NOT IN ('pg_catalog', 'information_schema', 'tsxfer') \
         AND {nsp}.nspname NOT LIKE 'pg\\_toast%' AND {nsp}.nspname NOT LIKE 'pg\\_temp\\_%'"
    )
}

/// The object `oid` of catalog `class` is not a member of an extension.
fn not_extension_member(class: &str, oid: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_depend ext WHERE ext.classid = '{class}'::regclass \
         AND ext.objid = {oid} AND ext.deptype = 'e')"
    )
}

/// An ACL as a sorted JSON array of `grantee=privilege by grantor` strings, with role
/// names mapped through the `roles` CTE and entries naming `rds_*` roles left out.
fn acl_json(acl: &str) -> String {
    format!(
        "(SELECT coalesce(jsonb_agg(e ORDER BY e COLLATE \"C\"), '[]'::jsonb) FROM (\
           SELECT DISTINCT \
             CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE coalesce(ge.name, '#' || a.grantee) END \
             || '=' || a.privilege_type \
             || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END \
             || ' by ' || coalesce(gr.name, '#' || a.grantor) AS e \
           FROM aclexplode({acl}) AS a \
           LEFT JOIN roles ge ON ge.oid = a.grantee \
           LEFT JOIN roles gr ON gr.oid = a.grantor \
           WHERE coalesce(ge.rolname, '') NOT LIKE 'rds\\_%' \
             AND coalesce(gr.rolname, '') NOT LIKE 'rds\\_%') AS acl_entries)"
    )
}

/// The catalog checks: (what, query returning `k, v`).
fn catalog_checks() -> Vec<(&'static str, String)> {
    let mut checks = Vec::new();

    checks.push((
        "schema",
        format!(
            "SELECT quote_ident(n.nspname), jsonb_build_object(\
               'owner', o.name, \
               'acl', {acl}) \
             FROM pg_namespace n JOIN roles o ON o.oid = n.nspowner \
             WHERE {user} AND {notext}",
            acl = acl_json("coalesce(n.nspacl, acldefault('n', n.nspowner))"),
            user = user_schema("n"),
            notext = not_extension_member("pg_namespace", "n.oid"),
        ),
    ));

    checks.push((
        "relation",
        format!(
            "SELECT format('%I.%I', n.nspname, c.relname), jsonb_build_object(\
               'kind', c.relkind, \
               'persistence', c.relpersistence, \
               'owner', o.name, \
               'acl', {acl}, \
               'row_security', c.relrowsecurity, \
               'force_row_security', c.relforcerowsecurity, \
               'replica_identity', c.relreplident, \
               'options', c.reloptions, \
               'populated', c.relispopulated, \
               'partition_key', CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END, \
               'partition_bound', pg_get_expr(c.relpartbound, c.oid), \
               'parents', (SELECT jsonb_agg(i.inhparent::regclass::text ORDER BY i.inhseqno) \
                           FROM pg_inherits i WHERE i.inhrelid = c.oid)) \
             FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN roles o ON o.oid = c.relowner \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {user} AND {notext}",
            acl = acl_json(
                "coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::\"char\", c.relowner))"
            ),
            user = user_schema("n"),
            notext = not_extension_member("pg_class", "c.oid"),
        ),
    ));

    checks.push((
        "column",
        format!(
            "SELECT format('%I.%I.%I', n.nspname, c.relname, a.attname), jsonb_build_object(\
               'position', row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum), \
               'type', format_type(a.atttypid, a.atttypmod), \
               'not_null', a.attnotnull, \
               'default', pg_get_expr(d.adbin, d.adrelid), \
               'identity', a.attidentity, \
               'generated', a.attgenerated, \
               'collation', (SELECT collname FROM pg_collation WHERE oid = a.attcollation), \
               'statistics', a.attstattarget, \
               'storage', a.attstorage, \
               'compression', a.attcompression, \
               'options', (SELECT jsonb_agg(o ORDER BY o) FROM unnest(a.attoptions) o \
                           WHERE o NOT LIKE 'pg\\_attver=%'), \
               'acl', CASE WHEN a.attacl IS NOT NULL THEN {acl} END) \
             FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attnum > 0 AND NOT a.attisdropped \
               AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {user} AND {notext}",
            acl = acl_json("a.attacl"),
            user = user_schema("n"),
            notext = not_extension_member("pg_class", "c.oid"),
        ),
    ));

    checks.push((
        "index",
        format!(
            "SELECT format('%I.%I', n.nspname, ic.relname), jsonb_build_object(\
               'table', format('%I.%I', tn.nspname, c.relname), \
               'definition', pg_get_indexdef(i.indexrelid), \
               'valid', i.indisvalid, \
               'clustered', i.indisclustered, \
               'replica_identity', i.indisreplident) \
             FROM pg_index i \
             JOIN pg_class ic ON ic.oid = i.indexrelid \
             JOIN pg_namespace n ON n.oid = ic.relnamespace \
             JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_namespace tn ON tn.oid = c.relnamespace \
             WHERE {user} AND {notext}",
            user = user_schema("tn"),
            notext = not_extension_member("pg_class", "c.oid"),
        ),
    ));

    checks.push((
        "constraint",
        format!(
            "SELECT format('%I.%I.%I', n.nspname, c.relname, con.conname), jsonb_build_object(\
               'type', con.contype, \
               'definition', pg_get_constraintdef(con.oid), \
               'validated', con.convalidated, \
               'deferrable', con.condeferrable, \
               'deferred', con.condeferred) \
             FROM pg_constraint con \
             JOIN pg_class c ON c.oid = con.conrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE {user} AND {notext}",
            user = user_schema("n"),
            notext = not_extension_member("pg_class", "c.oid"),
        ),
    ));

    checks.push((
        "trigger",
        format!(
            "SELECT format('%I.%I.%I', n.nspname, c.relname, t.tgname), jsonb_build_object(\
               'definition', pg_get_triggerdef(t.oid), \
               'enabled', t.tgenabled) \
             FROM pg_trigger t \
             JOIN pg_class c ON c.oid = t.tgrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE NOT t.tgisinternal AND {user} AND {notext}",
            user = user_schema("n"),
            notext = not_extension_member("pg_class", "c.oid"),
        ),
    ));

    checks.push((
        "policy",
        format!(
            "SELECT format('%I.%I.%I', p.schemaname, p.tablename, p.policyname), jsonb_build_object(\
               'permissive', p.permissive, \
               'roles', to_jsonb(p.roles), \
               'command', p.cmd, \
               'using', p.qual, \
               'with_check', p.with_check) \
             FROM pg_policies p JOIN pg_namespace n ON n.nspname = p.schemaname \
             WHERE {user}",
            user = user_schema("n"),
        ),
    ));

    checks.push((
        "view",
        format!(
            "SELECT format('%I.%I', n.nspname, c.relname), to_jsonb(pg_get_viewdef(c.oid)) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('v', 'm') AND {user} AND {notext}",
            user = user_schema("n"),
            notext = not_extension_member("pg_class", "c.oid"),
        ),
    ));

    checks.push((
        "function",
        format!(
            "SELECT format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)), \
               jsonb_build_object(\
               'kind', p.prokind, \
               'owner', o.name, \
               'acl', {acl}, \
               'result', pg_get_function_result(p.oid), \
               'definition', CASE WHEN p.prokind IN ('f', 'p', 'w') THEN pg_get_functiondef(p.oid) END, \
               'aggregate', (SELECT jsonb_build_object(\
                   'kind', ag.aggkind, \
                   'transition', ag.aggtransfn::text, \
                   'final', ag.aggfinalfn::text, \
                   'combine', ag.aggcombinefn::text, \
                   'state_type', format_type(ag.aggtranstype, NULL), \
                   'initial', ag.agginitval) \
                 FROM pg_aggregate ag WHERE ag.aggfnoid = p.oid)) \
             FROM pg_proc p \
             JOIN pg_namespace n ON n.oid = p.pronamespace \
             JOIN roles o ON o.oid = p.proowner \
             WHERE {user} AND {notext}",
            acl = acl_json("coalesce(p.proacl, acldefault('f', p.proowner))"),
            user = user_schema("n"),
            notext = not_extension_member("pg_proc", "p.oid"),
        ),
    ));

    checks.push((
        "type",
        format!(
            "SELECT format('%I.%I', n.nspname, t.typname), jsonb_build_object(\
               'kind', t.typtype, \
               'owner', o.name, \
               'acl', {acl}, \
               'labels', (SELECT jsonb_agg(e.enumlabel ORDER BY e.enumsortorder) \
                          FROM pg_enum e WHERE e.enumtypid = t.oid), \
               'base_type', CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END, \
               'not_null', t.typnotnull, \
               'default', t.typdefault, \
               'constraints', (SELECT jsonb_object_agg(con.conname, pg_get_constraintdef(con.oid)) \
                               FROM pg_constraint con WHERE con.contypid = t.oid), \
               'attributes', CASE WHEN t.typtype = 'c' THEN \
                   (SELECT jsonb_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod) \
                                     ORDER BY a.attnum) \
                    FROM pg_attribute a \
                    WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) END, \
               'range_subtype', (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = t.oid)) \
             FROM pg_type t \
             JOIN pg_namespace n ON n.oid = t.typnamespace \
             JOIN roles o ON o.oid = t.typowner \
             WHERE {user} AND {notext} \
               AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c') \
               AND NOT EXISTS (SELECT 1 FROM pg_type el WHERE el.typarray = t.oid) \
               AND t.typtype <> 'm'",
            acl = acl_json("coalesce(t.typacl, acldefault('T', t.typowner))"),
            user = user_schema("n"),
            notext = not_extension_member("pg_type", "t.oid"),
        ),
    ));

    checks.push((
        "sequence",
        format!(
            "SELECT format('%I.%I', n.nspname, c.relname), jsonb_build_object(\
               'type', format_type(s.seqtypid, NULL), \
               'start', s.seqstart, \
               'increment', s.seqincrement, \
               'min', s.seqmin, \
               'max', s.seqmax, \
               'cache', s.seqcache, \
               'cycle', s.seqcycle, \
               'owned_by', (SELECT format('%s.%I', d.refobjid::regclass::text, a.attname) \
                            FROM pg_depend d \
                            JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
                            WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid \
                              AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))) \
             FROM pg_sequence s \
             JOIN pg_class c ON c.oid = s.seqrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE {user} AND {notext}",
            user = user_schema("n"),
            notext = not_extension_member("pg_class", "c.oid"),
        ),
    ));

    // Comments, by object identity. Objects of the system (OIDs below 16384) and of
    // extensions are left out.
    checks.push((
        "comment",
        "SELECT io.type || ' ' || io.identity, to_jsonb(d.description) \
         FROM pg_description d, \
              LATERAL pg_identify_object(d.classoid, d.objoid, d.objsubid) io \
         WHERE d.objoid >= 16384 \
           AND NOT EXISTS (SELECT 1 FROM pg_depend ext WHERE ext.classid = d.classoid \
                           AND ext.objid = d.objoid AND ext.deptype = 'e') \
           AND coalesce(io.schema, CASE WHEN d.classoid = 'pg_namespace'::regclass THEN io.name END, '') \
               NOT IN ('pg_catalog', 'information_schema', 'tsxfer') \
           AND coalesce(io.schema, '') NOT LIKE 'pg\\_toast%'"
        .to_string(),
    ));

    // Default privileges. A global entry equal to the built-in default, or a per-schema
    // entry left empty once rds_* grants are dropped, is the same as no entry.
    checks.push((
        "default privileges",
        format!(
            "SELECT k, v FROM (\
               SELECT 'for ' || r.name || ' in ' || coalesce(quote_ident(n.nspname), 'all schemas') \
                      || ' on ' || CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences' \
                         WHEN 'f' THEN 'functions' WHEN 'T' THEN 'types' WHEN 'n' THEN 'schemas' \
                         ELSE d.defaclobjtype::text END AS k, \
                      {acl} AS v, \
                      CASE WHEN d.defaclnamespace = 0 THEN {default_acl} ELSE '[]'::jsonb END AS implied \
               FROM pg_default_acl d \
               JOIN roles r ON r.oid = d.defaclrole \
               LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace \
               WHERE n.oid IS NULL OR ({user})) AS dacl \
             WHERE v <> implied",
            acl = acl_json("d.defaclacl"),
            default_acl = acl_json(
                "acldefault(CASE d.defaclobjtype WHEN 'S' THEN 's' ELSE d.defaclobjtype END::\"char\", d.defaclrole)"
            ),
            user = user_schema("n"),
        ),
    ));

    checks.push((
        "large object",
        format!(
            "SELECT lo.oid::text, jsonb_build_object(\
               'owner', o.name, \
               'acl', {acl}, \
               'bytes', octet_length(lo_get(lo.oid)), \
               'md5', md5(lo_get(lo.oid))) \
             FROM pg_largeobject_metadata lo JOIN roles o ON o.oid = lo.lomowner",
            acl = acl_json("coalesce(lo.lomacl, acldefault('L', lo.lomowner))"),
        ),
    ));

    checks.push((
        "extension",
        "SELECT e.extname::text, jsonb_build_object('version', e.extversion, 'schema', n.nspname) \
         FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
            .to_string(),
    ));

    checks
}

// --- roles ---------------------------------------------------------------------------

fn compare_roles(src: &Side, tgt: &Side, diffs: &mut Vec<String>) {
    let roles = format!(
        "SELECT rolname, jsonb_build_object(\
           'inherit', r.rolinherit, \
           'createrole', r.rolcreaterole, \
           'createdb', r.rolcreatedb, \
           'login', r.rolcanlogin, \
           'connection_limit', r.rolconnlimit, \
           'valid_until', r.rolvaliduntil, \
           'settings', (SELECT to_jsonb(array(SELECT unnest(s.setconfig) ORDER BY 1)) \
                        FROM pg_db_role_setting s WHERE s.setdatabase = 0 AND s.setrole = r.oid)) \
         FROM pg_roles r WHERE {FIXTURE_ROLE}"
    );
    diff_maps("role", &src.pairs(&roles), &tgt.pairs(&roles), diffs);

    // Memberships touching a fixture role; grants to whoever ran the migration and
    // memberships in or of rds_* roles are not compared.
    let memberships = format!(
        "SELECT quote_ident(me.name) || ' member of ' || quote_ident(ro.name), \
                jsonb_build_object('admin_option', am.admin_option) \
         FROM pg_auth_members am \
         JOIN roles ro ON ro.oid = am.roleid \
         JOIN roles me ON me.oid = am.member \
         WHERE ({ro_fixture} OR {me_fixture}) \
           AND ro.rolname NOT LIKE 'rds\\_%' AND me.rolname NOT LIKE 'rds\\_%' \
           AND me.name <> '<admin>'",
        ro_fixture = FIXTURE_ROLE.replace("rolname", "ro.rolname"),
        me_fixture = FIXTURE_ROLE.replace("rolname", "me.rolname"),
    );
    diff_maps(
        "membership",
        &src.pairs(&memberships),
        &tgt.pairs(&memberships),
        diffs,
    );

    // What the migration must have dropped.
    let dropped = format!(
        "SELECT rolname, to_jsonb(array_remove(ARRAY[\
             CASE WHEN r.rolsuper THEN 'SUPERUSER' END, \
             CASE WHEN r.rolreplication THEN 'REPLICATION' END, \
             CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END], NULL)) \
         FROM pg_roles r \
         WHERE ({FIXTURE_ROLE} AND (r.rolsuper OR r.rolreplication OR r.rolbypassrls)) \
            OR rolname LIKE 'rds\\_%'"
    );
    for (role, attrs) in tgt.pairs(&dropped) {
        if role.starts_with("rds_") {
            diffs.push(format!(
                "role {role}: exists in target (rds_* roles must be dropped)"
            ));
        } else {
            diffs.push(format!(
                "role {role}: has {} in target (must be dropped)",
                compact(&attrs)
            ));
        }
    }
}

// --- TimescaleDB -----------------------------------------------------------------------

/// A role name (text) through the `roles` CTE.
fn mapped_role(name_expr: &str) -> String {
    format!("(SELECT name FROM roles WHERE rolname = {name_expr})")
}

fn timescaledb_checks() -> Vec<(&'static str, String)> {
    vec![
        (
            "hypertable",
            format!(
                "SELECT format('%I.%I', h.hypertable_schema, h.hypertable_name), \
                        to_jsonb(h) || jsonb_build_object('owner', {owner}) \
                 FROM timescaledb_information.hypertables h",
                owner = mapped_role("h.owner::text"),
            ),
        ),
        (
            "dimension",
            "SELECT format('%I.%I dimension %s', d.hypertable_schema, d.hypertable_name, d.dimension_number), \
                    to_jsonb(d) \
             FROM timescaledb_information.dimensions d"
                .to_string(),
        ),
        (
            "chunk",
            "SELECT format('%I.%I', c.chunk_schema, c.chunk_name), \
                    to_jsonb(c) - 'chunk_creation_time' \
             FROM timescaledb_information.chunks c"
                .to_string(),
        ),
        (
            "compression setting",
            "SELECT format('%I.%I.%I', s.hypertable_schema, s.hypertable_name, s.attname), to_jsonb(s) \
             FROM timescaledb_information.compression_settings s"
                .to_string(),
        ),
        (
            "hypertable compression settings",
            "SELECT s.hypertable::text, to_jsonb(s) \
             FROM timescaledb_information.hypertable_compression_settings s"
                .to_string(),
        ),
        (
            "chunk compression settings",
            "SELECT s.chunk::text, to_jsonb(s) \
             FROM timescaledb_information.chunk_compression_settings s"
                .to_string(),
        ),
        (
            "continuous aggregate",
            format!(
                "SELECT format('%I.%I', a.view_schema, a.view_name), \
                        to_jsonb(a) || jsonb_build_object('view_owner', {owner}) \
                 FROM timescaledb_information.continuous_aggregates a",
                owner = mapped_role("a.view_owner::text"),
            ),
        ),
    ]
}

/// User jobs (id 1000 and up) without their ids: each row's key is the whole
/// descriptor, its value how many identical jobs there are.
const JOBS_SQL: &str = "SELECT descriptor, to_jsonb(count(*)) FROM (\
      SELECT jsonb_build_object(\
        'proc', quote_ident(j.proc_schema) || '.' || quote_ident(j.proc_name), \
        'hypertable', quote_ident(j.hypertable_schema) || '.' || quote_ident(j.hypertable_name), \
        'application_name', regexp_replace(j.application_name, ' \\[[0-9]+\\]$', ''), \
        'schedule_interval', j.schedule_interval, \
        'max_runtime', j.max_runtime, \
        'max_retries', j.max_retries, \
        'retry_period', j.retry_period, \
        'scheduled', j.scheduled, \
        'fixed_schedule', j.fixed_schedule, \
        'check', quote_ident(j.check_schema) || '.' || quote_ident(j.check_name), \
        'owner', (SELECT name FROM roles WHERE rolname = j.owner::text), \
        'config', j.config)::text AS descriptor \
      FROM timescaledb_information.jobs j WHERE j.job_id >= 1000) AS jobs \
    GROUP BY descriptor";

fn diff_job_sets(
    src: &BTreeMap<String, Value>,
    tgt: &BTreeMap<String, Value>,
    diffs: &mut Vec<String>,
) {
    let keys: BTreeSet<&String> = src.keys().chain(tgt.keys()).collect();
    for key in keys {
        let count = |m: &BTreeMap<String, Value>| m.get(key).and_then(Value::as_i64).unwrap_or(0);
        let (s, t) = (count(src), count(tgt));
        if s != t {
            diffs.push(format!("job {key}: {s} in source vs {t} in target"));
        }
    }
}

// --- data ------------------------------------------------------------------------------

/// One scalar query to run on both sides.
struct DataProbe {
    key: String,
    sql: String,
    /// Roughly how many relations it locks.
    weight: usize,
}

/// Row count and order-independent hash of `FROM {from}`, as "count md5".
pub fn row_hash_sql(from: &str) -> String {
    format!(
        "SELECT count(*)::text || ' ' || coalesce(md5(string_agg(h, '' ORDER BY h COLLATE \"C\")), '-') \
         FROM (SELECT md5({ROW_ALIAS}::text) AS h FROM {from} AS {ROW_ALIAS}) AS hashes"
    )
}

/// The data probes for one side: every table, partition, chunk and compressed chunk
/// table (`FROM ONLY`), every inheritance parent also with its children (hypertables,
/// partitioned tables), populated materialized views, continuous aggregates' views, and
/// sequences.
fn data_probes(side: &Side, timescaledb: bool) -> Vec<DataProbe> {
    let mut listing = format!(
        "SELECT format('%I.%I', n.nspname, c.relname), jsonb_build_object(\
           'kind', c.relkind, \
           'populated', c.relispopulated, \
           'children', (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = c.oid), \
           'extension_config', false) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p', 'm', 'S') AND {user} AND {notext} \
         UNION ALL \
         SELECT format('%I.%I', n.nspname, c.relname), jsonb_build_object(\
           'kind', c.relkind, 'extension_config', true) \
         FROM pg_extension e \
         CROSS JOIN LATERAL unnest(e.extconfig) AS cfg (oid) \
         JOIN pg_class c ON c.oid = cfg.oid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'S'",
        user = user_schema("n"),
        notext = not_extension_member("pg_class", "c.oid"),
    );
    if timescaledb {
        listing.push_str(
            " UNION ALL \
             SELECT format('%I.%I', a.view_schema, a.view_name), \
                    jsonb_build_object('kind', 'cagg', 'extension_config', false) \
             FROM timescaledb_information.continuous_aggregates a",
        );
    }

    let mut probes = Vec::new();
    for (name, info) in side.pairs(&listing) {
        let kind = info["kind"].as_str().unwrap_or_default();
        let children = info["children"].as_i64().unwrap_or(0).max(0) as usize;
        let populated = info["populated"].as_bool().unwrap_or(true);
        let extension_config = info["extension_config"].as_bool().unwrap_or(false);
        match kind {
            "S" if extension_config => probes.push(DataProbe {
                key: format!("extension sequence {name}"),
                sql: format!("SELECT last_value::text || ' ' || is_called::text FROM {name}"),
                weight: 1,
            }),
            "S" => probes.push(DataProbe {
                key: format!("sequence {name}"),
                sql: format!("SELECT last_value::text || ' ' || is_called::text FROM {name}"),
                weight: 1,
            }),
            "m" if !populated => probes.push(DataProbe {
                key: format!("materialized view {name}"),
                sql: "SELECT 'not populated'".to_string(),
                weight: 0,
            }),
            "m" => probes.push(DataProbe {
                key: format!("materialized view {name}"),
                sql: row_hash_sql(&name),
                weight: 1,
            }),
            "cagg" => probes.push(DataProbe {
                key: format!("continuous aggregate {name}"),
                sql: row_hash_sql(&name),
                weight: 10,
            }),
            "r" | "p" => {
                if kind == "r" {
                    probes.push(DataProbe {
                        key: format!("table {name}"),
                        sql: row_hash_sql(&format!("ONLY {name}")),
                        weight: 1,
                    });
                }
                if children > 0 || kind == "p" {
                    probes.push(DataProbe {
                        key: format!("table {name} with its children"),
                        sql: row_hash_sql(&name),
                        weight: 1 + children,
                    });
                }
            }
            _ => {}
        }
    }
    probes
}

fn compare_data(src: &Side, tgt: &Side, timescaledb: bool, diffs: &mut Vec<String>) {
    let src_values = src.probe(&data_probes(src, timescaledb));
    let tgt_values = tgt.probe(&data_probes(tgt, timescaledb));
    for (key, s) in &src_values {
        // A relation missing on one side is already reported by the catalog checks.
        let Some(t) = tgt_values.get(key) else {
            continue;
        };
        if key.starts_with("extension sequence ") {
            if next_value(t) < next_value(s) {
                diffs.push(format!(
                    "{key}: target is behind the source (last_value/is_called {s} vs {t})"
                ));
            }
            continue;
        }
        if s == t {
            continue;
        }
        if key.starts_with("sequence ") {
            diffs.push(format!("{key}: last_value/is_called {s} vs {t}"));
            continue;
        }
        let rows = |v: &str| v.split_once(' ').and_then(|(n, _)| n.parse::<i64>().ok());
        match (rows(s), rows(t)) {
            (Some(sn), Some(tn)) if sn != tn => {
                diffs.push(format!("{key}: rows {sn} vs {tn}"));
            }
            (Some(sn), Some(_)) => {
                diffs.push(format!(
                    "{key}: same row count ({sn}) but different row contents"
                ));
            }
            _ => diffs.push(format!("{key}: {s:?} vs {t:?}")),
        }
    }
}

/// The next value an increasing sequence hands out, from "last_value is_called".
fn next_value(probe: &str) -> i128 {
    let mut parts = probe.split(' ');
    let last: i128 = parts
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(i128::MIN);
    match parts.next() {
        Some("true") => last + 1,
        _ => last,
    }
}

// --- diffing ---------------------------------------------------------------------------

fn diff_maps(
    what: &str,
    src: &BTreeMap<String, Value>,
    tgt: &BTreeMap<String, Value>,
    diffs: &mut Vec<String>,
) {
    for (key, s) in src {
        match tgt.get(key) {
            None => diffs.push(format!("{what} {key}: in source, missing in target")),
            Some(t) if s != t => diffs.push(format!("{what} {key}: {}", describe_difference(s, t))),
            Some(_) => {}
        }
    }
    for key in tgt.keys().filter(|k| !src.contains_key(*k)) {
        diffs.push(format!("{what} {key}: in target only"));
    }
}

/// "field: source vs target" for each differing field of two JSON objects, or the two
/// values themselves.
fn describe_difference(src: &Value, tgt: &Value) -> String {
    match (src, tgt) {
        (Value::Object(s), Value::Object(t)) => {
            let fields: BTreeSet<&String> = s.keys().chain(t.keys()).collect();
            let null = Value::Null;
            fields
                .into_iter()
                .filter_map(|f| {
                    let (a, b) = (s.get(f).unwrap_or(&null), t.get(f).unwrap_or(&null));
                    (a != b).then(|| format!("{f}: {}", show_pair(a, b)))
                })
                .collect::<Vec<_>>()
                .join("; ")
        }
        _ => show_pair(src, tgt),
    }
}

/// Two differing values: for two lists (e.g. ACLs), what only one side has; otherwise
/// both values, shortened around their first difference when long.
fn show_pair(src: &Value, tgt: &Value) -> String {
    const CONTEXT: usize = 60;
    if let (Value::Array(s), Value::Array(t)) = (src, tgt) {
        let only = |a: &Vec<Value>, b: &Vec<Value>| -> Vec<String> {
            a.iter().filter(|x| !b.contains(x)).map(compact).collect()
        };
        let (missing, extra) = (only(s, t), only(t, s));
        if !missing.is_empty() || !extra.is_empty() {
            let mut parts = Vec::new();
            if !missing.is_empty() {
                parts.push(format!("missing in target [{}]", missing.join(", ")));
            }
            if !extra.is_empty() {
                parts.push(format!("extra in target [{}]", extra.join(", ")));
            }
            return parts.join(", ");
        }
    }
    let (a, b) = (compact(src), compact(tgt));
    if a.chars().count() <= 2 * CONTEXT && b.chars().count() <= 2 * CONTEXT {
        return format!("{a} vs {b}");
    }
    let first_difference = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let start = first_difference.saturating_sub(CONTEXT / 2);
    let window = |s: &str| {
        let total = s.chars().count();
        let piece: String = s.chars().skip(start).take(CONTEXT * 2).collect();
        let before = if start > 0 { "…" } else { "" };
        let after = if start + CONTEXT * 2 < total {
            "…"
        } else {
            ""
        };
        format!("{before}{piece}{after}")
    };
    format!(
        "{} vs {} (first difference at character {first_difference})",
        window(&a),
        window(&b)
    )
}

fn compact(v: &Value) -> String {
    v.to_string()
}

/// An SQL string literal.
fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
