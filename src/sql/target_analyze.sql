-- Tables to ANALYZE after the load: leaves first (each locks only itself), then parents
-- of inheritance trees and partitioned tables (each locks all its children at once).
-- A table the copy pool analyzed right after loading it is left out, unless it has an
-- index on expressions or extended statistics: those come with post-data, and ANALYZE
-- gathers their statistics only once they exist.
WITH candidates AS (
    SELECT c.oid,
           c.relkind,
           format('%I.%I', n.nspname, c.relname) AS relation,
           (c.relkind = 'p' OR EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid)) AS parent
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'm', 'p')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'tsxfer')
      AND n.nspname NOT LIKE 'pg\_toast%'
      AND NOT EXISTS (
          SELECT 1 FROM pg_catalog.pg_depend d
          WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
)
SELECT relation, parent
FROM candidates t
WHERE parent
   OR relkind <> 'r'
   OR pg_catalog.pg_stat_get_last_analyze_time(t.oid) IS NULL
   OR EXISTS (SELECT 1 FROM pg_catalog.pg_index x WHERE x.indrelid = t.oid AND x.indexprs IS NOT NULL)
   OR EXISTS (SELECT 1 FROM pg_catalog.pg_statistic_ext s WHERE s.stxrelid = t.oid)
ORDER BY 2, 1
