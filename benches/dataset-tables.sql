-- Benchmark dataset, part 3 of 3: the large plain tables (with and without a primary
-- key) and TOASTed values. psql -v scale=<BENCH_GB>.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;

SELECT greatest(1000, round(650000 * :scale))::int AS orders,
       greatest(1000, round(1000000 * :scale))::int AS audit_rows,
       greatest(50, round(3700 * :scale))::int AS documents \gset

INSERT INTO sales.orders (customer_id, created_at, status, amount, currency, lines, ship_to)
SELECT 1 + (i * 7919) % 50000,
       TIMESTAMPTZ '2023-01-01 00:00:00+00' + i * INTERVAL '17 seconds',
       (ARRAY['new', 'paid', 'shipped', 'delivered', 'returned'])[(1 + i % 5)::int],
       round((random() * 1000)::numeric, 2),
       (ARRAY['EUR', 'USD', 'JPY'])[(1 + i % 3)::int],
       jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (i % 997), 'qty', 1 + i % 4,
                                            'price', round((random() * 200)::numeric, 2)),
                         jsonb_build_object('sku', 'SKU-' || (i % 991), 'qty', 1)),
       CASE WHEN i % 9 <> 0 THEN format('%s Main Street, %s City', i % 1000, md5(i::text)) END
FROM generate_series(1::bigint, :orders) AS i;

INSERT INTO sales.audit_log
SELECT TIMESTAMPTZ '2023-06-01 00:00:00+00' + i * INTERVAL '3 seconds',
       'user-' || (i % 313),
       (ARRAY['login', 'logout', 'update', 'delete', 'export'])[(1 + i % 5)::int],
       format('sales.orders/%s', (i * 31) % 1000000),
       CASE WHEN i % 4 <> 0 THEN md5(i::text) || md5((i + 1)::text) END
FROM generate_series(1::bigint, :audit_rows) AS i;

-- Attachments are random bytes (pglz cannot shrink them, so they go to TOAST
-- uncompressed); bodies are text that compresses well.
CREATE TEMP TABLE random_pool AS
SELECT decode(string_agg(md5(random()::text || g), ''), 'hex') AS pool
FROM generate_series(1, 65536) AS g;

INSERT INTO sales.documents
SELECT i,
       'document ' || i,
       repeat(format('Section %s of document %s: the quick brown fox jumps over the lazy dog. ', i % 17, i),
              (20 + i % 200)::int),
       substring(p.pool FROM (1 + (i * 7919) % 700000)::int FOR (4096 + (i * 104729) % 61440)::int)
FROM generate_series(1::bigint, :documents) AS i, random_pool AS p;
