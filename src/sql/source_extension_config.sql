-- Configuration tables that extensions other than TimescaleDB mark for dumping, with the
-- condition that picks the rows users added (PostGIS's spatial_ref_sys, for example).
SELECT c.oid,
       n.nspname::text AS schema_name,
       c.relname::text AS table_name,
       COALESCE(u.cond, '') AS condition
FROM pg_catalog.pg_extension e
CROSS JOIN LATERAL unnest(e.extconfig, e.extcondition) AS u(cfg, cond)
JOIN pg_catalog.pg_class c ON c.oid = u.cfg
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE e.extname <> 'timescaledb' AND c.relkind = 'r'
ORDER BY 2, 3
