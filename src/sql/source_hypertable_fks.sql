-- Foreign keys that reference a hypertable (TimescaleDB 2.16 and later) or a table that
-- becomes one on the target ($1: those tables, quoted and qualified), from tables that
-- are not chunks, with the statement that adds each again. The constraints TimescaleDB
-- makes from them on each chunk (conparentid set) are its own, and pg_dump leaves them
-- out. Run with search_path = pg_catalog.
WITH referenced AS (
    SELECT r::regclass AS relid FROM unnest($1::text[]) AS r
)
SELECT k.oid,
       format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', n.nspname, c.relname, k.conname,
              pg_get_constraintdef(k.oid)) AS statement,
       format('%I.%I', n.nspname, c.relname) AS table_name,
       k.conname::text AS constraint_name
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE k.contype = 'f' AND k.conparentid = 0
  AND k.confrelid IN (SELECT relid FROM referenced)
  AND c.oid NOT IN (SELECT relid FROM referenced)
  AND NOT EXISTS (SELECT 1 FROM pg_inherits i
                  WHERE i.inhrelid = c.oid AND i.inhparent IN (SELECT relid FROM referenced))
ORDER BY k.oid
