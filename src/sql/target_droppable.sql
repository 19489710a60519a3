-- DROP statements for what a run made in the target database: whole schemas that hold no
-- extension object, and in the other schemas (public, TimescaleDB's) every relation,
-- routine and type that is no extension's. Partitions and inheritance children go with
-- their parents.
WITH user_ns AS (
    SELECT n.oid, n.nspname,
           EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                   WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
                     AND ((d.classid = 'pg_catalog.pg_namespace'::regclass AND d.objid = n.oid)
                          OR (d.classid = 'pg_catalog.pg_class'::regclass
                              AND d.objid IN (SELECT oid FROM pg_catalog.pg_class WHERE relnamespace = n.oid))
                          OR (d.classid = 'pg_catalog.pg_proc'::regclass
                              AND d.objid IN (SELECT oid FROM pg_catalog.pg_proc WHERE pronamespace = n.oid))))
           AS shared
    FROM pg_catalog.pg_namespace n
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'tsxfer')
      AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
), members AS (
    SELECT classid, objid FROM pg_catalog.pg_depend WHERE deptype = 'e'
)
SELECT format('DROP SCHEMA IF EXISTS %I CASCADE', u.nspname)
FROM user_ns u WHERE NOT u.shared AND u.nspname <> 'public'
UNION ALL
SELECT format('DROP %s IF EXISTS %I.%I CASCADE',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                             WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
              u.nspname, c.relname)
FROM pg_catalog.pg_class c JOIN user_ns u ON u.oid = c.relnamespace
WHERE (u.shared OR u.nspname = 'public')
  AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND NOT c.relispartition
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid)
  AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_catalog.pg_class'::regclass AND m.objid = c.oid)
UNION ALL
SELECT format('DROP ROUTINE IF EXISTS %s CASCADE', p.oid::pg_catalog.regprocedure)
FROM pg_catalog.pg_proc p JOIN user_ns u ON u.oid = p.pronamespace
WHERE (u.shared OR u.nspname = 'public') AND p.prokind <> 'a'
  AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_catalog.pg_proc'::regclass AND m.objid = p.oid)
UNION ALL
SELECT format('DROP %s IF EXISTS %I.%I CASCADE', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, u.nspname, t.typname)
FROM pg_catalog.pg_type t JOIN user_ns u ON u.oid = t.typnamespace
WHERE (u.shared OR u.nspname = 'public') AND t.typtype IN ('e', 'd', 'r', 'b')
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type a WHERE a.typarray = t.oid)
  AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_catalog.pg_type'::regclass AND m.objid = t.oid)
