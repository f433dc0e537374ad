"""SQL for replaying the timeline to a client that resumes with Last-Event-ID."""

from __future__ import annotations

import asyncpg

from firewatch.runtime.database import Conn


async def timeline_since(conn: Conn, after_id: int, limit: int) -> list[asyncpg.Record]:
    """Timeline entries of every incident after ``after_id``, oldest first."""
    return await conn.fetch(
        """
        SELECT id, incident_id, at, actor, kind, before, after, note
          FROM incident_timeline WHERE id > $1 ORDER BY id LIMIT $2
        """,
        after_id,
        limit,
    )


async def latest_id(conn: Conn) -> int:
    value = await conn.fetchval("SELECT coalesce(max(id), 0) FROM incident_timeline")
    return int(value)
