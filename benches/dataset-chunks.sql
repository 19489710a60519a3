-- Benchmark dataset "chunks": many small relations, as a few years of hourly chunks make.
-- One hypertable of :chunks one-hour chunks holding six rows each (one reading every ten
-- minutes), the older half compressed (each then two relations), an index and a plain
-- table of sensors. psql -v chunks=<BENCH_CHUNKS>.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;

CREATE TABLE public.sensors (id int PRIMARY KEY, name text NOT NULL, installed date);
INSERT INTO public.sensors SELECT i, 'sensor ' || i, DATE '2023-06-01' + i FROM generate_series(0, 4) i;

CREATE TABLE public.readings (
    time      timestamptz NOT NULL,
    sensor_id int NOT NULL,
    value     double precision,
    status    text
);
SELECT create_hypertable('public.readings', 'time', chunk_time_interval => INTERVAL '1 hour');
CREATE INDEX readings_sensor_time ON public.readings (sensor_id, time DESC);

INSERT INTO public.readings
SELECT t,
       (extract(epoch FROM t)::bigint / 600) % 5,
       round((20 + 10 * sin(extract(epoch FROM t) / 7200.0))::numeric, 2),
       CASE WHEN extract(minute FROM t) = 0 THEN 'hourly' ELSE 'ok' END
FROM generate_series(TIMESTAMPTZ '2024-01-01 00:00:00+00',
                     TIMESTAMPTZ '2024-01-01 00:00:00+00' + :chunks * INTERVAL '1 hour' - INTERVAL '10 minutes',
                     INTERVAL '10 minutes') AS t;

ALTER TABLE public.readings SET (timescaledb.compress,
                                 timescaledb.compress_segmentby = 'sensor_id',
                                 timescaledb.compress_orderby = 'time DESC');
-- One transaction per chunk (\gexec), so compressing thousands takes few locks at once.
SELECT format('SELECT public.compress_chunk(%L)', c)
FROM public.show_chunks('public.readings',
                        older_than => TIMESTAMPTZ '2024-01-01 00:00:00+00' + (:chunks / 2) * INTERVAL '1 hour') AS c
\gexec
