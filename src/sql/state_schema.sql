-- Run state, kept in the target database so that a run survives its process: what the run
-- is, how far its phases got, and one row per work unit. A unit's row is claimed (locked
-- FOR UPDATE SKIP LOCKED) in the same target transaction that copies its data and marks
-- it done, so a unit is copied exactly once whatever dies when.
CREATE SCHEMA IF NOT EXISTS tsxfer;

CREATE TABLE IF NOT EXISTS tsxfer.run (
    id           int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    source       text NOT NULL,
    source_id    text NOT NULL,
    snapshot     text NOT NULL,
    options      jsonb NOT NULL,
    phase        text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS tsxfer.unit (
    id               int PRIMARY KEY,
    kind             text NOT NULL,
    -- What people read; never read back as SQL.
    relation         text NOT NULL,
    -- The unit's identity and typed values only: tsxfer rebuilds its names, columns and
    -- conditions from the source's catalog, so nothing here becomes SQL text.
    source_oid       bigint NOT NULL,
    part             int,
    parts            int,
    page_from        bigint,
    page_to          bigint,
    into_hypertable  boolean NOT NULL DEFAULT false,
    estimated_bytes  bigint NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    attempts         int NOT NULL DEFAULT 0,
    rows             bigint,
    bytes            bigint,
    seconds          double precision,
    -- The unit's row checksum (tsxfer::checksum), its high and low 64 bits.
    checksum_high    bigint,
    checksum_low     bigint,
    last_error       text,
    done_by          text,
    finished_at      timestamptz
);

CREATE INDEX IF NOT EXISTS unit_pending ON tsxfer.unit (estimated_bytes DESC, id) WHERE status = 'pending';
