-- TimescaleDB's hypertables, each with its relation's OID and, for a compressed
-- hypertable, the hypertable whose compressed rows it holds.
SELECT h.id,
       h.schema_name::text AS schema_name,
       h.table_name::text AS table_name,
       c.oid AS relid,
       p.id AS compresses
FROM _timescaledb_catalog.hypertable h
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = h.schema_name
LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = h.table_name
LEFT JOIN _timescaledb_catalog.hypertable p ON p.compressed_hypertable_id = h.id
ORDER BY h.id
