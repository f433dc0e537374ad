"""Incident use cases, one transaction each, with their timeline in that transaction."""

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
from firewatch.observability import metrics
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


async def create_incident(pool: Pool, actor: Principal, new: NewIncident) -> asyncpg.Record:
    labels = new.labels or {}
    snapshot: dict[str, Any] = {
        "title": new.title,
        "severity": new.severity,
        "category": new.category,
        "status": Status.OPEN.value,
        "service": new.service,
        "team": new.team,
        "owner": new.owner,
    }
    async with pool.acquire() as conn:
        row = await store.create(
            conn,
            title=new.title,
            description=new.description,
            severity=new.severity,
            category=new.category,
            service=new.service,
            team=new.team,
            owner=new.owner,
            labels=labels,
            actor=actor.subject,
            snapshot=snapshot,
            actor_kind=actor.kind,
            after_digest=digest(snapshot),
            client=actor.client,
        )
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
        now = _now()
        updated = await store.update_fields(conn, incident_id, real, now)
        await store.append_timeline(
            conn,
            incident_id,
            actor=actor.subject,
            kind="updated",
            at=now,
            before={k: row[k] for k in real},
            after=real,
        )
        await audit.record(
            conn,
            actor,
            "incident.update",
            target=display_ref(incident_id),
            before={k: row[k] for k in real},
            after=real,
            details={"fields": sorted(real)},
        )
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
        current = Lifecycle(
            status=Status(row["status"]),
            opened_at=row["opened_at"],
            acknowledged_at=row["acknowledged_at"],
            mitigated_at=row["mitigated_at"],
            resolved_at=row["resolved_at"],
            closed_at=row["closed_at"],
            reopen_count=row["reopen_count"],
        )
        now = _now()
        try:
            nxt = transition(current, target, now)
        except TransitionError as exc:
            raise InvalidTransitionError(
                str(exc),
                current_status=exc.current.value,
                allowed=[s.value for s in exc.allowed],
            ) from None
        updated = await store.update_lifecycle(
            conn,
            incident_id,
            status=nxt.status.value,
            acknowledged_at=nxt.acknowledged_at,
            mitigated_at=nxt.mitigated_at,
            resolved_at=nxt.resolved_at,
            closed_at=nxt.closed_at,
            reopen_count=nxt.reopen_count,
            now=now,
        )
        await store.append_timeline(
            conn,
            incident_id,
            actor=actor.subject,
            kind="reopened" if target is Status.OPEN else "status_changed",
            at=now,
            before={"status": current.status.value},
            after={"status": nxt.status.value},
            note=note,
        )
        await audit.record(
            conn,
            actor,
            "incident.reopen" if target is Status.OPEN else "incident.transition",
            target=display_ref(incident_id),
            before={"status": current.status.value},
            after={"status": nxt.status.value},
        )
        return updated


async def add_comment(pool: Pool, actor: Principal, incident_id: int, body: str) -> asyncpg.Record:
    async with pool.acquire() as conn, conn.transaction():
        row = await store.get(conn, incident_id, for_update=True)
        if row is None:
            raise _not_found(incident_id)
        entry = await store.append_timeline(
            conn, incident_id, actor=actor.subject, kind="comment", at=_now(), note=body
        )
        await audit.record(
            conn,
            actor,
            "incident.comment",
            target=display_ref(incident_id),
            after={"timeline_id": entry["id"], "body": body},
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
