"""Incident use cases, one transaction each, with their timeline, audit entries and
notifications in that transaction."""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from firewatch.audit import service as audit
from firewatch.audit.chain import digest
from firewatch.auth.principal import Principal
from firewatch.errors import (
    InvalidTransitionError,
    NotFoundError,
    PreconditionFailedError,
)
from firewatch.incidents import store
from firewatch.incidents.model import (
    Lifecycle,
    Status,
    TransitionError,
    display_ref,
    transition,
)
from firewatch.notifications import store as notifications_store
from firewatch.notifications.model import EventKind, fields_event, transition_event
from firewatch.observability import metrics, tracing
from firewatch.runtime.database import Conn
from firewatch.runtime.database import PgPool as Pool


@dataclass(frozen=True, slots=True)
class NewIncident:
    title: str
    severity: int
    category: str
    description: str = ""
    service: str | None = None
    team: str | None = None
    owner: str | None = None
    labels: dict[str, str] | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _not_found(incident_id: int) -> NotFoundError:
    return NotFoundError(f"incident {display_ref(incident_id)} does not exist")


def _check_version(row: asyncpg.Record, expected: int | None) -> None:
    if expected is not None and row["version"] != expected:
        raise PreconditionFailedError(
            f"incident {display_ref(row['id'])} is at version {row['version']}, "
            f"not {expected}: reload it and apply your change again",
            current_version=row["version"],
        )


# ------------------------------------------------------------------ in a transaction
#
# The one implementation of every incident change, for every caller: the API below,
# alert ingestion, webhooks and detection (firewatch.alerts.service). Each takes the
# connection of the caller's transaction and writes, in it, the change, its timeline
# entry, its audit entry and its notifications, so they commit or roll back together.


async def notify(
    conn: Conn,
    kind: EventKind,
    incident_id: int,
    *,
    at: datetime,
    details: dict[str, Any] | None = None,
) -> None:
    """Queue ``kind`` for the destinations whose filters match the incident as it now
    stands; delivery continues the trace of the current span."""
    await notifications_store.enqueue(
        conn,
        incident_id,
        kind.value,
        at=at,
        details=details,
        traceparent=tracing.current_traceparent(),
    )


def created_snapshot(
    new: NewIncident, source: str | None = None, group_key: str | None = None
) -> dict[str, Any]:
    """What the 'created' timeline entry records (and the audit entry digests)."""
    snapshot: dict[str, Any] = {
        "title": new.title,
        "severity": new.severity,
        "category": new.category,
        "status": Status.OPEN.value,
        "service": new.service,
        "team": new.team,
        "owner": new.owner,
    }
    if source is not None:
        snapshot.update(source=source, group_key=group_key)
    return snapshot


async def open_incident(
    conn: Conn,
    actor: Principal,
    new: NewIncident,
    *,
    now: datetime,
    source: str | None = None,
    group_key: str | None = None,
    with_timeline_id: bool = False,
) -> asyncpg.Record:
    """Open an incident: row, 'created' entry, audit entry and ``incident.opened``
    notifications, in one statement (one round trip). ``source``/``group_key`` mark an
    incident opened by an integration for a group (see firewatch.alerts.service)."""
    return await store.create(
        conn, _creation(actor, new, now, source, group_key), with_timeline_id=with_timeline_id
    )


async def change_fields(
    conn: Conn,
    actor: Principal,
    row: asyncpg.Record,
    changes: dict[str, Any],
    *,
    now: datetime,
    timeline_kind: str = "updated",
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """Apply field ``changes`` (keys of ``store.EDITABLE``, values that differ) to the
    locked incident ``row``; returns the new row and the timeline entry. A raised
    severity notifies ``incident.escalated``, anything else ``incident.updated``."""
    before = {k: row[k] for k in changes}
    updated = await store.update_fields(conn, row["id"], changes, now)
    entry = await store.append_timeline(
        conn,
        row["id"],
        actor=actor.subject,
        kind=timeline_kind,
        at=now,
        before=before,
        after=changes,
    )
    fields = sorted(changes)
    await audit.record(
        conn,
        actor,
        "incident.update",
        target=display_ref(row["id"]),
        before=before,
        after=changes,
        details={"fields": fields},
    )
    details: dict[str, Any] = {"fields": fields}
    if "severity" in changes:
        details["previous_severity"] = f"SEV{before['severity']}"
    await notify(conn, fields_event(before, changes), row["id"], at=now, details=details)
    return updated, entry


async def move(
    conn: Conn,
    actor: Principal,
    row: asyncpg.Record,
    nxt: Lifecycle,
    *,
    now: datetime,
    note: str | None = None,
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """Store the lifecycle ``nxt`` (computed by the state machine from ``row``, the
    locked incident) with its timeline entry, audit entry and notification; returns
    the new row and the timeline entry."""
    current = Status(row["status"])
    reopened = nxt.status is Status.OPEN
    updated = await store.update_lifecycle(
        conn,
        row["id"],
        status=nxt.status.value,
        acknowledged_at=nxt.acknowledged_at,
        mitigated_at=nxt.mitigated_at,
        resolved_at=nxt.resolved_at,
        closed_at=nxt.closed_at,
        reopen_count=nxt.reopen_count,
        now=now,
    )
    before, after = {"status": current.value}, {"status": nxt.status.value}
    entry = await store.append_timeline(
        conn,
        row["id"],
        actor=actor.subject,
        kind="reopened" if reopened else "status_changed",
        at=now,
        before=before,
        after=after,
        note=note,
    )
    await audit.record(
        conn,
        actor,
        "incident.reopen" if reopened else "incident.transition",
        target=display_ref(row["id"]),
        before=before,
        after=after,
    )
    await notify(
        conn,
        transition_event(current, nxt.status),
        row["id"],
        at=now,
        details={"reason": note} if note else None,
    )
    return updated, entry


# ------------------------------------------------------------------ use cases


def _creation(
    actor: Principal,
    new: NewIncident,
    now: datetime,
    source: str | None = None,
    group_key: str | None = None,
) -> store.Creation:
    snapshot = created_snapshot(new, source, group_key)
    return store.Creation(
        title=new.title,
        description=new.description,
        severity=new.severity,
        category=new.category,
        service=new.service,
        team=new.team,
        owner=new.owner,
        labels=new.labels or {},
        actor=actor.subject,
        actor_kind=actor.kind,
        client=actor.client,
        snapshot=snapshot,
        after_digest=digest(snapshot),
        now=now,
        traceparent=tracing.current_traceparent(),
        source=source,
        group_key=group_key,
        audit_details={"source": source} if source is not None else None,
    )


#: a create waiting for its batch: what to open, where its answer goes, and the context
#: (trace, log binding) of the request that asked
_Waiting = tuple[store.Creation, asyncio.Future[asyncpg.Record], contextvars.Context]


class CreateBatcher:
    """Opens the incidents that API requests create, many in one statement when many
    requests are creating at once (ADR-008, item 6): group commit.

    A create's PostgreSQL cost is mostly per statement (executor start, the locks of
    four tables and their indexes, commit), not per row, so a burst of creates (an
    incident storm, a script filing tickets) is far cheaper as one statement. At most
    ``max_running`` statements run at once; the creates that arrive meanwhile wait and
    go together in the next one (up to ``max_batch``). A lone create runs at once (on
    the next turn of the event loop, with any create of the same turn). Each incident
    is opened exactly as alone (row, 'created' entry, audit entry, notifications), with
    its own request's time as ``opened_at``.

    Why small batches, two at a time: the creates of one turn of the event loop come
    back from PostgreSQL together, so their clients' next requests also arrive
    together. With batches of up to 64, the batches under wrk alternated between 1
    and 15 incidents and the API process waited for PostgreSQL between them (a core
    idle 73-82% of the time); with batches of 4, two at a time, PostgreSQL works on one
    batch while the API answers another (idle 44%, throughput 2,617 against 1,550-2,460
    req/s; ADR-008 has the runs).

    A batch commits or fails as a whole. When PostgreSQL refuses it (an error reply:
    nothing was committed), each of its incidents is tried again alone, so one bad row
    fails only its own request. Any other failure (connection lost, timeout: the
    outcome is unknown) is every request's answer, never retried.

    A batch runs in the context of its first request (not of whichever request's
    batch finished before it), so in a sampled trace its SQL span is a child of that
    request's span.
    """

    def __init__(self, pool: Pool, *, max_batch: int = 4, max_running: int = 2) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._max_running = max_running
        self._pending: list[_Waiting] = []
        self._scheduled = False
        self._running: set[asyncio.Task[None]] = set()
        #: statements run so far (a batch refused and retried alone counts each try)
        self.statements = 0

    async def create(self, actor: Principal, new: NewIncident) -> asyncpg.Record:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[asyncpg.Record] = loop.create_future()
        self._pending.append((_creation(actor, new, _now()), future, contextvars.copy_context()))
        if not self._scheduled and len(self._running) < self._max_running:
            self._scheduled = True
            loop.call_soon(self._start)
        row = await future
        metrics.record_incident_opened(row["severity"])
        return row

    def _start(self) -> None:
        self._scheduled = False
        while self._pending and len(self._running) < self._max_running:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            task = asyncio.get_running_loop().create_task(self._run(batch), context=batch[0][2])
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start()

    async def _run(self, batch: list[_Waiting]) -> None:
        self.statements += 1
        try:
            async with self._pool.acquire() as conn:
                if len(batch) == 1:
                    rows = [await store.create(conn, batch[0][0])]
                else:
                    rows = await store.create_many(conn, [item[0] for item in batch])
        except asyncpg.PostgresError as exc:
            if len(batch) > 1:
                # refused, so nothing was committed: each alone, for its own answer
                loop = asyncio.get_running_loop()
                await asyncio.gather(
                    *(loop.create_task(self._run([item]), context=item[2]) for item in batch)
                )
            else:
                _settle(batch, exc)
        except asyncio.CancelledError:
            _settle(batch, asyncio.CancelledError())
            raise
        except Exception as exc:  # the requests' answer (they log it), not this task's
            _settle(batch, exc)
        else:
            for (_, future, _), row in zip(batch, rows, strict=True):
                if not future.done():
                    future.set_result(row)


def _settle(batch: list[_Waiting], exc: BaseException) -> None:
    """Give ``exc`` as the answer of every request of ``batch`` still waiting."""
    for _, future, _ in batch:
        if future.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(exc)


async def get_incident(pool: Pool, incident_id: int) -> asyncpg.Record:
    async with pool.acquire() as conn:
        row = await store.get(conn, incident_id)
    if row is None:
        raise _not_found(incident_id)
    return row


async def update_incident(
    pool: Pool,
    actor: Principal,
    incident_id: int,
    changes: dict[str, Any],
    *,
    expected_version: int,
) -> asyncpg.Record:
    """Change fields if the caller saw the current version (no lost updates)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await store.get(conn, incident_id, for_update=True)
        if row is None:
            raise _not_found(incident_id)
        _check_version(row, expected_version)
        real = {k: v for k, v in changes.items() if row[k] != v}
        if not real:
            return row
        updated, _entry = await change_fields(conn, actor, row, real, now=_now())
        return updated


async def transition_incident(
    pool: Pool,
    actor: Principal,
    incident_id: int,
    target: Status,
    *,
    note: str | None = None,
    expected_version: int | None = None,
) -> asyncpg.Record:
    """Move an incident along its lifecycle; the row lock serialises concurrent moves."""
    async with pool.acquire() as conn, conn.transaction():
        row = await store.get(conn, incident_id, for_update=True)
        if row is None:
            raise _not_found(incident_id)
        _check_version(row, expected_version)
        now = _now()
        try:
            nxt = transition(Lifecycle.of(row), target, now)
        except TransitionError as exc:
            raise InvalidTransitionError(
                str(exc),
                current_status=exc.current.value,
                allowed=[s.value for s in exc.allowed],
            ) from None
        updated, _entry = await move(conn, actor, row, nxt, now=now, note=note)
        return updated


async def add_comment(pool: Pool, actor: Principal, incident_id: int, body: str) -> asyncpg.Record:
    async with pool.acquire() as conn, conn.transaction():
        row = await store.get(conn, incident_id, for_update=True)
        if row is None:
            raise _not_found(incident_id)
        now = _now()
        entry = await store.append_timeline(
            conn, incident_id, actor=actor.subject, kind="comment", at=now, note=body
        )
        await audit.record(
            conn,
            actor,
            "incident.comment",
            target=display_ref(incident_id),
            after={"timeline_id": entry["id"], "body": body},
        )
        await notify(
            conn,
            EventKind.COMMENTED,
            incident_id,
            at=now,
            details={"timeline_id": entry["id"], "comment": body},
        )
        return entry


async def get_timeline(
    pool: Pool, incident_id: int, *, after_id: int, limit: int
) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        if await store.get(conn, incident_id) is None:
            raise _not_found(incident_id)
        return await store.timeline(conn, incident_id, after_id=after_id, limit=limit)


async def list_incidents(
    pool: Pool, flt: store.ListFilter, *, before_id: int | None, limit: int
) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await store.list_incidents(conn, flt, before_id=before_id, limit=limit)
