-- Tables to ANALYZE after the load: leaves first (each locks only itself), then parents
-- of inheritance trees and partitioned tables (each locks all its children at once).
-- Each by its name as SQL, whether it is a parent, and its schema and name apart.
-- A table the copy pool analyzed right after loading it is left out, unless it has an
-- index on expressions or extended statistics: those come with post-data, and ANALYZE
-- gathers their statistics only once they exist.
-- Each property is a set read once and joined on the table's OID, never a sub-select per
-- table: every chunk is a child of its hypertable, and a sub-select per table over
-- pg_inherits (which the planner picks as a scan of it, the parent being one value)
-- reads every chunk's row once for every table: quadratic in the chunks.
WITH parents AS (
    SELECT DISTINCT i.inhparent AS oid FROM pg_catalog.pg_inherits i
), later_statistics AS (
    SELECT x.indrelid AS oid FROM pg_catalog.pg_index x WHERE x.indexprs IS NOT NULL
    UNION
    SELECT s.stxrelid FROM pg_catalog.pg_statistic_ext s
), members AS (
    SELECT d.objid AS oid FROM pg_catalog.pg_depend d
    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'e'
), candidates AS (
    SELECT c.oid,
           c.relkind,
           format('%I.%I', n.nspname, c.relname) AS relation,
           n.nspname::text AS schema_name,
           c.relname::text AS table_name,
           (c.relkind = 'p' OR p.oid IS NOT NULL) AS parent,
           l.oid IS NOT NULL AS later_statistics
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN parents p ON p.oid = c.oid
    LEFT JOIN later_statistics l ON l.oid = c.oid
    LEFT JOIN members m ON m.oid = c.oid
    WHERE c.relkind IN ('r', 'm', 'p')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'tsxfer')
      AND n.nspname NOT LIKE 'pg\_toast%'
      AND m.oid IS NULL
)
SELECT relation, parent, schema_name, table_name
FROM candidates t
WHERE parent
   OR relkind <> 'r'
   OR later_statistics
   OR pg_catalog.pg_stat_get_last_analyze_time(t.oid) IS NULL
ORDER BY 2, 1
