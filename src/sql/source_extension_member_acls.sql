-- Privileges on objects that belong to extensions, where they differ from what the
-- extension's script left (pg_init_privs; none there means the defaults): one row per
-- privilege to grant or revoke on the target, which makes the extension's objects with
-- the script's privileges. (kind for GRANT, object as SQL, extension, 'GRANT' or
-- 'REVOKE', grantee or '' for PUBLIC, privilege, grantable.) Run with search_path =
-- pg_catalog.
WITH members AS (
    SELECT d.classid, d.objid, e.extname::text AS extname
    FROM pg_depend d
    JOIN pg_extension e ON e.oid = d.refobjid
    WHERE d.deptype = 'e' AND d.refclassid = 'pg_extension'::regclass
), objects AS (
    SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END AS kind,
           p.oid::regprocedure::text AS object, m.extname, m.classid, p.oid,
           COALESCE(p.proacl, acldefault('f', p.proowner)) AS acl, acldefault('f', p.proowner) AS defaults
    FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
    WHERE p.prokind IN ('f', 'p', 'w')
    UNION ALL
    SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
           format('%I.%I', n.nspname, c.relname), m.extname, m.classid, c.oid,
           COALESCE(c.relacl, acldefault((CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char", c.relowner)),
           acldefault((CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char", c.relowner)
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
    WHERE c.relkind IN ('r', 'v', 'm', 'S', 'f', 'p')
    UNION ALL
    SELECT 'SCHEMA', quote_ident(n.nspname), m.extname, m.classid, n.oid,
           COALESCE(n.nspacl, acldefault('n', n.nspowner)), acldefault('n', n.nspowner)
    FROM pg_namespace n JOIN members m ON m.classid = 'pg_namespace'::regclass AND m.objid = n.oid
), compared AS (
    SELECT o.kind, o.object, o.extname, o.acl,
           COALESCE(ip.initprivs, o.defaults) AS initial
    FROM objects o
    LEFT JOIN pg_init_privs ip ON ip.classoid = o.classid AND ip.objoid = o.oid AND ip.objsubid = 0
    WHERE o.acl IS DISTINCT FROM COALESCE(ip.initprivs, o.defaults)
), changes AS (
    SELECT c.kind, c.object, c.extname, 'GRANT' AS action, x.grantee, x.privilege_type, x.is_grantable
    FROM compared c CROSS JOIN LATERAL (
        SELECT a.grantee, a.privilege_type, a.is_grantable FROM aclexplode(c.acl) a
        EXCEPT
        SELECT b.grantee, b.privilege_type, b.is_grantable FROM aclexplode(c.initial) b) x
    UNION ALL
    SELECT c.kind, c.object, c.extname, 'REVOKE', x.grantee, x.privilege_type, x.is_grantable
    FROM compared c CROSS JOIN LATERAL (
        SELECT b.grantee, b.privilege_type, b.is_grantable FROM aclexplode(c.initial) b
        EXCEPT
        SELECT a.grantee, a.privilege_type, a.is_grantable FROM aclexplode(c.acl) a) x
)
SELECT ch.kind, ch.object, ch.extname, ch.action,
       COALESCE(r.rolname::text, '') AS grantee, ch.privilege_type::text, ch.is_grantable
FROM changes ch
LEFT JOIN pg_roles r ON r.oid = ch.grantee
ORDER BY ch.extname, ch.kind, ch.object, ch.action DESC, grantee, ch.privilege_type
