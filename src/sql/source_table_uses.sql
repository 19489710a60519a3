-- What the tables $1 use but pg_dump --table leaves out: the schemas they live in, the
-- sequences their column defaults call (unless one of the tables owns it, or it is among
-- $1), the types of their columns, the tables their foreign keys reference and the
-- functions their triggers call, when those are not among $1, the system's or an
-- extension's. Each row: kind, the object's name quoted (and qualified; a function with
-- its argument types), the table that uses it.
WITH kept AS (
    SELECT unnest($1::oid[]) AS oid
), members AS (
    SELECT d.classid, d.objid FROM pg_catalog.pg_depend d WHERE d.deptype = 'e'
)
SELECT DISTINCT 'schema' AS kind, format('%I', n.nspname) AS name,
       format('%I.%I', n.nspname, c.relname) AS used_by
FROM kept k JOIN pg_catalog.pg_class c ON c.oid = k.oid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
UNION
SELECT 'sequence', format('%I.%I', sn.nspname, s.relname), format('%I.%I', n.nspname, c.relname)
FROM kept k
JOIN pg_catalog.pg_class c ON c.oid = k.oid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = c.oid
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_attrdef'::regclass AND d.objid = ad.oid
     AND d.refclassid = 'pg_catalog.pg_class'::regclass
JOIN pg_catalog.pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
WHERE s.oid NOT IN (SELECT oid FROM kept)
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend o
                  WHERE o.classid = 'pg_catalog.pg_class'::regclass AND o.objid = s.oid
                    AND o.refclassid = 'pg_catalog.pg_class'::regclass
                    AND o.deptype IN ('a', 'i') AND o.refobjid IN (SELECT oid FROM kept))
UNION
SELECT 'type', format('%I.%I', tn.nspname, t.typname), format('%I.%I', n.nspname, c.relname)
FROM kept k
JOIN pg_catalog.pg_class c ON c.oid = k.oid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_type at ON at.oid = a.atttypid
JOIN pg_catalog.pg_type t ON t.oid = CASE WHEN at.typcategory = 'A' AND at.typelem <> 0 THEN at.typelem ELSE at.oid END
JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
WHERE tn.nspname NOT IN ('pg_catalog', 'information_schema')
  AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_catalog.pg_type'::regclass AND m.objid = t.oid)
  AND t.typrelid NOT IN (SELECT oid FROM kept)
UNION
SELECT 'table', format('%I.%I', rn.nspname, r.relname), format('%I.%I', n.nspname, c.relname)
FROM kept k
JOIN pg_catalog.pg_class c ON c.oid = k.oid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_constraint f ON f.conrelid = c.oid AND f.contype = 'f'
JOIN pg_catalog.pg_class r ON r.oid = f.confrelid
JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
WHERE r.oid NOT IN (SELECT oid FROM kept)
  AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_catalog.pg_class'::regclass AND m.objid = r.oid)
UNION
SELECT 'function', format('%I.%I(%s)', pn.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)),
       format('%I.%I', n.nspname, c.relname)
FROM kept k
JOIN pg_catalog.pg_class c ON c.oid = k.oid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_trigger g ON g.tgrelid = c.oid AND NOT g.tgisinternal
JOIN pg_catalog.pg_proc p ON p.oid = g.tgfoid
JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
WHERE pn.nspname NOT IN ('pg_catalog', 'information_schema')
  AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_catalog.pg_proc'::regclass AND m.objid = p.oid)
ORDER BY 1, 2, 3
