-- Benchmark dataset, part 2 of 3: fills the hypertables, compresses the older half of
-- their chunks and adds a continuous aggregate. psql -v scale=<BENCH_GB>.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;

-- 90 days of metrics and 60 of events at scale 1 and above; below, fewer days (in
-- proportion to the square root of the scale, so a smoke run has fewer chunks) and more
-- devices, so the size stays in proportion to the scale.
SELECT least(1.0, sqrt(:scale)) AS span \gset
SELECT greatest(10, round(90 * :span))::int AS metric_days,
       greatest(8, round(60 * :span))::int AS event_days,
       greatest(4, round(90 * :scale / :span))::int AS metric_devices,
       greatest(2, round(20 * :scale / :span))::int AS event_devices \gset

-- One row per device every 144 s (600 a day).
INSERT INTO public.metrics
SELECT t,
       d,
       round((50 + 40 * sin(extract(epoch FROM t) / 3600.0 + d) + random())::numeric, 3)::double precision,
       round((2048 + d * 64 + random() * 512)::numeric, 1)::double precision,
       CASE WHEN (extract(epoch FROM t)::bigint / 144 + d) % 17 = 0 THEN NULL
            ELSE round((20 + d % 10 + 5 * cos(extract(epoch FROM t) / 7200.0))::numeric, 2)
       END,
       (d % 3)::smallint,
       CASE WHEN d % 7 = 0 AND random() < 0.02 THEN (random() * 500)::int END,
       CASE WHEN d % 5 = 0 THEN 'fw-' || (d % 7) || '.' || (extract(doy FROM t)::int / 30) END
FROM generate_series(TIMESTAMPTZ '2024-01-01 00:00:00+00',
                     TIMESTAMPTZ '2024-01-01 00:00:00+00' + :metric_days * INTERVAL '1 day' - INTERVAL '1 second',
                     INTERVAL '144 seconds') AS t
CROSS JOIN generate_series(1, :metric_devices) AS d;

-- One event per device every 90 s.
INSERT INTO public.events
SELECT t,
       d,
       (ARRAY['boot', 'alarm', 'config', 'heartbeat', 'heartbeat', 'heartbeat'])[1 + (d + extract(minute FROM t)::int) % 6],
       jsonb_build_object('seq', extract(epoch FROM t)::bigint * 1000 + d,
                          'ok', d % 5 <> 0,
                          'rssi', -40 - (random() * 50)::int,
                          'battery', round((random() * 100)::numeric, 1),
                          'msg', md5(t::text || d)),
       CASE WHEN d % 3 = 0 AND random() < 0.02 THEN 'operator-' || (d % 9) END
FROM generate_series(TIMESTAMPTZ '2024-01-01 00:00:00+00',
                     TIMESTAMPTZ '2024-01-01 00:00:00+00' + :event_days * INTERVAL '1 day' - INTERVAL '1 second',
                     INTERVAL '90 seconds') AS t
CROSS JOIN generate_series(1, :event_devices) AS d;

-- Hourly averages per device, as a continuous aggregate.
CREATE MATERIALIZED VIEW public.metrics_hourly
WITH (timescaledb.continuous) AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       device_id,
       avg(cpu) AS avg_cpu,
       max(mem) AS max_mem,
       count(*) AS samples
FROM public.metrics
GROUP BY bucket, device_id
WITH NO DATA;
CALL refresh_continuous_aggregate('public.metrics_hourly', NULL, NULL);
GRANT SELECT ON public.metrics_hourly TO bench_reader;

-- Compress the older half of each hypertable's chunks.
ALTER TABLE public.metrics SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id',
    timescaledb.compress_orderby = 'time DESC'
);
ALTER TABLE public.events SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id',
    timescaledb.compress_orderby = 'ts DESC'
);
SELECT count(compress_chunk(format('%I.%I', chunk_schema, chunk_name)::regclass)) AS compressed_metrics_chunks
FROM timescaledb_information.chunks
WHERE hypertable_schema = 'public' AND hypertable_name = 'metrics'
  AND range_end <= TIMESTAMPTZ '2024-01-01 00:00:00+00' + (:metric_days / 2) * INTERVAL '1 day';
SELECT count(compress_chunk(format('%I.%I', chunk_schema, chunk_name)::regclass)) AS compressed_events_chunks
FROM timescaledb_information.chunks
WHERE hypertable_schema = 'public' AND hypertable_name = 'events'
  AND range_end <= TIMESTAMPTZ '2024-01-01 00:00:00+00' + (:event_days / 2) * INTERVAL '1 day';

-- Late rows into the oldest compressed chunk: it becomes partially compressed.
INSERT INTO public.metrics (time, device_id, cpu, mem, temp_c, status)
SELECT TIMESTAMPTZ '2024-01-01 12:00:30+00' + d * INTERVAL '1 second', d, 1.5, 1024, 21.25, 0
FROM generate_series(1, 20) AS d;
