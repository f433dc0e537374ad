"""HTTP routes for signals, their streams and the model registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Path, Query, Request, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from redis.asyncio import Redis
from starlette.responses import Response

from firewatch.auth.principal import Principal
from firewatch.auth.rbac import Permission, require
from firewatch.detection import registry, service, similar_service
from firewatch.detection.anomaly import DetectorParams
from firewatch.detection.model import STREAM_NAME_PATTERN, Point
from firewatch.errors import NotFoundError, UnprocessableError
from firewatch.events import service as events
from firewatch.http import deps
from firewatch.http.pagination import decode_cursor, encode_cursor
from firewatch.http.responses import JSONResponse
from firewatch.http.validation import Labels, Name, Note, ShortText
from firewatch.incidents.model import parse_ref
from firewatch.observability import metrics
from firewatch.runtime.database import PgPool
from firewatch.settings import Settings

router = APIRouter(prefix="/api/v1/signals", tags=["signals"])
similar_router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])

# Reading streams, points and models: analytics:read. Sending points: signals:write
# (integration API keys). Streams and the model registry: models:admin.
Caller = Annotated[Principal, require(Permission.ANALYTICS_READ)]
Reader = Annotated[Principal, require(Permission.INCIDENTS_READ)]
Writer = Annotated[Principal, require(Permission.SIGNALS_WRITE)]
Admin = Annotated[Principal, require(Permission.MODELS_ADMIN)]
Pool = Annotated[PgPool, Depends(deps.pool)]
Config = Annotated[Settings, Depends(deps.settings)]
RedisClient = Annotated[Redis, Depends(deps.redis_client)]
StreamName = Annotated[str, Path(pattern=STREAM_NAME_PATTERN, max_length=200)]
StreamField = Annotated[str, Field(pattern=STREAM_NAME_PATTERN, max_length=200)]
SeverityText = Annotated[str, Field(pattern=r"^(?i:sev)[1-4]$", examples=["SEV3"])]


class PointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stream: StreamField
    ts: AwareDatetime
    value: Annotated[float, Field(allow_inf_nan=False)]
    labels: Labels = Field(default_factory=dict)


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: list[PointIn] = Field(min_length=1)


class StreamIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: ShortText = ""
    labels: Labels = Field(
        default_factory=dict, description="`category` names the incident category"
    )
    severity: SeverityText = "SEV3"
    service: Name | None = None
    team: Name | None = None


_TRAIN_PARAMS = ("window", "n_estimators", "max_samples", "contamination")


class TrainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    activate: bool = False
    window: Annotated[int, Field(ge=10, le=2000)] = 60
    n_estimators: Annotated[int, Field(ge=10, le=1000)] = 100
    max_samples: Annotated[int, Field(ge=16, le=100_000)] = 256
    contamination: Annotated[float, Field(ge=0.0001, le=0.2)] = 0.02
    k: Annotated[int, Field(ge=1, le=100)] = 3
    n: Annotated[int, Field(ge=1, le=100)] = 5
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


class QuarantineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[Note, Field(min_length=1)]


def stream_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "name": row["name"],
        "description": row["description"],
        "labels": row["labels"],
        "severity": f"SEV{row['severity']}",
        "service": row["service"],
        "team": row["team"],
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "last_ts": row["last_ts"],
        "in_anomaly": row["in_anomaly"],
    }


def model_json(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    out.pop("path")
    out.pop("stream_id")
    return out


@router.post("", summary="Ingest a batch of metric observations (scored on arrival)")
async def ingest(
    body: BatchIn, caller: Writer, pool: Pool, settings: Config, redis: RedisClient
) -> Response:
    batch = [Point(p.stream, p.ts, p.value, p.labels or None) for p in body.points]
    done = await service.ingest(pool, settings, caller, batch)
    await events.publish(redis, done.events)
    for stream, scores in done.scores.items():
        for score in scores:
            metrics.observe_score(stream, score)
    for result in done.streams:
        for _ in range(result["anomalies"]):
            metrics.record_anomaly(result["stream"])
    for severity in done.opened_severities:
        metrics.record_incident_opened(severity)
    results = done.streams
    return JSONResponse(
        {
            "accepted": sum(r["accepted"] for r in results),
            "duplicates": sum(r["duplicates"] for r in results),
            "streams": results,
        }
    )


@router.put(
    "/streams/{name}",
    summary="Register or update a signal stream",
    responses={
        201: {"description": "Registered (a new stream)", "content": {"application/json": {}}}
    },
)
async def put_stream(name: StreamName, body: StreamIn, caller: Admin, pool: Pool) -> Response:
    row, created = await service.register_stream(
        pool,
        caller,
        service.StreamSpec(
            name=name,
            description=body.description,
            labels=body.labels,
            severity=int(body.severity[-1]),
            service=body.service,
            team=body.team,
        ),
    )
    code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return JSONResponse(stream_json(row), status_code=code)


@router.get("/streams", summary="List signal streams")
async def list_streams(
    caller: Caller,
    pool: Pool,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    after = decode_cursor(cursor) if cursor else 0
    rows = await service.list_streams(pool, after_id=after, limit=limit)
    nxt = encode_cursor(rows[-1]["id"]) if len(rows) == limit else None
    return JSONResponse({"items": [stream_json(r) for r in rows], "next_cursor": nxt})


@router.get("/streams/{name}", summary="One signal stream")
async def get_stream(name: StreamName, caller: Caller, pool: Pool) -> Response:
    return JSONResponse(stream_json(await service.get_stream(pool, name)))


@router.get("/streams/{name}/points", summary="Stored points with their scores")
async def get_points(
    name: StreamName,
    caller: Caller,
    pool: Pool,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Response:
    naive = [f"query.{k}" for k, v in (("from", start), ("to", end)) if v and v.tzinfo is None]
    if naive:
        raise UnprocessableError("from and to need a UTC offset (RFC 3339)", field=naive)
    rows = await service.points(pool, name, start, end, limit)
    return JSONResponse({"items": [dict(r) for r in rows]})


@router.post(
    "/streams/{name}/models",
    status_code=status.HTTP_201_CREATED,
    summary="Train a model version on the stream's history",
)
async def train(
    name: StreamName, body: TrainIn, caller: Admin, pool: Pool, settings: Config
) -> Response:
    try:
        params = DetectorParams(
            window=body.window,
            n_estimators=body.n_estimators,
            max_samples=body.max_samples,
            contamination=body.contamination,
            k=body.k,
            n=body.n,
            seed=body.seed,
        )
    except ValueError as exc:
        reason = str(exc)  # "<parameter> must be ...", or "need 1 <= k <= n <= 100"
        named = [f"body.{p}" for p in _TRAIN_PARAMS if reason.startswith(f"{p} ")]
        raise UnprocessableError(reason, field=named or ["body.k", "body.n"]) from None
    row = await registry.train(
        pool,
        settings,
        caller,
        name,
        since=body.since,
        until=body.until,
        params=params,
        activate=body.activate,
    )
    return JSONResponse(model_json(row), status_code=201)


@router.get("/streams/{name}/models", summary="Model versions, newest first")
async def list_models(name: StreamName, caller: Caller, pool: Pool) -> Response:
    rows = await registry.list_models(pool, name)
    return JSONResponse({"items": [model_json(r) for r in rows]})


@router.post("/streams/{name}/models/rollback", summary="Re-activate the previous model")
async def rollback(name: StreamName, caller: Admin, pool: Pool) -> Response:
    return JSONResponse(model_json(await registry.rollback(pool, caller, name)))


@router.post("/streams/{name}/models/{version}/activate", summary="Make a version score")
async def activate(
    name: StreamName, version: Annotated[int, Path(ge=1, le=2**31 - 1)], caller: Admin, pool: Pool
) -> Response:
    return JSONResponse(model_json(await registry.activate(pool, caller, name, version)))


@router.post("/streams/{name}/models/{version}/quarantine", summary="Take a version out of service")
async def quarantine(
    name: StreamName,
    version: Annotated[int, Path(ge=1, le=2**31 - 1)],
    body: QuarantineIn,
    caller: Admin,
    pool: Pool,
) -> Response:
    model, active = await registry.quarantine(pool, caller, name, version, body.reason)
    return JSONResponse(
        {"quarantined": model_json(model), "active": model_json(active) if active else None}
    )


def _span(text: str, name: str) -> timedelta:
    from firewatch.analytics.windows import parse_window

    try:
        w = parse_window(text, datetime.now(UTC))
    except ValueError as exc:
        raise UnprocessableError(f"{name}: {exc}", field=f"query.{name}") from None
    return w.end - w.start


async def _drift(
    pool: PgPool, settings: Settings, name: str, reference: str, recent: str, *, check: bool
) -> Response:
    data = await service.drift(
        pool,
        settings,
        name,
        reference=_span(reference, "reference"),
        recent=_span(recent, "recent"),
        check=check,
    )
    return JSONResponse(data)


@router.get("/streams/{name}/drift", summary="PSI of the recent window against a reference")
async def get_drift(
    name: StreamName,
    caller: Caller,
    pool: Pool,
    settings: Config,
    reference: Annotated[str, Query(max_length=10)] = "7d",
    recent: Annotated[str, Query(max_length=10)] = "1d",
) -> Response:
    return await _drift(pool, settings, name, reference, recent, check=False)


@router.post(
    "/streams/{name}/drift/check",
    summary="Compute PSI and, if enabled, open an incident on significant drift",
)
async def check_drift(
    name: StreamName,
    caller: Admin,
    pool: Pool,
    settings: Config,
    reference: Annotated[str, Query(max_length=10)] = "7d",
    recent: Annotated[str, Query(max_length=10)] = "1d",
) -> Response:
    return await _drift(pool, settings, name, reference, recent, check=True)


@similar_router.get("/{ref}/similar", summary="Similar past incidents and their resolutions")
async def similar(
    ref: str,
    request: Request,
    caller: Reader,
    pool: Pool,
    settings: Config,
    k: Annotated[int, Query(ge=1, le=50)] = 5,
) -> Response:
    incident_id = parse_ref(ref)
    if incident_id is None:
        raise NotFoundError(f"{ref!r} is not an incident reference (expected INC-<n>)")
    state: similar_service.SimilarState = request.app.state.similar
    data = await similar_service.similar(
        state, pool, incident_id, k, settings.similar_rebuild_seconds
    )
    return JSONResponse(data)
