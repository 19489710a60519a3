-- Every explicit privilege on the user objects tsxfer recreates, one row per grant:
-- (kind for GRANT, object as SQL, column or '', owner, grantee or '' for PUBLIC,
-- privilege, grantable). Run with search_path = pg_catalog.
WITH user_ns AS (
    SELECT n.oid, n.nspname, n.nspacl, n.nspowner FROM pg_catalog.pg_namespace n
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', '_timescaledb_catalog', '_timescaledb_config', 'tsxfer')
      AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
), members AS (
    SELECT classid, objid FROM pg_catalog.pg_depend WHERE deptype = 'e'
), objects AS (
    SELECT 'SCHEMA' AS kind, quote_ident(u.nspname) AS object, '' AS col, u.nspowner AS owner, u.nspacl AS acl
    FROM user_ns u
    WHERE u.nspacl IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_catalog.pg_namespace'::regclass AND m.objid = u.oid)
    UNION ALL
    SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
           format('%I.%I', u.nspname, c.relname), '', c.relowner, c.relacl
    FROM pg_catalog.pg_class c JOIN user_ns u ON u.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.relacl IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_catalog.pg_class'::regclass AND m.objid = c.oid)
    UNION ALL
    SELECT 'TABLE', format('%I.%I', u.nspname, c.relname), a.attname::text, c.relowner, a.attacl
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
    JOIN user_ns u ON u.oid = c.relnamespace
    WHERE a.attacl IS NOT NULL AND a.attnum > 0 AND NOT a.attisdropped
      AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_catalog.pg_class'::regclass AND m.objid = c.oid)
    UNION ALL
    SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
           p.oid::pg_catalog.regprocedure::text, '', p.proowner, p.proacl
    FROM pg_catalog.pg_proc p JOIN user_ns u ON u.oid = p.pronamespace
    WHERE p.proacl IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_catalog.pg_proc'::regclass AND m.objid = p.oid)
    UNION ALL
    SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
           format('%I.%I', u.nspname, t.typname), '', t.typowner, t.typacl
    FROM pg_catalog.pg_type t JOIN user_ns u ON u.oid = t.typnamespace
    WHERE t.typacl IS NOT NULL AND t.typtype IN ('b', 'd', 'e', 'r', 'c')
      AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_catalog.pg_type'::regclass AND m.objid = t.oid)
    UNION ALL
    SELECT 'FOREIGN SERVER', quote_ident(s.srvname), '', s.srvowner, s.srvacl
    FROM pg_catalog.pg_foreign_server s
    WHERE s.srvacl IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_catalog.pg_foreign_server'::regclass AND m.objid = s.oid)
    UNION ALL
    SELECT 'LARGE OBJECT', l.oid::text, '', l.lomowner, l.lomacl
    FROM pg_catalog.pg_largeobject_metadata l
    WHERE l.lomacl IS NOT NULL
)
SELECT o.kind, o.object, o.col,
       ow.rolname::text AS owner,
       COALESCE(g.rolname::text, '') AS grantee,
       x.privilege_type::text AS privilege,
       x.is_grantable AS grantable
FROM objects o
JOIN pg_catalog.pg_roles ow ON ow.oid = o.owner
CROSS JOIN LATERAL aclexplode(o.acl) AS x
LEFT JOIN pg_catalog.pg_roles g ON g.oid = x.grantee
ORDER BY o.kind, o.object, o.col, grantee, privilege
