"""Similar incidents, kept current: each process holds a :class:`SimilarIndex`.

Before answering, the index catches up on incidents changed since it last looked
(``updated_at`` watermark, indexed): changed incidents are re-vectorised
incrementally. It is rebuilt from scratch (IDF refitted) when the incremental part
exceeds 10% of the index or the index is older than
``FIREWATCH_SIMILAR_REBUILD_SECONDS``. Resolution notes are the note of the latest
move to ``resolved`` in the timeline (which also bumps ``updated_at``).

Suggestions on new incidents: :func:`suggest_new` stores the top-k for each incident
that has none yet (``incident_similar``), run periodically by the app.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from firewatch.errors import NotFoundError
from firewatch.incidents.model import display_ref
from firewatch.runtime.database import Conn, PgPool

log = structlog.get_logger(__name__)

_TEXT = """
SELECT i.id, i.title, i.description, i.labels, i.service, i.category, i.updated_at,
       (SELECT t.note FROM incident_timeline t
         WHERE t.incident_id = i.id AND t.kind = 'status_changed'
           AND t.after->>'status' = 'resolved'
         ORDER BY t.id DESC LIMIT 1) AS resolution
  FROM incidents i
"""


def _text(row: asyncpg.Record) -> str:
    from firewatch.detection.similar import incident_text

    return incident_text(
        title=row["title"],
        description=row["description"],
        labels=row["labels"],
        service=row["service"],
        category=row["category"],
        resolution=row["resolution"],
    )


class _State:
    def __init__(self) -> None:
        self.index: Any = None
        self.watermark: tuple[datetime, int] | None = None
        self.built_at = 0.0
        self.lock = asyncio.Lock()


_state = _State()


def reset() -> None:
    global _state
    _state = _State()


async def _refresh(pool: PgPool, rebuild_seconds: float) -> Any:
    from firewatch.detection.similar import SimilarIndex

    async with _state.lock:
        stale = time.monotonic() - _state.built_at > rebuild_seconds
        if _state.index is None or stale or _state.index.needs_rebuild():
            async with pool.acquire() as conn:
                rows = await conn.fetch(_TEXT + " ORDER BY i.id")
            index = SimilarIndex()
            ids = [r["id"] for r in rows]
            texts = [_text(r) for r in rows]
            await asyncio.to_thread(index.build, ids, texts)
            _state.index = index
            _state.built_at = time.monotonic()
            _state.watermark = max(((r["updated_at"], r["id"]) for r in rows), default=None)
            log.info("similar-incident index built", incidents=len(rows))
            return index
        if _state.watermark is not None:
            async with pool.acquire() as conn:
                rows = await conn.fetch(
                    _TEXT + " WHERE (i.updated_at, i.id) > ($1, $2) ORDER BY i.updated_at, i.id",
                    *_state.watermark,
                )
        else:
            async with pool.acquire() as conn:
                rows = await conn.fetch(_TEXT + " ORDER BY i.updated_at, i.id")
        if rows:
            _state.index.upsert((r["id"], _text(r)) for r in rows)
            _state.watermark = (rows[-1]["updated_at"], rows[-1]["id"])
        return _state.index


async def _details(conn: Conn, matches: list[Any]) -> list[dict[str, Any]]:
    if not matches:
        return []
    rows = await conn.fetch(
        _TEXT.replace("i.updated_at,", "i.updated_at, i.status, i.resolved_at, i.severity,")
        + " WHERE i.id = ANY($1::bigint[])",
        [m.incident_id for m in matches],
    )
    by_id = {r["id"]: r for r in rows}
    out = []
    for m in matches:
        r = by_id.get(m.incident_id)
        if r is None:  # deleted since indexed
            continue
        out.append(
            {
                "id": display_ref(r["id"]),
                "title": r["title"],
                "status": r["status"],
                "severity": f"SEV{r['severity']}",
                "service": r["service"],
                "category": r["category"],
                "score": m.score,
                "resolved_at": r["resolved_at"],
                "resolution": r["resolution"],
            }
        )
    return out


async def similar(pool: PgPool, incident_id: int, k: int, rebuild_seconds: float) -> dict[str, Any]:
    index = await _refresh(pool, rebuild_seconds)
    async with pool.acquire() as conn:
        row = await conn.fetchrow(_TEXT + " WHERE i.id = $1", incident_id)
        if row is None:
            raise NotFoundError(f"incident {display_ref(incident_id)} does not exist")
        matches = index.query(_text(row), k, exclude=incident_id)
        items = await _details(conn, matches)
        stored = await conn.fetchrow(
            "SELECT computed_at, suggestions FROM incident_similar WHERE incident_id = $1",
            incident_id,
        )
    return {
        "incident": display_ref(incident_id),
        "items": items,
        "suggested_at_open": (
            {"computed_at": stored["computed_at"], "items": stored["suggestions"]}
            if stored
            else None
        ),
    }


async def suggest_new(pool: PgPool, k: int, rebuild_seconds: float, limit: int = 100) -> int:
    """Store the top-k similar past incidents for incidents that have none yet (opened
    in the last day). Safe to run in every replica: the insert ignores a row another
    process wrote first. Returns how many were stored."""
    async with pool.acquire() as conn:
        pending = await conn.fetch(
            """
            SELECT i.id FROM incidents i
             WHERE i.opened_at > now() - interval '1 day'
               AND NOT EXISTS (SELECT 1 FROM incident_similar s WHERE s.incident_id = i.id)
             ORDER BY i.id LIMIT $1
            """,
            limit,
        )
    if not pending:
        return 0
    index = await _refresh(pool, rebuild_seconds)
    stored = 0
    async with pool.acquire() as conn:
        for p in pending:
            row = await conn.fetchrow(_TEXT + " WHERE i.id = $1", p["id"])
            if row is None:
                continue
            # only incidents opened before this one are "past" incidents
            matches = [m for m in index.query(_text(row), k * 3, exclude=p["id"])]
            matches = [m for m in matches if m.incident_id < p["id"]][:k]
            items = await _details(conn, matches)
            result = await conn.execute(
                "INSERT INTO incident_similar (incident_id, suggestions) VALUES ($1, $2) "
                "ON CONFLICT (incident_id) DO NOTHING",
                p["id"],
                items,
            )
            stored += result.endswith(" 1")
    return stored


async def run_suggester(pool: PgPool, k: int, interval: float, rebuild_seconds: float) -> None:
    """The app's background loop: suggestions for new incidents every ``interval`` s."""
    while True:
        try:
            await suggest_new(pool, k, rebuild_seconds)
        except asyncio.CancelledError:
            raise
        except Exception:  # keep the loop alive across database hiccups
            log.exception("similar-incident suggestions failed")
        await asyncio.sleep(interval)
