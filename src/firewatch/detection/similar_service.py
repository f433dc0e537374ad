"""Similar incidents, kept current: each app holds one :class:`SimilarState`.

The state is created by the app's lifespan (``app.state.similar``) and belongs to
that app and its event loop; nothing here is module-global. Before answering, the
index catches up on incidents changed since it last looked (``updated_at``
watermark, indexed, looking back :data:`OVERLAP` for changes that committed late):
changed incidents are re-vectorised incrementally into the
index's side matrix, which is folded back (:meth:`SimilarIndex.compact`, IDF refitted,
no text re-read) when it exceeds 10% of the index and 1,000 incidents
(:meth:`SimilarIndex.needs_rebuild`). The index is rebuilt from the
database when it is older than ``FIREWATCH_SIMILAR_REBUILD_SECONDS``. Resolution
notes are the note of the latest move to ``resolved`` in the timeline (which also
bumps ``updated_at``).

Suggestions on new incidents: :func:`suggest_all` stores the top-k for each incident
that has none yet (``incident_similar``), in batches until none is left, run
periodically by the suggester process
(detection/suggester.py): per batch, one query reads the pending incidents, one call
scores them all, one query reads the suggested incidents' details and one statement
stores every suggestion.

Event loop: building, vectorising, compacting and scoring are CPU work and run in
worker threads (``asyncio.to_thread``). No asyncio lock is held across those awaits:
the index publishes immutable snapshots (queries never wait), and index writes plus
the watermark move together under a ``threading.Lock`` taken only inside the
synchronous functions that run in the worker thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog

from firewatch.detection.similar import Match, SimilarIndex, incident_text
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

Watermark = tuple[datetime, int]


def _text(row: asyncpg.Record) -> str:
    return incident_text(
        title=row["title"],
        description=row["description"],
        labels=row["labels"],
        service=row["service"],
        category=row["category"],
        resolution=row["resolution"],
    )


class SimilarState:
    """One app's similar-incident index and how far it has read the incidents table."""

    def __init__(self) -> None:
        self.index: SimilarIndex | None = None
        self.watermark: Watermark | None = None
        self.built_at = 0.0
        # set while a build runs (on the event loop; waiters hold nothing while waiting)
        self.built: asyncio.Event | None = None
        self._write = threading.Lock()  # taken in worker threads only
        # id -> updated_at of the rows applied within OVERLAP of the watermark
        self.recent: dict[int, datetime] = {}

    # ----------------------------------------------- synchronous, in worker threads

    def _install(self, rows: Sequence[asyncpg.Record]) -> SimilarIndex:
        index = SimilarIndex()
        index.build([r["id"] for r in rows], [_text(r) for r in rows])
        with self._write:
            self.index = index
            self.watermark = max(((r["updated_at"], r["id"]) for r in rows), default=None)
            self.recent = {}
            self._remember(rows)
            self.built_at = time.monotonic()
        return index

    def _remember(self, rows: Sequence[asyncpg.Record]) -> None:
        """Versions of the rows inside the overlap window (under ``_write``)."""
        if self.watermark is None:
            return
        horizon = self.watermark[0] - OVERLAP
        for r in rows:
            if r["updated_at"] > horizon:
                self.recent[r["id"]] = r["updated_at"]
        self.recent = {i: at for i, at in self.recent.items() if at > horizon}

    def _catch_up(self, index: SimilarIndex, rows: Sequence[asyncpg.Record]) -> None:
        """Apply changed rows (ordered by updated_at, id) this index has not seen at
        that version."""
        with self._write:
            if self.index is not index:  # rebuilt meanwhile: the new one catches up itself
                return
            fresh = [r for r in rows if self.recent.get(r["id"]) != r["updated_at"]]
            if not fresh:
                return
            index.upsert((r["id"], _text(r)) for r in fresh)
            last = max((r["updated_at"], r["id"]) for r in fresh)
            if self.watermark is None or last > self.watermark:
                self.watermark = last
            self._remember(fresh)
            if index.needs_rebuild():
                index.compact()


#: How far back each catch-up looks again. ``updated_at`` is stamped when a change is
#: made, not when it commits: a transaction that commits after a later-stamped one
#: would fall behind the watermark. Rows re-read in this window are applied only
#: when their version is new to the index.
OVERLAP = timedelta(seconds=5)

# Cheap first pass (index-only on incidents (updated_at, id)): which rows changed.
_CHANGED = "SELECT id, updated_at FROM incidents WHERE updated_at > $1"


async def _refresh(state: SimilarState, pool: PgPool, rebuild_seconds: float) -> SimilarIndex:
    """The index, built if missing or old, caught up with changed incidents."""
    if state.index is None and state.built is not None:  # another caller is building it
        await state.built.wait()
    index = state.index
    old = time.monotonic() - state.built_at > rebuild_seconds
    if (index is None or old) and state.built is None:
        state.built = done = asyncio.Event()
        try:
            async with pool.acquire() as conn:
                rows = await conn.fetch(_TEXT + " ORDER BY i.id")
            index = await asyncio.to_thread(state._install, rows)
            log.info("similar-incident index built", incidents=len(rows))
            return index
        finally:
            state.built = None
            done.set()
    if index is None:  # the build we waited for failed: the next call retries
        raise RuntimeError("the similar-incident index is not available yet")
    mark = state.watermark
    async with pool.acquire() as conn:
        if mark is None:
            rows = await conn.fetch(_TEXT + " ORDER BY i.updated_at, i.id")
        else:
            changed = await conn.fetch(_CHANGED, mark[0] - OVERLAP)
            known = state.recent
            ids = [r["id"] for r in changed if known.get(r["id"]) != r["updated_at"]]
            rows = (
                await conn.fetch(
                    _TEXT + " WHERE i.id = ANY($1::bigint[]) ORDER BY i.updated_at, i.id", ids
                )
                if ids
                else []
            )
    if rows:
        await asyncio.to_thread(state._catch_up, index, rows)
    return index


def _item(r: asyncpg.Record, score: float) -> dict[str, Any]:
    return {
        "id": display_ref(r["id"]),
        "title": r["title"],
        "status": r["status"],
        "severity": f"SEV{r['severity']}",
        "service": r["service"],
        "category": r["category"],
        "score": score,
        "resolved_at": r["resolved_at"],
        "resolution": r["resolution"],
    }


async def _details(conn: Conn, answers: Sequence[list[Match]]) -> list[list[dict[str, Any]]]:
    """The matched incidents of every answer, read in one query (deleted ones dropped)."""
    wanted = sorted({m.incident_id for matches in answers for m in matches})
    if not wanted:
        return [[] for _ in answers]
    rows = await conn.fetch(
        _TEXT.replace("i.updated_at,", "i.updated_at, i.status, i.resolved_at, i.severity,")
        + " WHERE i.id = ANY($1::bigint[])",
        wanted,
    )
    by_id = {r["id"]: r for r in rows}
    return [
        [_item(by_id[m.incident_id], m.score) for m in matches if m.incident_id in by_id]
        for matches in answers
    ]


async def similar(
    state: SimilarState, pool: PgPool, incident_id: int, k: int, rebuild_seconds: float
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(_TEXT + " WHERE i.id = $1", incident_id)
    if row is None:
        raise NotFoundError(f"incident {display_ref(incident_id)} does not exist")
    index = await _refresh(state, pool, rebuild_seconds)
    matches = await asyncio.to_thread(index.query, _text(row), k, incident_id)
    async with pool.acquire() as conn:
        (items,) = await _details(conn, [matches])
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


_PENDING = (
    _TEXT
    + """
 WHERE i.opened_at > now() - interval '1 day'
   AND i.id > $2 AND i.id <= $3
   AND NOT EXISTS (SELECT 1 FROM incident_similar s WHERE s.incident_id = i.id)
 ORDER BY i.id LIMIT $1
"""
)

# One statement for the whole batch; ignores a row another process wrote first.
_STORE = """
INSERT INTO incident_similar (incident_id, suggestions)
SELECT (e.key)::bigint, e.value FROM jsonb_each($1::jsonb) AS e
ON CONFLICT (incident_id) DO NOTHING
"""


async def warm(state: SimilarState, pool: PgPool, rebuild_seconds: float) -> None:
    """Build (or catch up) the index now, so the first suggestions need no build."""
    await _refresh(state, pool, rebuild_seconds)


async def suggest_all(
    state: SimilarState,
    pool: PgPool,
    k: int,
    rebuild_seconds: float,
    batch: int,
    *,
    keep_going: Callable[[], bool] = lambda: True,
) -> int:
    """Suggestions for every incident that has none yet (opened in the last day) and
    existed when the run began, in batches of ``batch``; returns how many were
    stored. Safe to run in every replica: the insert ignores a row another process
    wrote first.

    One batch per interval fell behind any storm of more than ``batch`` incidents per
    interval (10 a second by default) and never caught up during it. The index
    catches up once per run, not per batch (each catch-up re-reads the last
    :data:`OVERLAP` of changes), and each batch starts after the last one's ids, so
    a run costs in proportion to what it suggests. Incidents opened during the run
    wait for the next one, which first indexes their own past. ``keep_going`` is
    asked before each batch: a suggester whose ``serve`` is gone stops within a
    batch, not after a whole backlog.
    """
    async with pool.acquire() as conn:
        upto = await conn.fetchval("SELECT max(id) FROM incidents")  # before catching up
        pending = await conn.fetch(_PENDING, batch, 0, upto or 0)
    total = 0
    index: SimilarIndex | None = None
    while pending and keep_going():
        if index is None:
            index = await _refresh(state, pool, rebuild_seconds)
        total += await _suggest(index, pool, k, pending)
        async with pool.acquire() as conn:
            pending = await conn.fetch(_PENDING, batch, pending[-1]["id"], upto)
    return total


async def _suggest(
    index: SimilarIndex, pool: PgPool, k: int, pending: Sequence[asyncpg.Record]
) -> int:
    """Score and store the suggestions of ``pending`` (rows of ``_PENDING``)."""
    ids = [r["id"] for r in pending]
    texts = [_text(r) for r in pending]
    # only incidents opened before this one are "past" incidents
    answers = await asyncio.to_thread(index.query_many, texts, k, exclude=ids, before=ids)
    async with pool.acquire() as conn:
        items = await _details(conn, answers)
        result = await conn.execute(
            _STORE, {str(i): found for i, found in zip(ids, items, strict=True)}
        )
    return int(result.split()[-1])
