-- Benchmark dataset, part 1 of 3: extension, roles, small reference tables and the
-- empty tables the other two parts fill (in parallel). Loaded by benches/run.sh as a
-- superuser into an empty database with psql -v scale=<BENCH_GB>.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;

CREATE EXTENSION IF NOT EXISTS timescaledb;

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_owner') THEN
        CREATE ROLE bench_owner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_reader') THEN
        CREATE ROLE bench_reader LOGIN PASSWORD 'bench-reader';
    END IF;
END
$roles$;

CREATE SCHEMA sales AUTHORIZATION bench_owner;
GRANT USAGE ON SCHEMA sales TO bench_reader;

CREATE TABLE public.sites (
    id      int PRIMARY KEY,
    name    text NOT NULL UNIQUE,
    country char(2) NOT NULL
);
CREATE TABLE public.devices (
    id           int PRIMARY KEY,
    site_id      int NOT NULL REFERENCES sites (id),
    name         text NOT NULL,
    model        text NOT NULL,
    installed_on date NOT NULL
);
INSERT INTO sites
SELECT s, 'site-' || s, (ARRAY['DE', 'FR', 'US', 'JP'])[1 + s % 4]
FROM generate_series(1, 20) AS s;
INSERT INTO devices
SELECT d, 1 + d % 20, format('device-%s', lpad(d::text, 4, '0')),
       (ARRAY['th-100', 'th-200', 'pw-10'])[1 + d % 3], DATE '2022-01-01' + d
FROM generate_series(1, 2000) AS d;

-- Hypertable 1: device metrics, one-day chunks. error_code and firmware are sparse:
-- most compressed batches hold no value at all in them (like real data), which
-- TimescaleDB 2.19 stores as a placeholder it cannot load back (timescaledb#8893).
CREATE TABLE public.metrics (
    time       timestamptz      NOT NULL,
    device_id  int              NOT NULL,
    cpu        double precision NOT NULL,
    mem        double precision NOT NULL,
    temp_c     numeric(5, 2),
    status     smallint         NOT NULL,
    error_code int,
    firmware   text
);
SELECT create_hypertable('public.metrics', by_range('time', INTERVAL '1 day'));
CREATE INDEX metrics_device_time_idx ON public.metrics (device_id, time DESC);

-- Hypertable 2: events, one-day chunks, two space partitions, jsonb payloads.
CREATE TABLE public.events (
    ts        timestamptz NOT NULL,
    device_id int         NOT NULL,
    kind      text        NOT NULL,
    payload   jsonb       NOT NULL,
    ack_by    text
);
SELECT create_hypertable('public.events', by_range('ts', INTERVAL '1 day'));
SELECT add_dimension('public.events', by_hash('device_id', 2));
CREATE INDEX events_kind_ts_idx ON public.events (kind, ts DESC);

-- Large plain tables: with a primary key, without one, and with TOASTed values.
CREATE TABLE sales.orders (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id int            NOT NULL,
    created_at  timestamptz    NOT NULL,
    status      text           NOT NULL,
    amount      numeric(12, 2) NOT NULL,
    currency    char(3)        NOT NULL,
    lines       jsonb          NOT NULL,
    ship_to     text
);
CREATE INDEX orders_customer_idx ON sales.orders (customer_id, created_at);

CREATE TABLE sales.audit_log (
    at     timestamptz NOT NULL,
    actor  text        NOT NULL,
    action text        NOT NULL,
    target text        NOT NULL,
    detail text
);

CREATE TABLE sales.documents (
    id         int PRIMARY KEY,
    title      text  NOT NULL,
    body       text  NOT NULL,
    attachment bytea
);

ALTER TABLE sales.orders OWNER TO bench_owner;
ALTER TABLE sales.audit_log OWNER TO bench_owner;
ALTER TABLE sales.documents OWNER TO bench_owner;
GRANT SELECT ON ALL TABLES IN SCHEMA sales TO bench_reader;
GRANT SELECT ON public.metrics, public.events, public.devices, public.sites TO bench_reader;
