"""Incidents and their timeline.

Revision ID: 0001_incidents
Revises:
Create Date: 2026-11-27
"""

from firewatch.runtime.migrations import execute_script

revision = "0001_incidents"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    CREATE TABLE incidents (
        id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        title            text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 300),
        description      text NOT NULL DEFAULT '' CHECK (char_length(description) <= 20000),
        severity         smallint NOT NULL CHECK (severity BETWEEN 1 AND 4),
        category         text NOT NULL CHECK (category IN (
                             'model_degradation', 'data_quality', 'data_drift',
                             'pipeline_failure', 'latency', 'availability',
                             'cost_spike', 'security', 'other')),
        status           text NOT NULL DEFAULT 'open' CHECK (status IN (
                             'open', 'acknowledged', 'investigating', 'mitigated',
                             'resolved', 'closed')),
        service          text,
        team             text,
        owner            text,
        labels           jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(labels) = 'object'),
        version          integer NOT NULL DEFAULT 1,
        reopen_count     integer NOT NULL DEFAULT 0,
        created_by       text NOT NULL,
        opened_at        timestamptz NOT NULL DEFAULT now(),
        acknowledged_at  timestamptz,
        mitigated_at     timestamptz,
        resolved_at      timestamptz,
        closed_at        timestamptz,
        updated_at       timestamptz NOT NULL DEFAULT now(),
        search           tsvector GENERATED ALWAYS AS (
                             setweight(to_tsvector('english', title), 'A')
                             || setweight(to_tsvector('english', description), 'B')
                             || setweight(to_tsvector('simple',
                                  coalesce(service, '') || ' ' || coalesce(team, '')), 'C')
                         ) STORED
    );
    CREATE INDEX incidents_search_idx ON incidents USING gin (search);
    CREATE INDEX incidents_status_idx ON incidents (status, id DESC);
    CREATE INDEX incidents_service_idx ON incidents (service, id DESC);
    CREATE INDEX incidents_team_idx ON incidents (team, id DESC);
    CREATE INDEX incidents_opened_idx ON incidents (opened_at);

    CREATE TABLE incident_timeline (
        id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        incident_id  bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
        at           timestamptz NOT NULL DEFAULT now(),
        actor        text NOT NULL,
        kind         text NOT NULL,
        before       jsonb,
        after        jsonb,
        note         text
    );
    CREATE INDEX incident_timeline_incident_idx ON incident_timeline (incident_id, id);
    """)


def downgrade() -> None:
    execute_script("DROP TABLE incident_timeline; DROP TABLE incidents;")
