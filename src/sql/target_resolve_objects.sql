-- The target's own name for each (kind, object) of a dump's owners and grants: the object
-- text, a parameter, is only compared with the names the target's catalog renders (as the
-- source's were: relations and types as format('%I.%I'), schemas with quote_ident,
-- routines as regprocedure), never parsed; NULL where the target has no such object. Run
-- with search_path = pg_catalog, so routines come out schema-qualified.
WITH wanted AS (
    SELECT * FROM unnest($1::text[], $2::text[]) AS x(kind, object)
), names AS (
    SELECT 'SCHEMA' AS family, pg_catalog.quote_ident(n.nspname) AS name
    FROM pg_catalog.pg_namespace n
    UNION ALL
    SELECT 'RELATION', pg_catalog.format('%I.%I', n.nspname, c.relname)
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    UNION ALL
    SELECT 'TYPE', pg_catalog.format('%I.%I', n.nspname, t.typname)
    FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
    UNION ALL
    SELECT 'ROUTINE', p.oid::pg_catalog.regprocedure::text FROM pg_catalog.pg_proc p
    UNION ALL
    SELECT 'LARGE OBJECT', m.oid::text FROM pg_catalog.pg_largeobject_metadata m
)
SELECT w.kind, w.object, n.name
FROM wanted w
LEFT JOIN names n
  ON n.name = w.object
 AND n.family = CASE
         WHEN w.kind IN ('FUNCTION', 'PROCEDURE', 'AGGREGATE') THEN 'ROUTINE'
         WHEN w.kind IN ('TYPE', 'DOMAIN') THEN 'TYPE'
         WHEN w.kind IN ('SCHEMA', 'LARGE OBJECT') THEN w.kind
         ELSE 'RELATION'
     END
