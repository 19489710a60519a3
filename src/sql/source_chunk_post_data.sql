-- The post-data DDL of the chunk tables $1 (OIDs), as pg_dump --schema-only writes it:
-- indexes (those of constraints come with the constraint), PRIMARY KEY, UNIQUE, EXCLUDE,
-- FOREIGN KEY and unvalidated CHECK constraints, triggers, with their comments, clustered
-- index and replica identity index marks; policies, rules, extended statistics, publication
-- memberships (without row filters or column lists); row security enabled. One row per object: (chunk oid, object
-- oid, how target_post_data_present.sql names the object, statements). Run with search_path =
-- pg_catalog inside the run's snapshot.
WITH ch AS (
    SELECT c.oid, n.nspname, c.relname, c.relrowsecurity, format('%I.%I', n.nspname, c.relname) AS qname
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = ANY($1::oid[]) AND c.relkind = 'r'
), idx AS (
    SELECT ch.oid AS chunk, ch.qname, ch.nspname, ch.relname, i.indexrelid, i.indisclustered,
           i.indisreplident, ic.relname AS index_name, format('%I.%I', ch.nspname, ic.relname) AS index_qname,
           con.oid AS conoid, con.conname
    FROM ch
    JOIN pg_index i ON i.indrelid = ch.oid
    JOIN pg_class ic ON ic.oid = i.indexrelid
    LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = ch.oid
                               AND con.contype IN ('p', 'u', 'x')
    WHERE i.indisvalid AND i.indisready
), marks AS (
    SELECT idx.indexrelid,
           array_remove(ARRAY[
               CASE WHEN idx.indisclustered THEN format('ALTER TABLE %s CLUSTER ON %I', idx.qname, idx.index_name) END,
               CASE WHEN idx.indisreplident THEN format('ALTER TABLE ONLY %s REPLICA IDENTITY USING INDEX %I', idx.qname, idx.index_name) END,
               (SELECT format('COMMENT ON INDEX %s IS %L', idx.index_qname, d.description)
                FROM pg_description d
                WHERE d.classoid = 'pg_class'::regclass AND d.objoid = idx.indexrelid AND d.objsubid = 0 AND idx.conoid IS NULL)],
               NULL)
           || coalesce((SELECT array_agg(format('ALTER INDEX %s ALTER COLUMN %s SET STATISTICS %s',
                                                idx.index_qname, a.attnum, a.attstattarget) ORDER BY a.attnum)
                        FROM pg_attribute a
                        WHERE a.attrelid = idx.indexrelid AND a.attstattarget >= 0), '{}') AS statements
    FROM idx
)
SELECT idx.chunk, idx.indexrelid AS oid, 'INDEX ' || idx.nspname || ' ' || idx.index_name AS present_as,
       ARRAY[pg_get_indexdef(idx.indexrelid)] || marks.statements AS statements
FROM idx JOIN marks ON marks.indexrelid = idx.indexrelid
WHERE idx.conoid IS NULL
UNION ALL
SELECT ch.oid AS chunk, con.oid,
       CASE con.contype WHEN 'f' THEN 'FK CONSTRAINT ' WHEN 'c' THEN 'CHECK CONSTRAINT ' ELSE 'CONSTRAINT ' END
           || ch.nspname || ' ' || ch.relname || ' ' || con.conname,
       ARRAY[format('ALTER TABLE ONLY %s ADD CONSTRAINT %I %s', ch.qname, con.conname, pg_get_constraintdef(con.oid))]
       || coalesce(marks.statements, '{}')
       || coalesce((SELECT ARRAY[format('COMMENT ON CONSTRAINT %I ON %s IS %L', con.conname, ch.qname, d.description)]
                    FROM pg_description d
                    WHERE d.classoid = 'pg_constraint'::regclass AND d.objoid = con.oid AND d.objsubid = 0), '{}')
FROM ch
JOIN pg_constraint con ON con.conrelid = ch.oid
LEFT JOIN marks ON marks.indexrelid = con.conindid AND con.contype IN ('p', 'u', 'x')
WHERE (con.contype IN ('p', 'u', 'x', 'f') OR (con.contype = 'c' AND con.conislocal AND NOT con.convalidated))
  AND con.conparentid = 0
UNION ALL
SELECT ch.oid AS chunk, t.oid, 'TRIGGER ' || ch.nspname || ' ' || ch.relname || ' ' || t.tgname,
       ARRAY[pg_get_triggerdef(t.oid, false)]
       || CASE t.tgenabled WHEN 'D' THEN ARRAY[format('ALTER TABLE %s DISABLE TRIGGER %I', ch.qname, t.tgname)]
                           WHEN 'A' THEN ARRAY[format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', ch.qname, t.tgname)]
                           WHEN 'R' THEN ARRAY[format('ALTER TABLE %s ENABLE REPLICA TRIGGER %I', ch.qname, t.tgname)]
                           ELSE '{}'::text[] END
       || coalesce((SELECT ARRAY[format('COMMENT ON TRIGGER %I ON %s IS %L', t.tgname, ch.qname, d.description)]
                    FROM pg_description d
                    WHERE d.classoid = 'pg_trigger'::regclass AND d.objoid = t.oid AND d.objsubid = 0), '{}')
FROM ch
JOIN pg_trigger t ON t.tgrelid = ch.oid
WHERE NOT t.tgisinternal AND t.tgparentid = 0
UNION ALL
SELECT ch.oid, p.oid, 'POLICY ' || ch.nspname || ' ' || ch.relname || ' ' || p.polname,
       ARRAY[format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s', p.polname, ch.qname,
                    CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                    CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                  WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                    CASE WHEN p.polroles = '{0}' THEN 'PUBLIC' ELSE
                        (SELECT string_agg(quote_ident(r.rolname), ', ' ORDER BY r.rolname)
                         FROM pg_roles r WHERE r.oid = ANY (p.polroles)) END,
                    ' USING (' || pg_get_expr(p.polqual, p.polrelid) || ')',
                    ' WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')')]
FROM ch
JOIN pg_policy p ON p.polrelid = ch.oid
UNION ALL
SELECT ch.oid, r.oid, 'RULE ' || ch.nspname || ' ' || ch.relname || ' ' || r.rulename,
       ARRAY[rtrim(pg_get_ruledef(r.oid), ';')]
       || CASE r.ev_enabled WHEN 'D' THEN ARRAY[format('ALTER TABLE %s DISABLE RULE %I', ch.qname, r.rulename)]
                            WHEN 'A' THEN ARRAY[format('ALTER TABLE %s ENABLE ALWAYS RULE %I', ch.qname, r.rulename)]
                            WHEN 'R' THEN ARRAY[format('ALTER TABLE %s ENABLE REPLICA RULE %I', ch.qname, r.rulename)]
                            ELSE '{}'::text[] END
FROM ch
JOIN pg_rewrite r ON r.ev_class = ch.oid
WHERE r.rulename <> '_RETURN'
UNION ALL
SELECT ch.oid, s.oid, 'STATISTICS ' || sn.nspname || ' ' || s.stxname,
       ARRAY[pg_get_statisticsobjdef(s.oid)]
       || CASE WHEN s.stxstattarget >= 0 THEN
              ARRAY[format('ALTER STATISTICS %I.%I SET STATISTICS %s', sn.nspname, s.stxname, s.stxstattarget)]
          ELSE '{}'::text[] END
FROM ch
JOIN pg_statistic_ext s ON s.stxrelid = ch.oid
JOIN pg_namespace sn ON sn.oid = s.stxnamespace
UNION ALL
SELECT ch.oid, pr.oid, 'PUBLICATION TABLE ' || ch.nspname || ' ' || p.pubname || ' ' || ch.relname,
       ARRAY[format('ALTER PUBLICATION %I ADD TABLE ONLY %s', p.pubname, ch.qname)]
FROM ch
JOIN pg_publication_rel pr ON pr.prrelid = ch.oid
JOIN pg_publication p ON p.oid = pr.prpubid
UNION ALL
-- Named as no object on the target is: enabling it again is harmless.
SELECT ch.oid, ch.oid, 'ROW SECURITY ' || ch.nspname || ' ' || ch.relname,
       ARRAY[format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', ch.qname)]
FROM ch
WHERE ch.relrowsecurity
ORDER BY 1, 3
