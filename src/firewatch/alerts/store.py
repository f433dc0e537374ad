"""Every SQL statement about alerts and group-keyed incidents.

Ingestion is set-based: all alerts of a payload are upserted by one statement
(``unnest`` of parallel arrays, ``INSERT ... ON CONFLICT``), never a loop of queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from firewatch.incidents.store import COLUMNS
from firewatch.runtime.database import Conn

ACTIVE = "('open', 'acknowledged', 'investigating', 'mitigated')"


async def lock_group(conn: Conn, source: str, group_key: str) -> None:
    """Serialise deliveries of one group for the rest of the transaction.

    The partial unique index is the guarantee (one active incident per group); the
    lock makes concurrent deliveries of the same group wait instead of failing.
    A hash collision between groups only makes them wait for each other.
    """
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 4711))",
        source,
        group_key,
    )


async def active_incident(conn: Conn, source: str, group_key: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""
        SELECT {COLUMNS} FROM incidents
         WHERE source = $1 AND group_key = $2 AND status IN {ACTIVE}
           AND group_key IS NOT NULL
         FOR UPDATE
        """,
        source,
        group_key,
    )


async def group_incident(conn: Conn, source: str, group_key: str) -> asyncpg.Record | None:
    """The group's active incident if it has one, else its newest; locked. One query."""
    return await conn.fetchrow(
        f"""
        SELECT {COLUMNS} FROM incidents
         WHERE source = $1 AND group_key = $2 AND group_key IS NOT NULL
         ORDER BY (status IN {ACTIVE}) DESC, id DESC
         LIMIT 1
         FOR UPDATE
        """,
        source,
        group_key,
    )


@dataclass(frozen=True, slots=True)
class AlertRows:
    """Parallel columns of the alerts of one payload (deduplicated by fingerprint)."""

    fingerprints: list[str]
    statuses: list[str]
    labels: list[str]  # JSON text, cast to jsonb in SQL
    annotations: list[str]
    starts_at: list[datetime]
    ends_at: list[datetime | None]
    generator_urls: list[str | None]
    runbook_urls: list[str | None]

    @classmethod
    def build(cls, alerts: Sequence[tuple[Any, ...]]) -> AlertRows:
        """From (fingerprint, status, labels, annotations, starts, ends, gen_url, runbook)."""
        cols: list[list[Any]] = [[] for _ in range(8)]
        for fp, status, labels, notes, starts, ends, gen_url, runbook in alerts:
            cols[0].append(fp)
            cols[1].append(status)
            cols[2].append(orjson.dumps(labels).decode())
            cols[3].append(orjson.dumps(notes).decode())
            cols[4].append(starts)
            cols[5].append(ends)
            cols[6].append(gen_url or None)
            cols[7].append(runbook or None)
        return cls(*cols)


# ``prev`` reads the rows as they were before this statement (one snapshot for the
# whole WITH), so each returned row carries its status before and after. Rows whose
# content did not change are not rewritten: a repeated delivery writes nothing.
_UPSERT = """
WITH input AS (
    SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[],
                         $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[])
        AS i(fingerprint, status, labels, annotations, starts_at, ends_at,
             generator_url, runbook_url)
), prev AS (
    SELECT a.fingerprint, a.status FROM alerts a
     WHERE a.incident_id = $1 AND a.fingerprint = ANY ($3::text[])
), up AS (
    INSERT INTO alerts AS a (incident_id, source, fingerprint, status, labels, annotations,
                             starts_at, ends_at, generator_url, runbook_url,
                             first_seen_at, updated_at, resolved_at)
    SELECT $1, $2, i.fingerprint, i.status, i.labels::jsonb, i.annotations::jsonb,
           i.starts_at, i.ends_at, i.generator_url, i.runbook_url, $11, $11,
           CASE WHEN i.status = 'resolved' THEN $11::timestamptz END
      FROM input i
    ON CONFLICT (incident_id, fingerprint) DO UPDATE
       SET status = EXCLUDED.status,
           labels = CASE WHEN EXCLUDED.labels = '{}' THEN a.labels ELSE EXCLUDED.labels END,
           annotations = CASE WHEN EXCLUDED.annotations = '{}' THEN a.annotations
                              ELSE EXCLUDED.annotations END,
           starts_at = CASE WHEN a.status = EXCLUDED.status
                            THEN least(a.starts_at, EXCLUDED.starts_at)
                            ELSE EXCLUDED.starts_at END,
           ends_at = EXCLUDED.ends_at,
           generator_url = coalesce(EXCLUDED.generator_url, a.generator_url),
           runbook_url = coalesce(EXCLUDED.runbook_url, a.runbook_url),
           updated_at = EXCLUDED.updated_at,
           resolved_at = CASE WHEN EXCLUDED.status = 'firing' THEN NULL
                              WHEN a.status = 'resolved' THEN a.resolved_at
                              ELSE EXCLUDED.resolved_at END,
           fire_count = a.fire_count
                        + (a.status = 'resolved' AND EXCLUDED.status = 'firing')::int
     WHERE (a.status, a.labels, a.annotations, a.ends_at, a.generator_url, a.runbook_url)
           IS DISTINCT FROM
           (EXCLUDED.status, EXCLUDED.labels, EXCLUDED.annotations, EXCLUDED.ends_at,
            coalesce(EXCLUDED.generator_url, a.generator_url),
            coalesce(EXCLUDED.runbook_url, a.runbook_url))
        OR (a.status = EXCLUDED.status AND EXCLUDED.starts_at < a.starts_at)
        OR (a.status <> EXCLUDED.status AND EXCLUDED.starts_at <> a.starts_at)
    RETURNING a.fingerprint, a.status, a.labels ->> 'alertname' AS alertname
)
SELECT up.fingerprint, up.alertname, up.status, prev.status AS previous
  FROM up LEFT JOIN prev USING (fingerprint)
"""


async def upsert_alerts(
    conn: Conn, *, incident_id: int, source: str, rows: AlertRows, now: datetime
) -> list[asyncpg.Record]:
    """Upsert every alert of a payload in one statement; returns the changed ones."""
    return await conn.fetch(
        _UPSERT,
        incident_id,
        source,
        rows.fingerprints,
        rows.statuses,
        rows.labels,
        rows.annotations,
        rows.starts_at,
        rows.ends_at,
        rows.generator_urls,
        rows.runbook_urls,
        now,
    )


async def firing_count(conn: Conn, incident_id: int) -> int:
    n = await conn.fetchval(
        "SELECT count(*) FROM alerts WHERE incident_id = $1 AND status = 'firing'", incident_id
    )
    return int(n or 0)


async def append_timeline_many(
    conn: Conn,
    incident_id: int,
    *,
    actor: str,
    at: datetime,
    kinds: list[str],
    afters: list[Any],
    notes: list[str | None] | None = None,
) -> list[asyncpg.Record]:
    """Several timeline entries of one incident in one statement, in the given order."""
    return await conn.fetch(
        """
        INSERT INTO incident_timeline (incident_id, at, actor, kind, after, note)
        SELECT $1, $2, $3, k, a::jsonb, n
          FROM unnest($4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS t(k, a, n, o)
         ORDER BY o
        RETURNING id, incident_id, at, actor, kind, before, after, note
        """,
        incident_id,
        at,
        actor,
        kinds,
        [orjson.dumps(a).decode() for a in afters],
        notes if notes is not None else [None] * len(kinds),
    )


async def list_alerts(
    conn: Conn, incident_id: int, *, after_id: int, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT id, incident_id, source, fingerprint, status, labels, annotations, starts_at,
               ends_at, generator_url, runbook_url, fire_count, first_seen_at, updated_at,
               resolved_at
          FROM alerts WHERE incident_id = $1 AND id > $2 ORDER BY id LIMIT $3
        """,
        incident_id,
        after_id,
        limit,
    )


async def purge_resolved(conn: Conn, *, older_than: datetime, batch: int) -> int:
    """Delete one batch of alerts resolved before ``older_than``."""
    result = await conn.execute(
        """
        DELETE FROM alerts WHERE id IN (
            SELECT id FROM alerts
             WHERE status = 'resolved' AND resolved_at < $1
             LIMIT $2
        )
        """,
        older_than,
        batch,
    )
    return int(result.split()[-1])
