-- The pre-data DDL of the chunk tables $1 (OIDs), as pg_dump --schema-only writes it for
-- each: CREATE TABLE with its local columns and CHECK constraints (the dimension slices)
-- and INHERITS, then one ALTER TABLE of the column settings, defaults, replica identity
-- and forced row security, and the comments (row security itself is enabled with the
-- post-data, as pg_dump does, so that the rows can be copied in first). Owners and grants are applied with everyone else's. One row per chunk:
-- (oid, schema, name, statements). Run with search_path = pg_catalog (names come out
-- qualified) inside the run's snapshot. Every part is grouped by chunk and joined once,
-- so the query stays linear in the chunks.
WITH ch AS (
    SELECT c.oid, n.nspname, c.relname, c.relpersistence, c.reloptions, c.relam, c.relreplident,
           c.relforcerowsecurity, c.reltoastrelid,
           format('%I.%I', n.nspname, c.relname) AS qname
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = ANY($1::oid[]) AND c.relkind = 'r'
), col AS (
    SELECT a.attrelid, a.attnum, a.attname, a.attislocal, a.attnotnull, a.attstattarget,
           a.attstorage, a.attcompression, a.attgenerated, t.typstorage,
           -- This server's own column version (pg_attver) is no setting: pg_dump leaves
           -- it out, and each server sets its own.
           (SELECT array_agg(o) FROM unnest(a.attoptions) o WHERE o NOT LIKE 'pg\_attver=%') AS attoptions,
           format_type(a.atttypid, a.atttypmod) AS typ,
           CASE WHEN a.attcollation <> t.typcollation THEN
               (SELECT format(' COLLATE %I.%I', cn.nspname, co.collname)
                FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                WHERE co.oid = a.attcollation)
           END AS coll,
           pg_get_expr(d.adbin, d.adrelid) AS def,
           col_description(a.attrelid, a.attnum) AS comment,
           EXISTS (SELECT 1 FROM pg_inherits i
                   JOIN pg_attribute pa ON pa.attrelid = i.inhparent AND pa.attname = a.attname
                   WHERE i.inhrelid = a.attrelid AND pa.attnotnull AND NOT pa.attisdropped) AS parent_notnull
    FROM pg_attribute a
    JOIN pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
), elements AS (
    -- What goes between CREATE TABLE's parentheses: local columns, then local checks.
    SELECT e.rel, string_agg(e.def, ', ' ORDER BY e.o1, e.o2) AS list
    FROM (
        SELECT col.attrelid AS rel, 1 AS o1, lpad(col.attnum::text, 5, '0') AS o2,
               format('%I %s%s%s%s', col.attname, col.typ, coalesce(col.coll, ''),
                      CASE WHEN col.attgenerated = 's' THEN ' GENERATED ALWAYS AS (' || col.def || ') STORED'
                           WHEN col.def IS NOT NULL THEN ' DEFAULT ' || col.def ELSE '' END,
                      CASE WHEN col.attnotnull THEN ' NOT NULL' ELSE '' END) AS def
        FROM col WHERE col.attislocal
        UNION ALL
        SELECT con.conrelid, 2, con.conname::text,
               format('CONSTRAINT %I %s', con.conname, pg_get_constraintdef(con.oid))
        FROM pg_constraint con
        WHERE con.conrelid = ANY($1::oid[]) AND con.contype = 'c' AND con.conislocal AND con.convalidated
    ) e
    GROUP BY e.rel
), parents AS (
    SELECT i.inhrelid AS rel,
           string_agg(format('%I.%I', pn.nspname, p.relname), ', ' ORDER BY i.inhseqno) AS list
    FROM pg_inherits i
    JOIN pg_class p ON p.oid = i.inhparent
    JOIN pg_namespace pn ON pn.oid = p.relnamespace
    WHERE i.inhrelid = ANY($1::oid[])
    GROUP BY i.inhrelid
), settings AS (
    -- The columns' settings as subcommands of one ALTER TABLE (pg_dump writes a statement
    -- for each; one statement is the same table at a fraction of the cost), and their
    -- comments.
    SELECT col.attrelid AS rel,
           array_agg(v.s ORDER BY col.attnum, v.k) FILTER (WHERE v.k < 7) AS subcommands,
           array_agg(v.s ORDER BY col.attnum) FILTER (WHERE v.k = 7) AS comments
    FROM col JOIN ch ON ch.oid = col.attrelid, LATERAL (VALUES
        (1, CASE WHEN NOT col.attislocal AND col.def IS NOT NULL AND col.attgenerated = '' THEN
                 format('ALTER COLUMN %I SET DEFAULT %s', col.attname, col.def) END),
        (2, CASE WHEN NOT col.attislocal AND col.attnotnull AND NOT col.parent_notnull THEN
                 format('ALTER COLUMN %I SET NOT NULL', col.attname) END),
        (3, CASE WHEN col.attstattarget >= 0 THEN
                 format('ALTER COLUMN %I SET STATISTICS %s', col.attname, col.attstattarget) END),
        (4, CASE WHEN col.attstorage <> col.typstorage THEN
                 format('ALTER COLUMN %I SET STORAGE %s', col.attname,
                        CASE col.attstorage WHEN 'p' THEN 'PLAIN' WHEN 'e' THEN 'EXTERNAL'
                                            WHEN 'm' THEN 'MAIN' ELSE 'EXTENDED' END) END),
        (5, CASE WHEN col.attcompression <> '' THEN
                 format('ALTER COLUMN %I SET COMPRESSION %s', col.attname,
                        CASE col.attcompression WHEN 'p' THEN 'pglz' WHEN 'l' THEN 'lz4' END) END),
        (6, CASE WHEN col.attoptions IS NOT NULL THEN
                 format('ALTER COLUMN %I SET (%s)', col.attname,
                        (SELECT string_agg(format('%I = %L', split_part(o, '=', 1), substr(o, strpos(o, '=') + 1)), ', ')
                         FROM unnest(col.attoptions) o)) END),
        (7, CASE WHEN col.comment IS NOT NULL THEN
                 format('COMMENT ON COLUMN %s.%I IS %L', ch.qname, col.attname, col.comment) END)
    ) AS v(k, s)
    WHERE v.s IS NOT NULL
    GROUP BY col.attrelid
)
SELECT ch.oid, ch.nspname::text AS schema_name, ch.relname::text AS table_name,
    coalesce(parents.list, '') AS inherits,
    array_remove(
        ARRAY[format('CREATE %sTABLE %s (%s)%s%s%s',
            CASE WHEN ch.relpersistence = 'u' THEN 'UNLOGGED ' ELSE '' END,
            ch.qname,
            coalesce(elements.list, ''),
            coalesce(' INHERITS (' || parents.list || ')', ''),
            CASE WHEN am.amname <> 'heap' THEN format(' USING %I', am.amname) ELSE '' END,
            CASE WHEN ch.reloptions IS NOT NULL OR toast.reloptions IS NOT NULL THEN
                ' WITH (' || array_to_string(
                    coalesce((SELECT array_agg(format('%I = %L', split_part(o, '=', 1), substr(o, strpos(o, '=') + 1)))
                              FROM unnest(ch.reloptions) o), '{}')
                    || coalesce((SELECT array_agg(format('toast.%I = %L', split_part(o, '=', 1), substr(o, strpos(o, '=') + 1)))
                                 FROM unnest(toast.reloptions) o), '{}'), ', ') || ')'
            ELSE '' END)]
        || ARRAY[
            'ALTER TABLE ONLY ' || ch.qname || ' ' || nullif(array_to_string(
                coalesce(settings.subcommands, '{}')
                || array_remove(ARRAY[
                    CASE ch.relreplident WHEN 'f' THEN 'REPLICA IDENTITY FULL'
                                         WHEN 'n' THEN 'REPLICA IDENTITY NOTHING' END,
                    CASE WHEN ch.relforcerowsecurity THEN 'FORCE ROW LEVEL SECURITY' END], NULL),
                ', '), ''),
            CASE WHEN d.description IS NOT NULL THEN format('COMMENT ON TABLE %s IS %L', ch.qname, d.description) END]
        || coalesce(settings.comments, '{}'),
        NULL) AS statements
FROM ch
LEFT JOIN elements ON elements.rel = ch.oid
LEFT JOIN parents ON parents.rel = ch.oid
LEFT JOIN settings ON settings.rel = ch.oid
LEFT JOIN pg_am am ON am.oid = ch.relam
LEFT JOIN pg_class toast ON toast.oid = ch.reltoastrelid
LEFT JOIN pg_description d ON d.classoid = 'pg_class'::regclass AND d.objoid = ch.oid AND d.objsubid = 0
ORDER BY ch.oid
