-- Demo source database for scripts/demo.sh: a small but realistic
-- TimescaleDB database. Load it as a superuser into an empty database:
--   psql -X -v ON_ERROR_STOP=1 -d demo -f scripts/demo-data.sql
-- With a full ("timescale"-licensed) TimescaleDB it also has compressed
-- chunks (some of them partially compressed) and a continuous aggregate.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;

CREATE EXTENSION IF NOT EXISTS timescaledb;

-- Plain tables ------------------------------------------------------------------

CREATE TABLE sites (
    id      int PRIMARY KEY,
    name    text NOT NULL UNIQUE,
    country char(2) NOT NULL
);

CREATE TABLE devices (
    id           int PRIMARY KEY,
    site_id      int NOT NULL REFERENCES sites (id),
    name         text NOT NULL,
    model        text NOT NULL,
    installed_on date NOT NULL,
    tags         text[] NOT NULL DEFAULT '{}'
);

INSERT INTO sites (id, name, country)
SELECT s, 'site-' || s, (ARRAY['DE', 'FR', 'US', 'JP'])[1 + s % 4]
FROM generate_series(1, 4) AS s;

INSERT INTO devices (id, site_id, name, model, installed_on, tags)
SELECT d,
       1 + d % 4,
       format('device-%s', lpad(d::text, 2, '0')),
       (ARRAY['th-100', 'th-200', 'pw-10'])[1 + d % 3],
       DATE '2023-06-01' + d * 7,
       ARRAY['demo', CASE WHEN d % 2 = 0 THEN 'even' ELSE 'odd' END]
FROM generate_series(1, 20) AS d;

-- Hypertable 1: one week of 1-minute metrics for 20 devices, 1-day chunks ----------

CREATE TABLE metrics (
    time      timestamptz      NOT NULL,
    device_id int              NOT NULL REFERENCES devices (id),
    cpu       double precision NOT NULL,
    mem       double precision NOT NULL,
    temp_c    numeric(5, 2)
);
SELECT create_hypertable('metrics', by_range('time', INTERVAL '1 day'));
CREATE INDEX metrics_device_time_idx ON metrics (device_id, time DESC);

INSERT INTO metrics (time, device_id, cpu, mem, temp_c)
SELECT t,
       d,
       round((50 + 40 * sin(extract(epoch FROM t) / 3600.0 + d))::numeric, 3)::double precision,
       round((2048 + d * 64 + (extract(minute FROM t) * 3))::numeric, 1)::double precision,
       CASE WHEN extract(minute FROM t)::int % 17 = 0 THEN NULL
            ELSE round((20 + d * 0.5 + 5 * cos(extract(epoch FROM t) / 7200.0))::numeric, 2)
       END
FROM generate_series(TIMESTAMPTZ '2024-01-01 00:00:00+00',
                     TIMESTAMPTZ '2024-01-07 23:59:00+00',
                     INTERVAL '1 minute') AS t
CROSS JOIN generate_series(1, 20) AS d;

-- Hypertable 2: events, 6-hour chunks, space-partitioned on device_id ---------------

CREATE TABLE events (
    ts        timestamptz NOT NULL,
    device_id int         NOT NULL,
    kind      text        NOT NULL,
    payload   jsonb
);
SELECT create_hypertable('events', by_range('ts', INTERVAL '6 hours'));
SELECT add_dimension('events', by_hash('device_id', 2));
CREATE INDEX events_kind_ts_idx ON events (kind, ts DESC);

INSERT INTO events (ts, device_id, kind, payload)
SELECT t,
       d,
       (ARRAY['boot', 'alarm', 'config', 'heartbeat'])[1 + (d + extract(hour FROM t)::int) % 4],
       jsonb_build_object('seq', row_number() OVER (), 'ok', d % 5 <> 0)
FROM generate_series(TIMESTAMPTZ '2024-01-01 00:00:00+00',
                     TIMESTAMPTZ '2024-01-07 23:55:00+00',
                     INTERVAL '5 minutes') AS t
CROSS JOIN generate_series(1, 20) AS d;

-- Hypertable 3: integer time (ticks), 10 000 ticks per chunk -------------------------

CREATE TABLE readings (
    tick      bigint NOT NULL,
    sensor_id int    NOT NULL,
    value     real   NOT NULL,
    PRIMARY KEY (sensor_id, tick)
);
SELECT create_hypertable('readings', by_range('tick', 10000));

INSERT INTO readings (tick, sensor_id, value)
SELECT tick, s, ((tick * 7 + s * 13) % 1000) / 10.0
FROM generate_series(0, 99999, 10) AS tick
CROSS JOIN generate_series(1, 5) AS s;

-- A view --------------------------------------------------------------------------

CREATE VIEW device_daily AS
SELECT time_bucket(INTERVAL '1 day', m.time) AS day,
       d.name AS device,
       s.name AS site,
       avg(m.cpu) AS avg_cpu,
       max(m.temp_c) AS max_temp_c,
       count(*) AS samples
FROM metrics m
JOIN devices d ON d.id = m.device_id
JOIN sites s ON s.id = d.site_id
GROUP BY 1, 2, 3;

-- Full TimescaleDB only: a continuous aggregate and compressed chunks ------------------
-- (An Apache-only build has neither; there this block only says so.)

DO $demo$
DECLARE
    n_chunks int;
    n_compressed int := 0;
    c regclass;
BEGIN
    IF current_setting('timescaledb.license') <> 'timescale' THEN
        RAISE WARNING 'timescaledb.license is %: no compression and no continuous aggregate in the demo data',
            current_setting('timescaledb.license');
        RETURN;
    END IF;

    -- Hourly averages per device, as a continuous aggregate.
    CREATE MATERIALIZED VIEW metrics_hourly
    WITH (timescaledb.continuous) AS
    SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
           device_id,
           avg(cpu) AS avg_cpu,
           max(mem) AS max_mem,
           count(*) AS samples
    FROM metrics
    GROUP BY bucket, device_id
    WITH NO DATA;
    -- A top-level DO block may call this procedure, which commits on its own.
    CALL refresh_continuous_aggregate('metrics_hourly', NULL, NULL);

    -- Compression on metrics: compress the older half of its chunks.
    ALTER TABLE metrics SET (
        timescaledb.compress,
        timescaledb.compress_segmentby = 'device_id',
        timescaledb.compress_orderby = 'time DESC'
    );
    SELECT count(*) INTO n_chunks FROM show_chunks('metrics');
    FOR c IN
        SELECT format('%I.%I', chunk_schema, chunk_name)::regclass
        FROM timescaledb_information.chunks
        WHERE hypertable_schema = 'public' AND hypertable_name = 'metrics'
        ORDER BY range_start
        LIMIT n_chunks / 2
    LOOP
        PERFORM compress_chunk(c);
        n_compressed := n_compressed + 1;
    END LOOP;

    -- Late rows into the oldest (compressed) chunk: it becomes partially compressed.
    INSERT INTO metrics (time, device_id, cpu, mem, temp_c)
    SELECT TIMESTAMPTZ '2024-01-01 12:00:30+00' + d * INTERVAL '1 second', d, 1.5, 1024, 21.25
    FROM generate_series(1, 20) AS d;

    RAISE NOTICE 'compressed % of % metrics chunks', n_compressed, n_chunks;
END
$demo$;

ANALYZE;
