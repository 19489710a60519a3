-- Continuous aggregates: the hypertable each is built on, the hypertable it materializes
-- into, and its three views (the user's, and TimescaleDB's partial and direct ones).
SELECT a.mat_hypertable_id,
       a.raw_hypertable_id,
       v.kind,
       v.schema_name::text AS schema_name,
       v.view_name::text AS view_name,
       c.oid AS relid
FROM _timescaledb_catalog.continuous_agg a
CROSS JOIN LATERAL (VALUES ('user', a.user_view_schema, a.user_view_name),
                           ('partial', a.partial_view_schema, a.partial_view_name),
                           ('direct', a.direct_view_schema, a.direct_view_name))
    AS v (kind, schema_name, view_name)
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = v.schema_name
LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = v.view_name
ORDER BY a.mat_hypertable_id
