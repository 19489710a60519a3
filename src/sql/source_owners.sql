-- Owners of the user objects tsxfer recreates: (kind for ALTER ... OWNER, object as SQL,
-- schema, owner). Run with search_path = pg_catalog so regprocedure names are qualified.
WITH user_ns AS (
    SELECT n.oid, n.nspname FROM pg_catalog.pg_namespace n
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', '_timescaledb_catalog', '_timescaledb_config', 'tsxfer')
      AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
), members AS (
    SELECT classid, objid FROM pg_catalog.pg_depend WHERE deptype = 'e'
)
SELECT 'SCHEMA' AS kind, quote_ident(n.nspname) AS object, n.nspname::text AS schema_name, r.rolname::text AS owner
FROM pg_catalog.pg_namespace n
JOIN user_ns u ON u.oid = n.oid
JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
WHERE NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_catalog.pg_namespace'::regclass AND m.objid = n.oid)
UNION ALL
SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                      WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END,
       format('%I.%I', u.nspname, c.relname), u.nspname::text, r.rolname::text
FROM pg_catalog.pg_class c
JOIN user_ns u ON u.oid = c.relnamespace
JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
  AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_catalog.pg_class'::regclass AND m.objid = c.oid)
  -- sequences that belong to a column follow their table's owner
  AND NOT (c.relkind = 'S' AND EXISTS (
      SELECT 1 FROM pg_catalog.pg_depend d
      WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
        AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')))
UNION ALL
SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
       p.oid::pg_catalog.regprocedure::text, u.nspname::text, r.rolname::text
FROM pg_catalog.pg_proc p
JOIN user_ns u ON u.oid = p.pronamespace
JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
WHERE NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_catalog.pg_proc'::regclass AND m.objid = p.oid)
UNION ALL
SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
       format('%I.%I', u.nspname, t.typname), u.nspname::text, r.rolname::text
FROM pg_catalog.pg_type t
JOIN user_ns u ON u.oid = t.typnamespace
JOIN pg_catalog.pg_roles r ON r.oid = t.typowner
WHERE t.typtype IN ('b', 'd', 'e', 'r')
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type a WHERE a.typarray = t.oid)
  AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_catalog.pg_type'::regclass AND m.objid = t.oid)
UNION ALL
SELECT 'SERVER', quote_ident(s.srvname), '', r.rolname::text
FROM pg_catalog.pg_foreign_server s
JOIN pg_catalog.pg_roles r ON r.oid = s.srvowner
WHERE NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_catalog.pg_foreign_server'::regclass AND m.objid = s.oid)
UNION ALL
SELECT 'LARGE OBJECT', l.oid::text, '', r.rolname::text
FROM pg_catalog.pg_largeobject_metadata l
JOIN pg_catalog.pg_roles r ON r.oid = l.lomowner
