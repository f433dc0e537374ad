"""The baselines' incidents table: the same columns, checks and indexes as firewatch's
(migration 0001), so every stack pays the same per-row cost on INSERT."""

from __future__ import annotations

INCIDENTS_DDL = """
CREATE TABLE incidents (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title            text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 300),
    description      text NOT NULL DEFAULT '' CHECK (char_length(description) <= 20000),
    severity         smallint NOT NULL CHECK (severity BETWEEN 1 AND 4),
    category         text NOT NULL,
    status           text NOT NULL DEFAULT 'open',
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
"""
