"""Opening (or finding) the incident of an anomalous stream, inside the caller's
transaction, through the one grouping path alerts use (``upsert_group_incident``):
source ``signals``, group key = the stream name. So an anomaly that goes on finds
the open incident, one that returns soon after resolution reopens it, and at most
one incident per stream is open, guarded by the partial unique index."""

from __future__ import annotations

from typing import Any

import asyncpg

from firewatch.alerts.service import upsert_group_incident
from firewatch.runtime.database import Conn

SOURCE = "signals"


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
    events: list[dict[str, Any]],
) -> tuple[asyncpg.Record, bool]:
    return await upsert_group_incident(
        conn,
        source=SOURCE,
        group_key=group_key,
        title=title,
        description=description,
        severity=severity,
        category=category,
        service=service,
        team=team,
        labels=labels,
        actor=actor,
        events=events,
    )
