-- The columns COPY moves (neither dropped nor generated) in table order, and whether
-- binary COPY is safe for all of them. Binary COPY is not safe for a type without
-- binary I/O, nor where the wire format embeds type OIDs that differ between servers:
-- composite values, and arrays whose element type is user-defined. TimescaleDB's
-- compressed_data reads its text form through its receive function, so binary COPY is
-- as safe as text; its one value that neither form loads back (2.19's "all values NULL"
-- placeholder) is handled apart, so the compressed_data columns are listed apart (see
-- CopyUnit::null_placeholders).
SELECT a.attrelid AS relid,
       array_agg(a.attname::text ORDER BY a.attnum) AS columns,
       bool_and(
           CASE
               WHEN bt.typsend::oid = 0 OR bt.typreceive::oid = 0 THEN false
               WHEN bt.typtype IN ('c', 'd', 'p') THEN false
               WHEN bt.typelem <> 0 AND bt.typlen = -1 AND bt.typelem >= 16384 THEN false
               ELSE true
           END) AS binary_ok,
       COALESCE(array_agg(a.attname::text ORDER BY a.attnum)
                    FILTER (WHERE t.typname = 'compressed_data'), '{}') AS compressed_columns
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
GROUP BY a.attrelid
