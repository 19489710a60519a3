-- What TimescaleDB makes of each table: hypertable parents, chunks, compressed chunks.
SELECT format('%I.%I', h.schema_name, h.table_name)::regclass::oid AS relid,
       'hypertable'::text AS kind
FROM _timescaledb_catalog.hypertable h
UNION ALL
SELECT format('%I.%I', ch.schema_name, ch.table_name)::regclass::oid,
       CASE WHEN h.compression_state = 2 THEN 'compressed_chunk' ELSE 'chunk' END
FROM _timescaledb_catalog.chunk ch
JOIN _timescaledb_catalog.hypertable h ON h.id = ch.hypertable_id
WHERE NOT ch.dropped
