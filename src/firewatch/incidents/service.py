"""Incident use cases, one transaction each, with their timeline, audit entries and
notifications in that transaction."""

from __future__ import annotations

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
    snapshot = created_snapshot(new, source, group_key)
    return await store.create(
        conn,
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
        source=source,
        group_key=group_key,
        audit_details={"source": source} if source is not None else None,
        traceparent=tracing.current_traceparent(),
        with_timeline_id=with_timeline_id,
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


async def create_incident(pool: Pool, actor: Principal, new: NewIncident) -> asyncpg.Record:
    async with pool.acquire() as conn:  # one statement: its own transaction
        row = await open_incident(conn, actor, new, now=_now())
    metrics.record_incident_opened(row["severity"])
    return row


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
