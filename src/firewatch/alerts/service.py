"""Alert ingestion use cases: one transaction per delivery, set-based SQL.

Each delivery, in one transaction: serialise on the group, find-or-open (or reopen)
the group's single active incident, upsert every alert by fingerprint in one
statement, write timeline entries for alerts joining/resolving/re-firing, move the
incident when its alerts say so, with the audit entries and notifications of
every incident change. The caller answers 2xx only after the commit, so an
acknowledged alert is durable.

Incidents are opened, reopened, moved and escalated through the same functions
a responder's changes go through (``firewatch.incidents.service``: ``open_incident``,
``move``, ``change_fields``), so the timeline, the audit log and the notifications
are written alike whoever makes the change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from firewatch.alerts import store
from firewatch.alerts.alertmanager import Notification
from firewatch.alerts.grouping import (
    AlertChange,
    IncomingAlert,
    IncomingGroup,
    MappingRules,
    classify,
    follow_alerts,
    incident_fields,
    should_reopen,
    system_transition,
)
from firewatch.auth.principal import Principal
from firewatch.incidents import service as incidents_service
from firewatch.incidents.model import (
    ACTIVE_STATUSES,
    Lifecycle,
    Status,
    display_ref,
    transition,
)
from firewatch.observability import tracing
from firewatch.runtime.database import Conn, PgPool
from firewatch.settings import Settings

ALERTMANAGER_SOURCE = "alertmanager"
DEFAULT_REOPEN_WINDOW = 3600.0
MAX_LISTED_ALERTS = 50


@dataclass(frozen=True, slots=True)
class IngestPolicy:
    rules: MappingRules = field(default_factory=MappingRules)
    reopen_window: float = DEFAULT_REOPEN_WINDOW
    auto_resolve: bool = False
    acquire_timeout: float = 2.0


def policy_from_settings(settings: Settings) -> IngestPolicy:
    return IngestPolicy(
        rules=MappingRules(
            severity_label=settings.alert_severity_label,
            severity_map=dict(settings.alert_severity_map),
            default_severity=settings.alert_default_severity,
            category_label=settings.alert_category_label,
            category_map={k: v.value for k, v in settings.alert_category_map.items()},
            service_label=settings.alert_service_label,
            team_label=settings.alert_team_label,
        ),
        reopen_window=settings.alert_reopen_window,
        auto_resolve=settings.alert_auto_resolve,
        acquire_timeout=settings.ingest_acquire_timeout,
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _principal(actor: Principal | str) -> Principal:
    """The actor of timeline and audit entries: a caller, or a named system actor
    (``"detector"``) for changes no request made."""
    if isinstance(actor, Principal):
        return actor
    return Principal(subject=actor, kind="system", role="system")


async def upsert_group_incident(
    conn: Conn,
    *,
    source: str,
    group_key: str,
    title: str,
    severity: int,
    category: str,
    service: str | None,
    team: str | None,
    labels: dict[str, str],
    actor: Principal | str,
    description: str = "",
    reopen_window: float = DEFAULT_REOPEN_WINDOW,
    now: datetime | None = None,
    events: list[dict[str, Any]] | None = None,
    alerts: int = 1,
) -> tuple[asyncpg.Record, bool]:
    """Find, reopen or open the single active incident of ``(source, group_key)``.

    Call it inside your own transaction (``async with conn.transaction():``); it is
    the one path by which alerts, webhook events and detector anomalies become
    incidents, so they group, reopen and notify the same way.

    - It takes a transaction-scoped advisory lock on the group, so concurrent
      callers for one group run one after the other; the partial unique index
      ``incidents_open_group_uq`` (one incident per group in open, acknowledged,
      investigating or mitigated) is the guarantee underneath.
    - An active incident is returned as is (``created`` False); its severity is
      raised when ``severity`` is more severe (timeline ``severity_escalated``,
      notification ``incident.escalated``); it is never lowered automatically.
    - Otherwise, when the group's latest incident was resolved less than
      ``reopen_window`` seconds ago it is reopened (timeline ``reopened``,
      notification ``incident.reopened``, ``created`` False); else a new incident is
      opened (timeline ``created``, notification ``incident.opened``, ``created`` True).
      Closed incidents are final and never reopened.
    - ``actor`` (a Principal or a name such as ``"detector"``) is what the timeline
      records. ``events`` collects the timeline entries written, so the caller can
      publish them to the live stream (``firewatch.events.service.publish``) after
      its commit.

    Returns the incident row (the columns of ``incidents.store.COLUMNS``) and whether
    it was newly opened. It runs in a ``firewatch.grouping`` span (``alerts`` is the
    number of alerts being grouped), so the notifications it queues continue the
    trace from there.
    """
    new = incidents_service.NewIncident(
        title=title,
        severity=severity,
        category=category,
        description=description,
        service=service,
        team=team,
        labels=labels,
    )
    with tracing.grouping_span(alerts=alerts, group_key=group_key):
        return await _find_or_open(
            conn,
            _principal(actor),
            source,
            group_key,
            new,
            reopen_window=reopen_window,
            now=now or _now(),
            events=events,
        )


async def _find_or_open(
    conn: Conn,
    who: Principal,
    source: str,
    group_key: str,
    new: incidents_service.NewIncident,
    *,
    reopen_window: float,
    now: datetime,
    events: list[dict[str, Any]] | None,
) -> tuple[asyncpg.Record, bool]:
    await store.lock_group(conn, source, group_key)
    found = await store.group_incident(conn, source, group_key)
    if found is not None and Status(found["status"]) in ACTIVE_STATUSES:
        if new.severity >= found["severity"]:
            return found, False
        raised = {"severity": new.severity}
        row, entry = await incidents_service.change_fields(
            conn, who, found, raised, now=now, timeline_kind="severity_escalated"
        )
        _collect(events, entry)
        return row, False

    if (
        found is not None
        and found["status"] == Status.RESOLVED.value
        and should_reopen(found["resolved_at"], now, reopen_window)
    ):
        row, entry = await incidents_service.move(
            conn,
            who,
            found,
            transition(Lifecycle.of(found), Status.OPEN, now),
            now=now,
            note="the group fired again within the reopen window",
        )
        _collect(events, entry)
        return row, False

    row = await incidents_service.open_incident(
        conn, who, new, now=now, source=source, group_key=group_key, with_timeline_id=True
    )
    if events is not None:
        events.append(
            {
                "id": row["timeline_id"],
                "incident_id": row["id"],
                "at": now,
                "actor": who.subject,
                "kind": "created",
                "before": None,
                "after": incidents_service.created_snapshot(new, source, group_key),
                "note": None,
            }
        )
    return row, True


def _collect(events: list[dict[str, Any]] | None, entry: asyncpg.Record) -> None:
    if events is not None:
        events.append(dict(entry))


@dataclass(slots=True)
class IngestResult:
    incident_id: int | None
    created: bool = False
    alerts: int = 0
    changed: int = 0
    status: str | None = None
    severity: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "incident": display_ref(self.incident_id) if self.incident_id else None,
            "created": self.created,
            "status": self.status,
            "alerts": self.alerts,
            "changed": self.changed,
        }


def group_from_alertmanager(payload: Notification) -> IncomingGroup:
    # Alertmanager never repeats a fingerprint within a group; if a sender does, the
    # last one wins (a single INSERT ... ON CONFLICT cannot touch a row twice).
    by_fp: dict[str, IncomingAlert] = {}
    for a in payload.alerts:
        by_fp[a.fingerprint] = IncomingAlert(
            fingerprint=a.fingerprint,
            status=a.status,
            labels=a.labels,
            annotations=a.annotations,
            starts_at=a.starts_at,
            ends_at=a.ends_at,
            generator_url=a.generator_url or None,
            runbook_url=a.annotations.get("runbook_url") or a.annotations.get("runbook") or None,
        )
    return IncomingGroup(
        source=ALERTMANAGER_SOURCE,
        group_key=payload.group_key,
        group_labels=payload.group_labels,
        common_labels=payload.common_labels,
        common_annotations=payload.common_annotations,
        alerts=list(by_fp.values()),
    )


async def ingest_group(
    pool: PgPool,
    actor: Principal | str,
    group: IncomingGroup,
    policy: IngestPolicy,
    *,
    auto_resolve: bool | None = None,
) -> IngestResult:
    """Store one delivery of a group of alerts in one transaction (see module doc)."""
    now = _now()
    who = _principal(actor)
    fields = incident_fields(
        group_labels=group.group_labels,
        common_labels=group.common_labels,
        common_annotations=group.common_annotations,
        alerts=[(a.status, a.labels) for a in group.alerts],
        rules=policy.rules,
    )
    rows = store.AlertRows.build(
        [
            (
                a.fingerprint,
                a.status,
                a.labels,
                a.annotations,
                a.starts_at,
                a.ends_at,
                a.generator_url,
                a.runbook_url,
            )
            for a in group.alerts
        ]
    )
    any_firing = any(a.status == "firing" for a in group.alerts)
    result = IngestResult(incident_id=None, alerts=len(group.alerts))
    async with pool.acquire(timeout=policy.acquire_timeout) as conn, conn.transaction():
        if any_firing:
            incident, result.created = await upsert_group_incident(
                conn,
                source=group.source,
                group_key=group.group_key,
                title=fields.title,
                severity=fields.severity,
                category=fields.category,
                service=fields.service,
                team=fields.team,
                labels=fields.labels,
                description=fields.description,
                actor=who,
                reopen_window=policy.reopen_window,
                now=now,
                events=result.events,
                alerts=len(group.alerts),
            )
        else:
            # Only resolutions: never open an incident for them. Record them on the
            # group's active incident, else on its latest one (already resolved by a
            # responder, say); a group we never saw firing is acknowledged and dropped.
            with tracing.grouping_span(alerts=len(group.alerts), group_key=group.group_key):
                await store.lock_group(conn, group.source, group.group_key)
                found = await store.group_incident(conn, group.source, group.group_key)
            if found is None:
                return result
            incident = found
        result.incident_id = incident["id"]
        changed = await store.upsert_alerts(
            conn, incident_id=incident["id"], source=group.source, rows=rows, now=now
        )
        result.changed = len(changed)
        await _alert_timeline(conn, incident["id"], who.subject, now, changed, result.events)
        status = Status(incident["status"])
        if status not in (Status.RESOLVED, Status.CLOSED) and changed:
            new_firing = any(
                classify(r["previous"], r["status"]) in (AlertChange.JOINED, AlertChange.REFIRED)
                and r["status"] == "firing"
                for r in changed
            )
            # Only a resolution can bring the count to zero; otherwise a changed row is
            # firing, so the count is at least one and need not be read.
            if any(r["status"] == "resolved" for r in changed):
                firing = await store.firing_count(conn, incident["id"])
            else:
                firing = 1
            target = follow_alerts(
                status,
                firing=firing,
                new_firing=new_firing,
                auto_resolve=policy.auto_resolve if auto_resolve is None else auto_resolve,
            )
            if target is not None:
                note = (
                    "all alerts resolved"
                    if firing == 0
                    else "an alert fired again after mitigation"
                )
                incident = await _system_move(
                    conn, who, incident, target, now, result.events, note=note
                )
        result.status = incident["status"]
        result.severity = incident["severity"]
    return result


async def _alert_timeline(
    conn: Conn,
    incident_id: int,
    actor: str,
    now: datetime,
    changed: Sequence[asyncpg.Record],
    events: list[dict[str, Any]],
) -> None:
    buckets: dict[AlertChange, list[dict[str, Any]]] = {}
    for r in changed:
        kind = classify(r["previous"], r["status"])
        if kind is not None:
            buckets.setdefault(kind, []).append(
                {
                    "fingerprint": r["fingerprint"],
                    "alertname": r["alertname"],
                    "status": r["status"],
                }
            )
    if not buckets:
        return
    kinds = [k for k in AlertChange if k in buckets]
    afters = [{"count": len(buckets[k]), "alerts": buckets[k][:MAX_LISTED_ALERTS]} for k in kinds]
    entries = await store.append_timeline_many(
        conn, incident_id, actor=actor, at=now, kinds=[k.value for k in kinds], afters=afters
    )
    events.extend(dict(e) for e in entries)


async def _system_move(
    conn: Conn,
    actor: Principal,
    incident: asyncpg.Record,
    target: Status,
    now: datetime,
    events: list[dict[str, Any]],
    *,
    note: str,
    human: bool = False,
) -> asyncpg.Record:
    """Move ``incident`` because its alerts (or, ``human``, an integration acting for
    a person) say so; see ``grouping.system_transition`` for what differs."""
    current = Lifecycle.of(incident)
    nxt = transition(current, target, now) if human else system_transition(current, target, now)
    row, entry = await incidents_service.move(conn, actor, incident, nxt, now=now, note=note)
    events.append(dict(entry))
    return row


async def acknowledge_group(
    pool: PgPool, actor: Principal | str, *, source: str, group_key: str, policy: IngestPolicy
) -> IngestResult:
    """An integration acknowledged the group's incident (PagerDuty ``acknowledge``)."""
    now = _now()
    result = IngestResult(incident_id=None)
    async with pool.acquire(timeout=policy.acquire_timeout) as conn, conn.transaction():
        await store.lock_group(conn, source, group_key)
        incident = await store.active_incident(conn, source, group_key)
        if incident is None:
            return result
        result.incident_id = incident["id"]
        if incident["status"] == Status.OPEN.value:
            incident = await _system_move(
                conn,
                _principal(actor),
                incident,
                Status.ACKNOWLEDGED,
                now,
                result.events,
                note="acknowledged by the integration",
                human=True,
            )
        result.status = incident["status"]
    return result


async def list_alerts(
    pool: PgPool, incident_id: int, *, after_id: int, limit: int
) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await store.list_alerts(conn, incident_id, after_id=after_id, limit=limit)
