"""Signals, detection models and similar-incident suggestions.

Revision ID: 0005_detection
Revises: 0004_auth
Create Date: 2026-11-27
"""

from firewatch.runtime.migrations import execute_script

revision = "0005_detection"
down_revision = "0004_auth"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    CREATE TABLE signal_streams (
        id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name          text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$'),
        description   text NOT NULL DEFAULT '' CHECK (char_length(description) <= 2000),
        labels        jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(labels) = 'object'),
        severity      smallint NOT NULL DEFAULT 3 CHECK (severity BETWEEN 1 AND 4),
        service       text,
        team          text,
        created_by    text NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now(),
        updated_at    timestamptz NOT NULL DEFAULT now(),
        last_ts       timestamptz,
        scored_until  timestamptz,
        recent_flags  boolean[] NOT NULL DEFAULT '{}',
        in_anomaly    boolean NOT NULL DEFAULT false
    );

    -- The primary key is the index for per-stream time-range scans.
    CREATE TABLE signal_points (
        stream_id  bigint NOT NULL REFERENCES signal_streams (id) ON DELETE CASCADE,
        ts         timestamptz NOT NULL,
        value      double precision NOT NULL CHECK (value = value AND abs(value) < 'Infinity'),
        labels     jsonb,
        score      real,
        anomaly    boolean,
        alarm      boolean,
        model_id   bigint,
        PRIMARY KEY (stream_id, ts)
    );

    CREATE TABLE detection_models (
        id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        stream_id          bigint NOT NULL REFERENCES signal_streams (id) ON DELETE CASCADE,
        version            integer NOT NULL,
        status             text NOT NULL DEFAULT 'candidate' CHECK (status IN (
                               'candidate', 'active', 'retired', 'quarantined')),
        algorithm          text NOT NULL,
        path               text NOT NULL,
        sha256             text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
        threshold          double precision NOT NULL,
        params             jsonb NOT NULL,
        data_from          timestamptz,
        data_to            timestamptz,
        train_points       integer NOT NULL,
        evaluation         jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_by         text NOT NULL,
        created_at         timestamptz NOT NULL DEFAULT now(),
        activated_at       timestamptz,
        quarantined_at     timestamptz,
        quarantine_reason  text,
        UNIQUE (stream_id, version)
    );
    -- At most one active model per stream, whatever the races.
    CREATE UNIQUE INDEX detection_models_one_active
        ON detection_models (stream_id) WHERE status = 'active';

    CREATE TABLE detection_model_events (
        id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        model_id  bigint NOT NULL REFERENCES detection_models (id) ON DELETE CASCADE,
        at        timestamptz NOT NULL DEFAULT now(),
        actor     text NOT NULL,
        action    text NOT NULL,
        note      text
    );
    CREATE INDEX detection_model_events_model_idx ON detection_model_events (model_id, id);

    -- Similar-incident suggestions made when an incident was opened.
    CREATE TABLE incident_similar (
        incident_id  bigint PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
        computed_at  timestamptz NOT NULL DEFAULT now(),
        suggestions  jsonb NOT NULL
    );
    -- The similar-incident index catches up on incidents changed since it was built.
    CREATE INDEX incidents_updated_idx ON incidents (updated_at, id);
    """)


def downgrade() -> None:
    execute_script("""
    DROP INDEX incidents_updated_idx;
    DROP TABLE incident_similar;
    DROP TABLE detection_model_events;
    DROP TABLE detection_models;
    DROP TABLE signal_points;
    DROP TABLE signal_streams;
    """)
