-- The triggers through which a hypertable or one of its chunks records changes for the
-- continuous aggregates built on the hypertable, with that hypertable's id.
SELECT t.oid, x.hypertable_id
FROM (SELECT h.id AS hypertable_id, h.schema_name, h.table_name
      FROM _timescaledb_catalog.hypertable h
      UNION ALL
      SELECT ch.hypertable_id, ch.schema_name, ch.table_name
      FROM _timescaledb_catalog.chunk ch
      WHERE NOT ch.dropped) AS x
JOIN pg_catalog.pg_namespace n ON n.nspname = x.schema_name
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = x.table_name
JOIN pg_catalog.pg_trigger t ON t.tgrelid = c.oid
JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
WHERE p.proname = 'continuous_agg_invalidation_trigger'
