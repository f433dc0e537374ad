"""Every SQL statement about incidents and their timeline.

Plain functions over a connection, so the service decides the transaction. Values
always travel as ``$n`` parameters; the only composed SQL is the choice among fixed
WHERE fragments in :func:`list_incidents`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from firewatch.notifications import store as notifications_store
from firewatch.runtime.database import Conn

COLUMNS = (
    "id, title, description, severity, category, status, service, team, owner, labels, "
    "version, reopen_count, created_by, opened_at, acknowledged_at, mitigated_at, "
    "resolved_at, closed_at, updated_at"
)

_CREATE = f"""
WITH inc AS (
    INSERT INTO incidents (title, description, severity, category, service, team, owner,
                           labels, created_by, source, group_key, opened_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
    RETURNING {COLUMNS}, source, group_key
), tl AS (
    INSERT INTO incident_timeline (incident_id, at, actor, kind, after)
    SELECT id, opened_at, created_by, 'created', $13::jsonb FROM inc
    RETURNING id
), au AS (
    -- the audit entry, in this same statement (so the same transaction); see audit/
    INSERT INTO audit_log (actor, actor_kind, action, target, after_digest, client, details)
    SELECT created_by, $14, 'incident.create', 'INC-' || id, $15, $16, $17::jsonb FROM inc
), nt AS ({
    notifications_store.enqueue_statement(
        "inc", kind="'incident.opened'", at="$12", details="NULL", traceparent="$18"
    )
})
"""
_WOKEN = f"FROM inc CROSS JOIN ({notifications_store.wake_select('nt')}) w"
_CREATE_PLAIN = f"{_CREATE} SELECT {COLUMNS} {_WOKEN}"
_CREATE_WITH_TIMELINE = f"{_CREATE} SELECT {COLUMNS}, (SELECT id FROM tl) AS timeline_id {_WOKEN}"


@dataclass(frozen=True, slots=True)
class Creation:
    """One incident to open (:func:`create`, :func:`create_many`): its fields, who opens
    it, what its timeline and audit entries record, and the trace its notifications
    continue. ``source``/``group_key`` mark one opened by an integration for a group."""

    title: str
    description: str
    severity: int
    category: str
    service: str | None
    team: str | None
    owner: str | None
    labels: dict[str, str]
    actor: str
    actor_kind: str
    client: str | None
    snapshot: dict[str, Any]
    after_digest: str | None
    now: datetime
    traceparent: str | None = None
    source: str | None = None
    group_key: str | None = None
    audit_details: dict[str, Any] | None = None


async def create(conn: Conn, c: Creation, *, with_timeline_id: bool = False) -> asyncpg.Record:
    """Open an incident in one statement: the row, its 'created' timeline entry, its
    audit entry and an ``incident.opened`` notification per matching destination.

    Returns the ``COLUMNS`` of the new row, plus ``timeline_id`` (of the 'created'
    entry) when ``with_timeline_id``.
    """
    row = await conn.fetchrow(
        _CREATE_WITH_TIMELINE if with_timeline_id else _CREATE_PLAIN,
        c.title,
        c.description,
        c.severity,
        c.category,
        c.service,
        c.team,
        c.owner,
        c.labels,
        c.actor,
        c.source,
        c.group_key,
        c.now,
        c.snapshot,
        c.actor_kind,
        c.after_digest,
        c.client,
        c.audit_details or {},
        c.traceparent,
    )
    assert row is not None
    return row


# Several incidents in one statement: the rows travel as one array per column, the ids
# are drawn from the identity's sequence as the rows are read (in order), and every
# CTE of _CREATE is applied to all of them. The incidents' own defaults and checks are
# the table's, as for one row. The rows come back in the order of the input.
_CREATE_MANY = f"""
WITH input AS (
    SELECT nextval('incidents_id_seq'::regclass) AS id, u.*
      FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[],
                  $7::text[], $8::jsonb[], $9::text[], $10::timestamptz[], $11::jsonb[],
                  $12::text[], $13::text[], $14::text[], $15::text[])
           WITH ORDINALITY AS u(title, description, severity, category, service, team, owner,
                                labels, created_by, opened_at, snapshot, actor_kind,
                                after_digest, client, traceparent, ord)
), inc AS (
    INSERT INTO incidents (id, title, description, severity, category, service, team, owner,
                           labels, created_by, opened_at, updated_at)
    OVERRIDING SYSTEM VALUE
    SELECT id, title, description, severity, category, service, team, owner,
           labels, created_by, opened_at, opened_at FROM input
    RETURNING {COLUMNS}, source, group_key
), tl AS (
    INSERT INTO incident_timeline (incident_id, at, actor, kind, after)
    SELECT id, opened_at, created_by, 'created', snapshot FROM input
), au AS (
    -- the audit entries, in this same statement (so the same transaction); see audit/
    INSERT INTO audit_log (actor, actor_kind, action, target, after_digest, client, details)
    SELECT created_by, actor_kind, 'incident.create', 'INC-' || id, after_digest, client,
           '{{}}'::jsonb
      FROM input
), nt AS ({
    notifications_store.enqueue_statement(
        "(SELECT inc.*, input.traceparent AS traceparent_ FROM inc JOIN input USING (id))",
        kind="'incident.opened'",
        at="i.opened_at",
        details="NULL",
        traceparent="i.traceparent_",
    )
})
SELECT {", ".join(f"inc.{c.strip()}" for c in COLUMNS.split(","))}
  FROM inc JOIN input USING (id) CROSS JOIN ({notifications_store.wake_select("nt")}) w
 ORDER BY input.ord
"""


async def create_many(conn: Conn, creations: list[Creation]) -> list[asyncpg.Record]:
    """Open several incidents in one statement, each exactly as :func:`create` opens
    one (row, 'created' entry, audit entry, ``incident.opened`` notifications); they
    commit or fail together. Returns their ``COLUMNS`` rows in the order given.

    One statement for many rows is what makes a burst of creates cheap: PostgreSQL's
    per-statement work (executor start, locks, commit) is paid once (see
    service.CreateBatcher). Only for incidents opened by hand: no source, no group.
    """
    if any(c.source or c.group_key or c.audit_details for c in creations):
        raise ValueError("create_many opens incidents without a source, group or details")
    rows = await conn.fetch(
        _CREATE_MANY,
        [c.title for c in creations],
        [c.description for c in creations],
        [c.severity for c in creations],
        [c.category for c in creations],
        [c.service for c in creations],
        [c.team for c in creations],
        [c.owner for c in creations],
        [c.labels for c in creations],
        [c.actor for c in creations],
        [c.now for c in creations],
        [c.snapshot for c in creations],
        [c.actor_kind for c in creations],
        [c.after_digest for c in creations],
        [c.client for c in creations],
        [c.traceparent for c in creations],
    )
    assert len(rows) == len(creations)
    return rows


async def get(conn: Conn, incident_id: int, *, for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(f"SELECT {COLUMNS} FROM incidents WHERE id = $1{lock}", incident_id)


# Columns a PATCH may change; the mapping keeps SQL identifiers out of user input.
EDITABLE = ("title", "description", "severity", "category", "service", "team", "owner", "labels")


async def update_fields(
    conn: Conn, incident_id: int, changes: dict[str, Any], now: datetime
) -> asyncpg.Record:
    """Apply field changes and bump the version; ``changes`` keys are from EDITABLE."""
    sets = []
    args: list[Any] = [incident_id, now]
    for name in EDITABLE:
        if name in changes:
            args.append(changes[name])
            sets.append(f"{name} = ${len(args)}")
    row = await conn.fetchrow(
        f"UPDATE incidents SET {', '.join(sets)}, version = version + 1, updated_at = $2 "
        f"WHERE id = $1 RETURNING {COLUMNS}",
        *args,
    )
    assert row is not None
    return row


async def update_lifecycle(
    conn: Conn,
    incident_id: int,
    *,
    status: str,
    acknowledged_at: datetime | None,
    mitigated_at: datetime | None,
    resolved_at: datetime | None,
    closed_at: datetime | None,
    reopen_count: int,
    now: datetime,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"""
        UPDATE incidents
           SET status = $2, acknowledged_at = $3, mitigated_at = $4, resolved_at = $5,
               closed_at = $6, reopen_count = $7, version = version + 1, updated_at = $8
         WHERE id = $1
        RETURNING {COLUMNS}
        """,
        incident_id,
        status,
        acknowledged_at,
        mitigated_at,
        resolved_at,
        closed_at,
        reopen_count,
        now,
    )
    assert row is not None
    return row


async def append_timeline(
    conn: Conn,
    incident_id: int,
    *,
    actor: str,
    kind: str,
    at: datetime,
    before: Any = None,
    after: Any = None,
    note: str | None = None,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        """
        INSERT INTO incident_timeline (incident_id, at, actor, kind, before, after, note)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        RETURNING id, incident_id, at, actor, kind, before, after, note
        """,
        incident_id,
        at,
        actor,
        kind,
        before,
        after,
        note,
    )
    assert row is not None
    return row


async def timeline(
    conn: Conn, incident_id: int, *, after_id: int, limit: int
) -> list[asyncpg.Record]:
    """Timeline entries oldest first (a story reads forwards), keyset on id."""
    return await conn.fetch(
        """
        SELECT id, incident_id, at, actor, kind, before, after, note
          FROM incident_timeline
         WHERE incident_id = $1 AND id > $2
         ORDER BY id
         LIMIT $3
        """,
        incident_id,
        after_id,
        limit,
    )


@dataclass(frozen=True, slots=True)
class ListFilter:
    status: list[str] | None = None
    severity: list[int] | None = None
    category: list[str] | None = None
    service: str | None = None
    team: str | None = None
    owner: str | None = None
    opened_after: datetime | None = None
    opened_before: datetime | None = None
    q: str | None = None


async def list_incidents(
    conn: Conn, flt: ListFilter, *, before_id: int | None, limit: int
) -> list[asyncpg.Record]:
    """Newest first, keyset on id (identity order is creation order): no OFFSET, no COUNT."""
    where: list[str] = []
    args: list[Any] = []

    def add(fragment: str, value: Any) -> None:
        args.append(value)
        where.append(fragment.format(n=len(args)))

    if flt.status:
        add("status = ANY(${n}::text[])", flt.status)
    if flt.severity:
        add("severity = ANY(${n}::smallint[])", flt.severity)
    if flt.category:
        add("category = ANY(${n}::text[])", flt.category)
    if flt.service is not None:
        add("service = ${n}", flt.service)
    if flt.team is not None:
        add("team = ${n}", flt.team)
    if flt.owner is not None:
        add("owner = ${n}", flt.owner)
    if flt.opened_after is not None:
        add("opened_at >= ${n}", flt.opened_after)
    if flt.opened_before is not None:
        add("opened_at < ${n}", flt.opened_before)
    if flt.q:
        add("search @@ websearch_to_tsquery('english', ${n})", flt.q)
    if before_id is not None:
        add("id < ${n}", before_id)
    args.append(limit)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return await conn.fetch(
        f"SELECT {COLUMNS} FROM incidents {clause} ORDER BY id DESC LIMIT ${len(args)}", *args
    )
