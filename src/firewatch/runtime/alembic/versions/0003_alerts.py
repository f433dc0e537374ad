"""Alerts, group keys on incidents, the notification outbox and its destinations.

Revision ID: 0003_alerts
Revises: 0001_incidents
Create Date: 2026-11-27
"""

from firewatch.runtime.migrations import execute_script

revision = "0003_alerts"
down_revision = "0001_incidents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    -- Where an incident came from and the group it stands for (Alertmanager groupKey,
    -- webhook dedup_key, detector signal). At most one ACTIVE incident per group: the
    -- partial unique index is what makes concurrent deliveries of one group safe.
    ALTER TABLE incidents ADD COLUMN source text, ADD COLUMN group_key text;
    CREATE UNIQUE INDEX incidents_open_group_uq ON incidents (source, group_key)
        WHERE group_key IS NOT NULL
          AND status IN ('open', 'acknowledged', 'investigating', 'mitigated');
    CREATE INDEX incidents_group_idx ON incidents (source, group_key, id DESC)
        WHERE group_key IS NOT NULL;

    -- One row per alert fingerprint per incident, upserted on every delivery.
    CREATE TABLE alerts (
        id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        incident_id    bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
        source         text NOT NULL,
        fingerprint    text NOT NULL,
        status         text NOT NULL CHECK (status IN ('firing', 'resolved')),
        labels         jsonb NOT NULL CHECK (jsonb_typeof(labels) = 'object'),
        annotations    jsonb NOT NULL CHECK (jsonb_typeof(annotations) = 'object'),
        starts_at      timestamptz NOT NULL,
        ends_at        timestamptz,
        generator_url  text,
        runbook_url    text,
        fire_count     integer NOT NULL DEFAULT 1,
        first_seen_at  timestamptz NOT NULL DEFAULT now(),
        updated_at     timestamptz NOT NULL DEFAULT now(),
        resolved_at    timestamptz,
        UNIQUE (incident_id, fingerprint)
    );
    CREATE INDEX alerts_firing_idx ON alerts (incident_id) WHERE status = 'firing';
    CREATE INDEX alerts_resolved_idx ON alerts (resolved_at) WHERE status = 'resolved';

    CREATE TABLE notification_destinations (
        id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name         text NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 100),
        kind         text NOT NULL CHECK (kind IN ('webhook', 'slack')),
        url          text NOT NULL,
        secret       text,
        min_severity smallint NOT NULL DEFAULT 4 CHECK (min_severity BETWEEN 1 AND 4),
        services     text[],
        event_kinds  text[],
        enabled      boolean NOT NULL DEFAULT true,
        created_by   text NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now()
    );

    -- The outbox: written in the transaction of the change, delivered at least once.
    CREATE TABLE notifications (
        id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        destination_id   bigint NOT NULL
                             REFERENCES notification_destinations (id) ON DELETE CASCADE,
        incident_id      bigint REFERENCES incidents (id) ON DELETE CASCADE,
        event_kind       text NOT NULL,
        payload          jsonb NOT NULL,
        status           text NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'delivered', 'dead')),
        attempts         integer NOT NULL DEFAULT 0,
        next_attempt_at  timestamptz NOT NULL DEFAULT now(),
        created_at       timestamptz NOT NULL DEFAULT now(),
        delivered_at     timestamptz,
        last_error       text
    );
    CREATE INDEX notifications_due_idx ON notifications (next_attempt_at, id)
        WHERE status = 'pending';
    CREATE INDEX notifications_incident_idx ON notifications (incident_id, id);
    CREATE INDEX notifications_delivered_idx ON notifications (delivered_at)
        WHERE status = 'delivered';

    CREATE TABLE notification_attempts (
        id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        notification_id  bigint NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
        attempt          integer NOT NULL,
        at               timestamptz NOT NULL DEFAULT now(),
        duration_ms      integer NOT NULL,
        status_code      integer,
        error            text,
        outcome          text NOT NULL CHECK (outcome IN ('delivered', 'retry', 'dead'))
    );
    CREATE INDEX notification_attempts_notification_idx
        ON notification_attempts (notification_id, id);
    """)


def downgrade() -> None:
    execute_script("""
    DROP TABLE notification_attempts;
    DROP TABLE notifications;
    DROP TABLE notification_destinations;
    DROP TABLE alerts;
    DROP INDEX incidents_group_idx;
    DROP INDEX incidents_open_group_uq;
    ALTER TABLE incidents DROP COLUMN group_key, DROP COLUMN source;
    """)
