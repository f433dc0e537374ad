"""A small hand-computed incident set (every expected figure is worked out in the
tests' comments), usable as a DataFrame or inserted into PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from firewatch.analytics.metrics import COLUMNS
from firewatch.runtime.database import Conn


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    severity: int
    category: str
    service: str | None
    opened: datetime
    ack: float | None = None  # seconds after opening
    mitigated: float | None = None
    resolved: float | None = None
    reopens: int = 0
    team: str | None = "core"
    status: str = "open"


def rows(year: int = 2001) -> list[Row]:
    """#7 is before the window (history), #8 exactly at its end (excluded)."""
    return [
        Row(1, "latency", "svc-a", at(year, 1, 1), 120, 600, 1200, status="resolved"),
        Row(1, "latency", "svc-a", at(year, 1, 2), 600, 3600, 3600, status="resolved"),
        Row(2, "data_quality", "svc-b", at(year, 1, 3), None, 1800, 1800, status="resolved"),
        Row(2, "data_quality", "svc-b", at(year, 1, 9), 60, status="investigating"),
        Row(3, "other", None, at(year, 1, 10), team=None),
        Row(1, "latency", "svc-c", at(year, 1, 10, 12), 30, reopens=1),
        Row(1, "latency", "svc-a", at(year - 1, 12, 31, 23, 59, 59), 10, 20, 30, status="closed"),
        Row(4, "other", "svc-z", at(year, 1, 15), 5, status="acknowledged"),
    ]


WINDOW_FROM = (1, 1)
WINDOW_TO = (1, 15)


def _plus(opened: datetime, seconds: float | None) -> datetime | None:
    return None if seconds is None else opened + timedelta(seconds=seconds)


def frame(year: int = 2001) -> pd.DataFrame:
    records: list[dict[str, Any]] = []
    for i, r in enumerate(rows(year), start=1):
        o = r.opened.timestamp()
        records.append(
            {
                "id": i,
                "severity": r.severity,
                "category": r.category,
                "service": r.service,
                "team": r.team,
                "group_key": None,
                "opened_at": o,
                "acknowledged_at": None if r.ack is None else o + r.ack,
                "mitigated_at": None if r.mitigated is None else o + r.mitigated,
                "resolved_at": None if r.resolved is None else o + r.resolved,
                "reopen_count": r.reopens,
            }
        )
    df = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    for c in ("acknowledged_at", "mitigated_at", "resolved_at"):
        df[c] = df[c].astype("float64")
    return df


async def insert(conn: Conn, year: int, team_override: str | None = None) -> None:
    for r in rows(year):
        await conn.execute(
            """
            INSERT INTO incidents (title, severity, category, service, team, created_by,
                                   status, opened_at, acknowledged_at, mitigated_at,
                                   resolved_at, closed_at, reopen_count)
            VALUES ($1, $2, $3, $4, $5, 'fixture', $6, $7, $8, $9, $10, $11, $12)
            """,
            f"fixture {r.category} on {r.service}",
            r.severity,
            r.category,
            r.service,
            team_override if team_override is not None else r.team,
            r.status,
            r.opened,
            _plus(r.opened, r.ack),
            _plus(r.opened, r.mitigated),
            _plus(r.opened, r.resolved),
            _plus(r.opened, r.resolved) if r.status == "closed" else None,
            r.reopens,
        )
