-- The bytes a table's COPY is expected to carry, for the tables $1. The heap and its TOAST
-- table by their main forks (the free space and visibility maps hold no rows). A table of
-- one page or less holds what its rows are wide (by their statistics, when analyzed)
-- rather than the page: thousands of chunks of a few rows are not thousands of 8 KiB. A
-- column without statistics (a compressed chunk's compressed columns have their
-- statistics target at 0) counts at its fixed length, or at 32 bytes, the width the
-- planner assumes for a variable-length value it knows nothing of.
-- pg_relation_size locks the table and its TOAST table until the end of the transaction.
-- Each table is looked up by its OID (OFFSET 0 keeps the lookup apart): joined as a whole,
-- pg_class would be read once for each batch of tables, so once per few hundred chunks.
SELECT o,
       CASE
           WHEN heap <= current_setting('block_size')::int8 AND c.reltuples > 0
                AND w.width IS NOT NULL
           THEN LEAST(heap, (c.reltuples * (w.width + 24))::int8) + toast
           ELSE heap + toast
       END AS bytes
FROM unnest($1::oid[]) AS o
CROSS JOIN LATERAL (
    SELECT c.relname, c.relnamespace, c.reltuples, c.reltoastrelid
    FROM pg_catalog.pg_class c WHERE c.oid = o OFFSET 0
) AS c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL (
    SELECT COALESCE(pg_catalog.pg_relation_size(o, 'main'), 0) AS heap,
           CASE WHEN c.reltoastrelid = 0 THEN 0
                ELSE COALESCE(pg_catalog.pg_relation_size(c.reltoastrelid, 'main'), 0)
           END AS toast
) AS s
LEFT JOIN LATERAL (
    SELECT sum(COALESCE(st.avg_width, CASE WHEN a.attlen > 0 THEN a.attlen ELSE 32 END))::int8
               AS width
    FROM pg_catalog.pg_attribute a
    LEFT JOIN pg_catalog.pg_stats st
           ON st.schemaname = n.nspname AND st.tablename = c.relname
          AND st.attname = a.attname AND NOT st.inherited
    WHERE a.attrelid = o AND a.attnum > 0 AND NOT a.attisdropped
    HAVING count(st.avg_width) > 0
) AS w ON true
