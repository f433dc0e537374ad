"""Signals use cases: register streams, ingest batches, score them, raise incidents.

A batch is one transaction: the streams are locked (in id order), new points are
scored with each stream's active model, stored with their scores, the hysteresis
state advances, and an anomaly episode that starts opens (or finds) the stream's
incident in that same transaction. Retrying a batch is safe: points already stored
(same stream and timestamp) are counted as duplicates and change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
import structlog

from firewatch.auth.principal import Principal
from firewatch.detection import anomaly, artifacts, features, incidents, registry, store
from firewatch.detection.model import (
    Point,
    by_stream,
    category_of,
    duplicate_positions,
    episodes,
    group_key,
    tail_flags,
)
from firewatch.errors import NotFoundError, UnprocessableError
from firewatch.incidents.model import display_ref
from firewatch.observability import metrics, tracing
from firewatch.runtime.database import Conn, PgPool
from firewatch.settings import Settings

log = structlog.get_logger(__name__)

DETECTOR_ACTOR = "firewatch-detector"


@dataclass(frozen=True, slots=True)
class StreamSpec:
    name: str
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    severity: int = 3
    service: str | None = None
    team: str | None = None


async def register_stream(
    pool: PgPool, actor: Principal, spec: StreamSpec
) -> tuple[asyncpg.Record, bool]:
    async with pool.acquire() as conn:
        return await store.upsert_stream(
            conn,
            name=spec.name,
            description=spec.description,
            labels=spec.labels,
            severity=spec.severity,
            service=spec.service,
            team=spec.team,
            actor=actor.subject,
        )


async def get_stream(pool: PgPool, name: str) -> asyncpg.Record:
    async with pool.acquire() as conn:
        row = await store.get_stream(conn, name)
    if row is None:
        raise NotFoundError(f"signal stream {name!r} does not exist")
    return row


async def list_streams(pool: PgPool, *, after_id: int, limit: int) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await store.list_streams(conn, after_id=after_id, limit=limit)


async def points(
    pool: PgPool, name: str, start: datetime | None, end: datetime | None, limit: int
) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        stream = await store.get_stream(conn, name)
        if stream is None:
            raise NotFoundError(f"signal stream {name!r} does not exist")
        return await store.points_between(conn, stream["id"], start, end, limit)


def _point_errors(positions: list[int], name: str, msg: str) -> list[dict[str, Any]]:
    """``errors`` naming points of the batch as a request validation 422 would
    (``body.points.3.ts``); the first 20."""
    return [
        {
            "loc": ["body", "points", str(i), name],
            "field": f"body.points.{i}.{name}",
            "type": "value_error",
            "msg": msg,
        }
        for i in positions[:20]
    ]


def check_batch(batch: list[Point], settings: Settings, now: datetime) -> None:
    """Refuse the batch as a whole (422) when any point is unusable."""
    if len(batch) > settings.signals_max_batch:
        raise UnprocessableError(
            f"a batch holds at most {settings.signals_max_batch} points; this one has "
            f"{len(batch)}: split it",
            field="body.points",
        )
    dupes = duplicate_positions(batch)
    if dupes:
        raise UnprocessableError(
            "a batch may not hold two points of one stream with the same timestamp",
            errors=_point_errors(dupes, "ts", "duplicate timestamp of its stream"),
        )
    limit = now + timedelta(seconds=settings.signals_max_future_seconds)
    future = [i for i, p in enumerate(batch) if p.ts > limit]
    if future:
        raise UnprocessableError(
            "points may not be from the future (beyond the allowed clock skew)",
            errors=_point_errors(future, "ts", "in the future"),
        )


@dataclass(slots=True)
class Ingested:
    """Per-stream results, the timeline entries written (to publish after commit) and
    what the metrics need."""

    streams: list[dict[str, Any]]
    events: list[dict[str, Any]] = field(default_factory=list)
    scores: dict[str, list[float]] = field(default_factory=dict)
    opened_severities: list[int] = field(default_factory=list)


async def ingest(
    pool: PgPool, settings: Settings, actor: Principal, batch: list[Point]
) -> Ingested:
    check_batch(batch, settings, datetime.now(UTC))
    grouped = by_stream(batch)
    out = Ingested(streams=[])
    async with pool.acquire() as conn, conn.transaction():
        rows = await store.lock_streams(conn, sorted(grouped))
        unknown = sorted(set(grouped) - {r["name"] for r in rows})
        if unknown:
            missing = set(unknown)
            raise UnprocessableError(
                f"unknown signal streams: {', '.join(unknown[:10])}; register each with "
                "PUT /api/v1/signals/streams/{name} first",
                errors=_point_errors(
                    [i for i, p in enumerate(batch) if p.stream in missing],
                    "stream",
                    "unknown stream",
                ),
                unknown_streams=unknown[:100],
            )
        for row in rows:
            out.streams.append(await _ingest_stream(conn, settings, row, grouped[row["name"]], out))
    return out


async def _ingest_stream(
    conn: Conn, settings: Settings, stream: asyncpg.Record, pts: list[Point], out: Ingested
) -> dict[str, Any]:
    existing = await store.existing_timestamps(conn, stream["id"], [p.ts for p in pts])
    new = [p for p in pts if p.ts not in existing]
    processed_until: datetime | None = stream["scored_until"]
    late = [p for p in new if processed_until is not None and p.ts <= processed_until]
    fresh = [p for p in new if processed_until is None or p.ts > processed_until]
    result: dict[str, Any] = {
        "stream": stream["name"],
        "accepted": len(new),
        "duplicates": len(pts) - len(new),
        "late": len(late),
        "scored": 0,
        "anomalies": 0,
        "alarms": 0,
        "model_version": None,
        "model_error": None,
        "incident": None,
        "incident_created": False,
    }
    model: registry.ActiveModel | None = None
    try:
        model = await registry.model_for(settings, stream)
    except artifacts.ArtifactError as exc:
        # Points are kept; they are not scored by a file we cannot trust.
        log.error("detection model refused", stream=stream["name"], reason=str(exc))
        result["model_error"] = "the active model failed its integrity check; not scored"
    n_fresh = len(fresh)
    scores: list[float | None] = [None] * n_fresh
    flag_list: list[bool | None] = [None] * n_fresh
    alarm_list: list[bool | None] = [None] * n_fresh
    recent = np.asarray(stream["recent_flags"], dtype=bool)
    in_anomaly = bool(stream["in_anomaly"])
    started: list[int] = []
    if model is not None and fresh:
        params = model.params
        hist_ts, hist_values, _ = await store.history(
            conn, stream["id"], fresh[0].ts, params.window
        )
        values = np.array(hist_values + [p.value for p in fresh], dtype=np.float64)
        epochs = np.array([t.timestamp() for t in hist_ts] + [p.ts.timestamp() for p in fresh])
        with tracing.scoring_span(
            stream["name"], model_version=str(model.version), points=n_fresh
        ) as span:
            rows = features.compute(
                values, epochs, params.window, model.profile, start=len(hist_values)
            )
            raw = anomaly.score(model.estimator, rows)
            flags = anomaly.flags(raw, model.threshold)
            span.set_attribute("firewatch.detection.anomalies", int(flags.sum()))
        alarms = anomaly.hysteresis(flags, recent, params.k, params.n)
        ep = episodes(alarms, flags, recent, params.n, in_anomaly)
        started, in_anomaly = ep.started_at, ep.in_anomaly
        recent = np.asarray(tail_flags(recent, flags, params.n), dtype=bool)
        scores = [None if np.isnan(s) else float(s) for s in raw]
        flag_list = [bool(f) for f in flags]
        alarm_list = [bool(a) for a in alarms]
        result["scored"] = int((~np.isnan(raw)).sum())
        result["anomalies"] = int(flags.sum())
        result["alarms"] = int(alarms.sum())
        result["model_version"] = model.version
        out.scores[stream["name"]] = [float(x) for x in raw[~np.isnan(raw)]]
    ordered = late + fresh
    nothing: list[None] = [None] * len(late)
    await store.insert_points(
        conn,
        stream["id"],
        ts=[p.ts for p in ordered],
        values=[p.value for p in ordered],
        labels=[p.labels or None for p in ordered],
        scores=[*nothing, *scores],
        anomaly=[*nothing, *flag_list],
        alarm=[*nothing, *alarm_list],
        model_id=model.model_id if model is not None else None,
    )
    await store.update_stream_state(
        conn,
        stream["id"],
        last_ts=max((p.ts for p in new), default=None),
        scored_until=fresh[-1].ts if fresh else None,
        recent_flags=[bool(x) for x in recent],
        in_anomaly=in_anomaly,
    )
    if started:
        first = fresh[started[0]]
        incident, created = await _raise_incident(
            conn, stream, first, scores[started[0]], model, out.events
        )
        result["incident"] = display_ref(incident["id"])
        result["incident_created"] = created
        if created:
            out.opened_severities.append(incident["severity"])
    return result


async def _raise_incident(
    conn: Conn,
    stream: asyncpg.Record,
    point: Point,
    score: float | None,
    model: registry.ActiveModel | None,
    events: list[dict[str, Any]],
) -> tuple[asyncpg.Record, bool]:
    labels: dict[str, str] = dict(stream["labels"])
    labels["stream"] = stream["name"]
    version = model.version if model is not None else "-"
    description = (
        f"Anomaly detected on signal stream {stream['name']} at {point.ts.isoformat()}: "
        f"value {point.value:g}, anomaly score {score if score is not None else float('nan'):.3f} "
        f"(model v{version}, threshold {model.threshold if model else float('nan'):.3f})."
    )
    row, created = await incidents.upsert_for_stream(
        conn,
        group_key=group_key(stream["name"]),
        title=f"Anomaly on {stream['name']}"[:300],
        description=description,
        severity=stream["severity"],
        category=category_of(labels),
        service=stream["service"],
        team=stream["team"],
        labels=labels,
        actor=DETECTOR_ACTOR,
        events=events,
    )
    log.info(
        "anomaly incident",
        stream=stream["name"],
        incident=display_ref(row["id"]),
        created=created,
    )
    return row, created


DRIFT_SOURCE = "signals-drift"


async def drift(
    pool: PgPool,
    settings: Settings,
    name: str,
    *,
    reference: timedelta,
    recent: timedelta,
    check: bool = False,
) -> dict[str, Any]:
    """PSI of the stream's recent window against the reference window just before it.

    With ``check``, the result is stored as the stream's latest drift check (exported
    as ``firewatch_detection_drift_psi{stream}``) and, with
    ``FIREWATCH_DRIFT_OPENS_INCIDENT``, a significant shift opens (or finds) a
    ``data_drift`` incident (source ``signals-drift``, group key = stream).
    """
    from firewatch.detection import drift as psi_model

    now = datetime.now(UTC)
    split = now - recent
    async with pool.acquire() as conn:
        stream = await store.get_stream(conn, name)
        if stream is None:
            raise NotFoundError(f"signal stream {name!r} does not exist")
        ref = await store.points_between(conn, stream["id"], split - reference, split, 200_000)
        cur = await store.points_between(conn, stream["id"], split, now, 200_000)
    try:
        result = psi_model.psi([r["value"] for r in ref], [r["value"] for r in cur])
    except ValueError as exc:
        raise UnprocessableError(str(exc), field=["query.reference", "query.recent"]) from None
    result.update(
        {
            "stream": name,
            "reference": {"from": split - reference, "to": split, "points": len(ref)},
            "recent": {"from": split, "to": now, "points": len(cur)},
            "thresholds": {"moderate": psi_model.MODERATE, "significant": psi_model.SIGNIFICANT},
            "incident": None,
        }
    )
    if check:  # the latest check per stream is what /metrics exports
        async with pool.acquire() as conn:
            await store.record_drift(
                conn,
                stream["id"],
                psi=result["psi"],
                level=result["level"],
                reference_seconds=reference.total_seconds(),
                recent_seconds=recent.total_seconds(),
                reference_points=len(ref),
                recent_points=len(cur),
            )
    if check and settings.drift_opens_incident and result["level"] == "significant":
        labels: dict[str, str] = dict(stream["labels"])
        labels["stream"] = name
        from firewatch.alerts.service import upsert_group_incident

        async with pool.acquire() as conn, conn.transaction():
            row, created = await upsert_group_incident(
                conn,
                source=DRIFT_SOURCE,
                group_key=name,
                title=f"Distribution drift on {name}"[:300],
                description=(
                    f"PSI {result['psi']} between the last {recent} and the {reference} "
                    f"before it (significant >= {psi_model.SIGNIFICANT})."
                ),
                severity=stream["severity"],
                category="data_drift",
                service=stream["service"],
                team=stream["team"],
                labels=labels,
                actor=DETECTOR_ACTOR,
            )
        if created:  # committed: counted as every other opened incident is
            metrics.record_incident_opened(row["severity"])
        result["incident"] = display_ref(row["id"])
        result["incident_created"] = created
    return result
