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

# Filters run here, at enqueue time, in the transaction of the change: a destination
# added later does not receive old events, and one removed later keeps its history.
_ENQUEUE = f"""
WITH ins AS (
    INSERT INTO notifications (destination_id, incident_id, event_kind, payload, traceparent)
    SELECT d.id, $1, $2, $3::jsonb, $6
      FROM notification_destinations d
     WHERE d.enabled
       AND $4::smallint <= d.min_severity
       AND (d.services IS NULL OR $5::text = ANY (d.services))
       AND (d.event_kinds IS NULL OR $2::text = ANY (d.event_kinds))
    RETURNING id
)
SELECT count(*) AS n,
       CASE WHEN count(*) > 0 THEN pg_notify('{WAKE_CHANNEL}', '') END AS woke
  FROM ins
"""


async def enqueue(
    conn: Conn,
    *,
    incident_id: int | None,
    event_kind: str,
    severity: int,
    service: str | None,
    payload: dict[str, Any],
    traceparent: str | None = None,
) -> int:
    """Queue one notification per matching destination; returns how many.

    ``traceparent`` (of the span making the change) lets delivery continue its trace.
    """
    n = await conn.fetchval(
        _ENQUEUE, incident_id, event_kind, payload, severity, service, traceparent
    )
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
