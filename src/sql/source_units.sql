-- Every table that holds rows of its own: plain tables, partitions, hypertable parents,
-- chunks and compressed chunks. Extension members are the extensions' business, and
-- TimescaleDB's catalog is loaded apart (serially, in foreign-key order).
SELECT c.oid,
       n.nspname::text AS schema_name,
       c.relname::text AS table_name,
       c.relispartition AS is_partition
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_timescaledb_catalog', '_timescaledb_config')
  AND n.nspname NOT LIKE 'pg\_toast%'
  AND n.nspname NOT LIKE 'pg\_temp\_%'
  AND NOT EXISTS (
      SELECT 1 FROM pg_catalog.pg_depend d
      WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 2, 3
