"""Opening (or finding) the incident for an anomalous stream, inside the caller's
transaction.

INTERIM: until alert ingestion's ``upsert_group_incident`` (one open incident per
group key, guarded by a partial unique index) is on main, this finds the open
incident by the stream label and creates one otherwise; the stream row lock the
caller holds serialises it per stream.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from firewatch.incidents import store as incidents_store
from firewatch.incidents.model import ACTIVE_STATUSES
from firewatch.runtime.database import Conn


async def upsert_for_stream(
    conn: Conn,
    *,
    group_key: str,
    title: str,
    description: str,
    severity: int,
    category: str,
    service: str | None,
    team: str | None,
    labels: dict[str, str],
    actor: str,
) -> tuple[asyncpg.Record, bool]:
    existing = await conn.fetchrow(
        f"SELECT {incidents_store.COLUMNS} FROM incidents "
        "WHERE labels->>'group_key' = $1 AND status = ANY($2::text[]) "
        "ORDER BY id DESC LIMIT 1",
        group_key,
        [s.value for s in ACTIVE_STATUSES],
    )
    if existing is not None:
        return existing, False
    snapshot: dict[str, Any] = {"title": title, "severity": severity, "category": category}
    row = await incidents_store.create(
        conn,
        title=title,
        description=description,
        severity=severity,
        category=category,
        service=service,
        team=team,
        owner=None,
        labels={**labels, "group_key": group_key},
        actor=actor,
        snapshot=snapshot,
    )
    return row, True
