-- Roles of the source cluster, without the predefined pg_* roles.
SELECT r.rolname::text AS rolname,
       r.oid = 10 AS bootstrap,
       r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
       r.rolreplication, r.rolbypassrls, r.rolconnlimit,
       r.rolvaliduntil::text AS valid_until,
       COALESCE((SELECT s.setconfig FROM pg_catalog.pg_db_role_setting s
                 WHERE s.setrole = r.oid AND s.setdatabase = 0), '{}'::text[]) AS settings,
       COALESCE((SELECT s.setconfig FROM pg_catalog.pg_db_role_setting s
                 JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
                 WHERE s.setrole = r.oid AND d.datname = current_database()), '{}'::text[]) AS database_settings,
       pg_catalog.shobj_description(r.oid, 'pg_authid') AS comment
FROM pg_catalog.pg_roles r
WHERE r.rolname !~ '^pg_'
ORDER BY r.rolname
