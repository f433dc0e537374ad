"""Every SQL statement of the notification outbox, its destinations and attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from firewatch.runtime.database import Conn

WAKE_CHANNEL = "firewatch_outbox"

DESTINATION_COLUMNS = (
    "id, name, kind, url, min_severity, services, event_kinds, enabled, created_by, created_at"
)
NOTIFICATION_COLUMNS = (
    "n.id, n.destination_id, d.name AS destination, n.incident_id, n.event_kind, n.status, "
    "n.attempts, n.next_attempt_at, n.created_at, n.delivered_at, n.last_error"
)

# What a destination receives, built from the incident row ``i`` as it stands in the
# transaction of the change (so every path, and every event of one incident, sends
# the same fields). ``{kind}``, ``{at}`` and ``{details}`` are SQL parameters.
_PAYLOAD = """
jsonb_build_object(
    'event', {kind}::text,
    'at', to_char({at}::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'incident', jsonb_build_object(
        'id', 'INC-' || i.id, 'number', i.id, 'title', i.title,
        'severity', 'SEV' || i.severity, 'severity_level', i.severity,
        'status', i.status, 'category', i.category, 'service', i.service, 'team', i.team,
        'source', i.source, 'group_key', i.group_key),
    'details', coalesce({details}::jsonb, '{{}}'::jsonb))
"""


def enqueue_statement(incident: str, *, kind: str, at: str, details: str, traceparent: str) -> str:
    """``INSERT ... SELECT`` queuing one notification per destination whose filters
    match the incident row(s) ``incident`` (a table expression with the incidents
    columns, ``source`` and ``group_key`` included); the other arguments are SQL
    parameters (``$n``). Usable alone or as a data-modifying CTE of a larger
    statement, so a change and its notifications can be one round trip.

    Filters run here, at enqueue time, in the transaction of the change: a
    destination added later does not receive old events, and one removed later
    keeps its history. Only ever called with fixed fragments (module constants).
    """
    payload = _PAYLOAD.format(kind=kind, at=at, details=details)
    return f"""
    INSERT INTO notifications (destination_id, incident_id, event_kind, payload, traceparent)
    SELECT d.id, i.id, {kind}::text, {payload}, {traceparent}::text
      FROM {incident} i
      JOIN notification_destinations d
        ON d.enabled
       AND i.severity <= d.min_severity
       AND (d.services IS NULL OR i.service = ANY (d.services))
       AND (d.event_kinds IS NULL OR {kind}::text = ANY (d.event_kinds))
    RETURNING id
    """


def wake_select(cte: str) -> str:
    """``SELECT`` over the queued ids of ``cte`` (an :func:`enqueue_statement` CTE):
    how many were queued, and a NOTIFY that wakes the workers when there were any.
    Always one row, so it can be joined to the row a statement returns."""
    return (
        f"SELECT count(*) AS queued, CASE WHEN count(*) > 0 "
        f"THEN pg_notify('{WAKE_CHANNEL}', '') END AS woke FROM {cte}"
    )


_ENQUEUE = f"""
WITH ins AS ({
    enqueue_statement(
        "(SELECT * FROM incidents WHERE id = $1)",
        kind="$2",
        at="$3",
        details="$4",
        traceparent="$5",
    )
})
{wake_select("ins")}
"""


async def enqueue(
    conn: Conn,
    incident_id: int,
    event_kind: str,
    *,
    at: datetime,
    details: dict[str, Any] | None = None,
    traceparent: str | None = None,
) -> int:
    """Queue one notification of incident ``incident_id`` (as it is now, in this
    transaction) per matching destination; returns how many.

    ``traceparent`` (of the span making the change) lets delivery continue its trace.
    """
    n = await conn.fetchval(_ENQUEUE, incident_id, event_kind, at, details, traceparent)
    return int(n or 0)


_CLAIM = """
SELECT n.id, n.destination_id, n.incident_id, n.event_kind, n.payload, n.attempts,
       n.traceparent, d.kind, d.url, d.secret
  FROM notifications n
  JOIN notification_destinations d ON d.id = n.destination_id
 WHERE n.status = 'pending' AND n.next_attempt_at <= now()
 ORDER BY n.next_attempt_at, n.id
 LIMIT 1
 FOR UPDATE OF n SKIP LOCKED
"""


async def claim_due(conn: Conn) -> asyncpg.Record | None:
    """Lock the next due notification; other workers skip it until we commit."""
    return await conn.fetchrow(_CLAIM)


async def lock_pending(conn: Conn, notification_id: int, *, attempts: int) -> bool:
    """Lock notification ``notification_id`` if it is still pending after ``attempts``
    attempts and no other worker holds it (False otherwise: it moved on)."""
    locked = await conn.fetchval(
        "SELECT true FROM notifications WHERE id = $1 AND status = 'pending' AND attempts = $2 "
        "FOR UPDATE SKIP LOCKED",
        notification_id,
        attempts,
    )
    return locked is not None


async def record_attempt(
    conn: Conn,
    notification_id: int,
    *,
    attempt: int,
    duration_ms: int,
    status_code: int | None,
    error: str | None,
    outcome: str,
    next_attempt_at: datetime | None,
) -> None:
    await conn.execute(
        """
        WITH a AS (
            INSERT INTO notification_attempts
                (notification_id, attempt, duration_ms, status_code, error, outcome)
            VALUES ($1, $2, $3, $4, $5, $6)
        )
        UPDATE notifications
           SET attempts = $2,
               status = CASE $6 WHEN 'delivered' THEN 'delivered'
                                WHEN 'dead' THEN 'dead' ELSE 'pending' END,
               delivered_at = CASE WHEN $6 = 'delivered' THEN now() END,
               next_attempt_at = coalesce($7, next_attempt_at),
               last_error = $5
         WHERE id = $1
        """,
        notification_id,
        attempt,
        duration_ms,
        status_code,
        error,
        outcome,
        next_attempt_at,
    )


async def next_due_in(conn: Conn) -> float | None:
    """Seconds until the next pending notification is due (None: nothing pending)."""
    value = await conn.fetchval(
        "SELECT extract(epoch FROM min(next_attempt_at) - now()) FROM notifications "
        "WHERE status = 'pending'"
    )
    return None if value is None else float(value)


async def create_destination(
    conn: Conn,
    *,
    name: str,
    kind: str,
    url: str,
    secret: str | None,
    min_severity: int,
    services: list[str] | None,
    event_kinds: list[str] | None,
    enabled: bool,
    actor: str,
) -> asyncpg.Record | None:
    """None when the name is taken."""
    return await conn.fetchrow(
        f"""
        INSERT INTO notification_destinations
            (name, kind, url, secret, min_severity, services, event_kinds, enabled, created_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (name) DO NOTHING
        RETURNING {DESTINATION_COLUMNS}
        """,
        name,
        kind,
        url,
        secret,
        min_severity,
        services,
        event_kinds,
        enabled,
        actor,
    )


async def list_destinations(conn: Conn) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {DESTINATION_COLUMNS} FROM notification_destinations ORDER BY id"
    )


async def delete_destination(conn: Conn, destination_id: int) -> bool:
    result = await conn.execute(
        "DELETE FROM notification_destinations WHERE id = $1", destination_id
    )
    return result.endswith(" 1")


async def list_notifications(
    conn: Conn,
    *,
    incident_id: int | None,
    status: str | None,
    before_id: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first, keyset on id."""
    return await conn.fetch(
        f"""
        SELECT {NOTIFICATION_COLUMNS}
          FROM notifications n JOIN notification_destinations d ON d.id = n.destination_id
         WHERE ($1::bigint IS NULL OR n.incident_id = $1)
           AND ($2::text IS NULL OR n.status = $2)
           AND ($3::bigint IS NULL OR n.id < $3)
         ORDER BY n.id DESC
         LIMIT $4
        """,
        incident_id,
        status,
        before_id,
        limit,
    )


async def get_notification(conn: Conn, notification_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""
        SELECT {NOTIFICATION_COLUMNS}, n.payload
          FROM notifications n JOIN notification_destinations d ON d.id = n.destination_id
         WHERE n.id = $1
        """,
        notification_id,
    )


async def attempts(conn: Conn, notification_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT attempt, at, duration_ms, status_code, error, outcome "
        "FROM notification_attempts WHERE notification_id = $1 ORDER BY id",
        notification_id,
    )


async def retry_dead(conn: Conn, notification_id: int) -> bool:
    result = await conn.execute(
        "UPDATE notifications SET status = 'pending', next_attempt_at = now() "
        "WHERE id = $1 AND status = 'dead'",
        notification_id,
    )
    if result.endswith(" 1"):
        await conn.execute(f"SELECT pg_notify('{WAKE_CHANNEL}', '')")
        return True
    return False


async def purge_delivered(conn: Conn, *, older_than: datetime, batch: int) -> int:
    """Delete one batch of delivered notifications (their attempts cascade)."""
    result = await conn.execute(
        """
        DELETE FROM notifications WHERE id IN (
            SELECT id FROM notifications
             WHERE status = 'delivered' AND delivered_at < $1
             LIMIT $2
        )
        """,
        older_than,
        batch,
    )
    return int(result.split()[-1])


async def pending_count(conn: Conn) -> int:
    """Notifications waiting for delivery (the queue-depth gauge)."""
    return int(await conn.fetchval("SELECT count(*) FROM notifications WHERE status = 'pending'"))
