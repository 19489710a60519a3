-- Post-data objects already on the target, each as pg_restore --list names it: its entry's
-- description, schema ('-' for none) and tag (for objects of a table, "table name").
-- A resumed post-data pass leaves these entries out: an earlier attempt made them.
SELECT 'INDEX', n.nspname::text, c.relname::text
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
UNION ALL
SELECT CASE con.contype WHEN 'f' THEN 'FK CONSTRAINT' WHEN 'c' THEN 'CHECK CONSTRAINT'
       ELSE 'CONSTRAINT' END,
       n.nspname::text, t.relname || ' ' || con.conname
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class t ON t.oid = con.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
UNION ALL
SELECT 'CHECK CONSTRAINT', n.nspname::text, ty.typname || ' ' || con.conname
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_type ty ON ty.oid = con.contypid
JOIN pg_catalog.pg_namespace n ON n.oid = ty.typnamespace
UNION ALL
SELECT 'TRIGGER', n.nspname::text, c.relname || ' ' || tg.tgname
FROM pg_catalog.pg_trigger tg
JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE NOT tg.tgisinternal
UNION ALL
SELECT 'POLICY', n.nspname::text, c.relname || ' ' || p.polname
FROM pg_catalog.pg_policy p
JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
UNION ALL
SELECT 'RULE', n.nspname::text, c.relname || ' ' || r.rulename
FROM pg_catalog.pg_rewrite r
JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE r.rulename <> '_RETURN'
UNION ALL
SELECT 'INDEX ATTACH', n.nspname::text, c.relname::text
FROM pg_catalog.pg_inherits inh
JOIN pg_catalog.pg_class c ON c.oid = inh.inhrelid AND c.relkind IN ('i', 'I')
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
UNION ALL
SELECT 'STATISTICS', n.nspname::text, s.stxname::text
FROM pg_catalog.pg_statistic_ext s
JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace
UNION ALL
SELECT 'PUBLICATION', '-', p.pubname::text
FROM pg_catalog.pg_publication p
UNION ALL
SELECT 'PUBLICATION TABLE', n.nspname::text, p.pubname || ' ' || c.relname
FROM pg_catalog.pg_publication_rel pr
JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid
JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
