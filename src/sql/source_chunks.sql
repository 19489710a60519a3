-- Chunk tables (not dropped ones, which have no table) with their hypertable.
SELECT ch.id,
       ch.hypertable_id,
       ch.schema_name::text AS schema_name,
       ch.table_name::text AS table_name,
       c.oid AS relid
FROM _timescaledb_catalog.chunk ch
JOIN pg_catalog.pg_namespace n ON n.nspname = ch.schema_name
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = ch.table_name
WHERE NOT ch.dropped
ORDER BY ch.id
