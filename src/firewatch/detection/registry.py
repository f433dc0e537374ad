"""The model registry: train, list, activate, roll back, quarantine; and the
per-process cache that makes every batch score with the model PostgreSQL says is
active.

Switching is real across workers and replicas because nothing is pushed: each
scoring transaction locks its stream row and reads the active model's id and
SHA-256 with it (one join); a worker whose cached model differs loads the new file
(checking its SHA-256) before scoring. So the batch after an activation commits is
scored by the new model in every process, and a quarantined model scores nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import structlog

from firewatch.auth.principal import Principal
from firewatch.detection import anomaly, artifacts, features, store
from firewatch.detection.anomaly import DetectorParams
from firewatch.errors import ConflictError, NotFoundError, UnprocessableError
from firewatch.runtime.database import PgPool
from firewatch.settings import Settings

log = structlog.get_logger(__name__)

ALGORITHM = "isolation_forest"
MAX_TRAIN_POINTS = 200_000
HOLDOUT_FRACTION = 0.2


@dataclass(frozen=True, slots=True)
class ActiveModel:
    model_id: int
    version: int
    sha256: str
    threshold: float
    params: DetectorParams
    profile: features.Profile
    estimator: Any


# stream id -> the model this process last loaded for it
_cache: dict[int, ActiveModel] = {}


def clear_cache() -> None:
    _cache.clear()


async def model_for(settings: Settings, stream: asyncpg.Record) -> ActiveModel | None:
    """The active model of a locked stream row (from :func:`store.lock_streams`).

    Raises :class:`artifacts.ArtifactError` when the file fails its integrity check.
    """
    model_id = stream["model_id"]
    if model_id is None:
        _cache.pop(stream["id"], None)
        return None
    cached = _cache.get(stream["id"])
    if (
        cached is not None
        and cached.model_id == model_id
        and cached.sha256 == stream["model_sha256"]
    ):
        return cached
    estimator = await asyncio.to_thread(
        artifacts.load, settings.resolved_model_dir, stream["model_path"], stream["model_sha256"]
    )
    loaded = ActiveModel(
        model_id=model_id,
        version=stream["model_version"],
        sha256=stream["model_sha256"],
        threshold=float(stream["model_threshold"]),
        params=DetectorParams.from_dict(stream["model_params"]),
        profile=features.Profile.from_dict(stream["model_params"]["profile"]),
        estimator=estimator,
    )
    _cache[stream["id"]] = loaded
    log.info("detection model loaded", stream=stream["name"], version=loaded.version)
    return loaded


async def _stream(conn: Any, name: str) -> asyncpg.Record:
    row = await store.get_stream(conn, name, for_update=True)
    if row is None:
        raise NotFoundError(f"signal stream {name!r} does not exist")
    return row


def _evaluate(
    values: np.ndarray[Any, Any], epochs: np.ndarray[Any, Any], params: DetectorParams
) -> tuple[anomaly.Trained, dict[str, Any]]:
    """Fit on the first 80 % of the window, measure on the last 20 % (held out)."""
    cut = int(len(values) * (1 - HOLDOUT_FRACTION))
    trained = anomaly.fit(values[:cut], epochs[:cut], params)
    rows = features.compute(values, epochs, params.window, trained.profile, start=cut)
    scores = anomaly.score(trained.model, rows)
    flags = anomaly.flags(scores, trained.threshold)
    alarms = anomaly.hysteresis(flags, np.zeros(0, dtype=bool), params.k, params.n)
    n = int(features.ready(rows).sum())
    evaluation = {
        "train_points": trained.train_rows,
        "holdout_points": n,
        "holdout_flag_rate": round(float(flags.sum()) / n, 5) if n else None,
        "holdout_alarm_rate": round(float(alarms.sum()) / n, 5) if n else None,
        "train_score_p50": round(float(np.quantile(trained.train_scores, 0.5)), 5),
        "train_score_p99": round(float(np.quantile(trained.train_scores, 0.99)), 5),
        "threshold": round(trained.threshold, 5),
        "note": "holdout rates assume the held-out tail is normal; they estimate false alarms",
    }
    return trained, evaluation


async def train(
    pool: PgPool,
    settings: Settings,
    actor: Principal,
    stream_name: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    params: DetectorParams | None = None,
    activate: bool = False,
) -> asyncpg.Record:
    params = params or DetectorParams()
    async with pool.acquire() as conn:
        stream = await store.get_stream(conn, stream_name)
        if stream is None:
            raise NotFoundError(f"signal stream {stream_name!r} does not exist")
        rows = await store.points_between(conn, stream["id"], since, until, MAX_TRAIN_POINTS)
    if not rows:
        raise UnprocessableError(
            f"stream {stream_name!r} has no points in the data window",
            field=["body.since", "body.until"],
        )
    values = np.array([r["value"] for r in rows], dtype=np.float64)
    epochs = np.array([r["ts"].timestamp() for r in rows], dtype=np.float64)
    try:
        trained, evaluation = await asyncio.to_thread(_evaluate, values, epochs, params)
    except ValueError as exc:
        raise UnprocessableError(
            str(exc), field=["body.since", "body.until", "body.window"]
        ) from None
    directory = settings.resolved_model_dir
    async with pool.acquire() as conn, conn.transaction():
        stream = await _stream(conn, stream_name)
        version = await store.next_model_version(conn, stream["id"])
        relative = f"{stream['id']}/v{version}-{uuid.uuid4().hex[:12]}.skops"
        digest = await asyncio.to_thread(artifacts.save, trained.model, directory, relative)
        model = await store.insert_model(
            conn,
            stream_id=stream["id"],
            version=version,
            algorithm=ALGORITHM,
            path=relative,
            sha256=digest,
            threshold=trained.threshold,
            params={**params.as_dict(), "profile": trained.profile.as_dict()},
            data_from=rows[0]["ts"],
            data_to=rows[-1]["ts"],
            train_points=trained.train_rows,
            evaluation=evaluation,
            actor=actor.subject,
        )
        await store.add_model_event(conn, model["id"], actor=actor.subject, action="trained")
        if activate:
            model = await _activate(conn, actor, stream, model)
        return model


async def _activate(
    conn: Any,
    actor: Principal,
    stream: asyncpg.Record,
    model: asyncpg.Record,
    action: str = "activated",
) -> asyncpg.Record:
    if model["status"] == "quarantined":
        raise ConflictError(
            f"model v{model['version']} of {stream['name']!r} is quarantined and cannot be "
            "activated"
        )
    if model["status"] == "active":
        return model
    current = await store.active_model(conn, stream["id"])
    if current is not None:
        await store.set_model_status(conn, current["id"], "retired")
        await store.add_model_event(conn, current["id"], actor=actor.subject, action="retired")
    updated = await store.set_model_status(conn, model["id"], "active")
    await store.add_model_event(conn, model["id"], actor=actor.subject, action=action)
    return updated


async def _model(conn: Any, stream: asyncpg.Record, version: int) -> asyncpg.Record:
    model = await store.get_model(conn, stream["id"], version)
    if model is None:
        raise NotFoundError(f"stream {stream['name']!r} has no model v{version}")
    return model


async def activate(
    pool: PgPool, actor: Principal, stream_name: str, version: int
) -> asyncpg.Record:
    async with pool.acquire() as conn, conn.transaction():
        stream = await _stream(conn, stream_name)
        return await _activate(conn, actor, stream, await _model(conn, stream, version))


async def rollback(pool: PgPool, actor: Principal, stream_name: str) -> asyncpg.Record:
    """Activate the model that was active before the current one."""
    async with pool.acquire() as conn, conn.transaction():
        stream = await _stream(conn, stream_name)
        current = await store.active_model(conn, stream["id"])
        if current is None:
            raise ConflictError(f"stream {stream_name!r} has no active model to roll back")
        previous = await store.previous_good_model(conn, stream["id"], current["id"])
        if previous is None:
            raise ConflictError(f"stream {stream_name!r} has no earlier model to roll back to")
        return await _activate(conn, actor, stream, previous, action="rolled_back_to")


async def quarantine(
    pool: PgPool, actor: Principal, stream_name: str, version: int, reason: str
) -> tuple[asyncpg.Record, asyncpg.Record | None]:
    """Take a model out of service for good. If it was active, the previously active
    model (if any) takes over; otherwise the stream is not scored until one is
    activated. Returns the quarantined model and the now-active one."""
    async with pool.acquire() as conn, conn.transaction():
        stream = await _stream(conn, stream_name)
        model = await _model(conn, stream, version)
        was_active = model["status"] == "active"
        quarantined = await store.set_model_status(conn, model["id"], "quarantined", reason=reason)
        await store.add_model_event(
            conn, model["id"], actor=actor.subject, action="quarantined", note=reason
        )
        active = None
        if was_active:
            previous = await store.previous_good_model(conn, stream["id"], model["id"])
            if previous is not None:
                active = await _activate(conn, actor, stream, previous, action="rolled_back_to")
        else:
            active = await store.active_model(conn, stream["id"])
        return quarantined, active


async def list_models(pool: PgPool, stream_name: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        stream = await store.get_stream(conn, stream_name)
        if stream is None:
            raise NotFoundError(f"signal stream {stream_name!r} does not exist")
        return await store.list_models(conn, stream["id"])


def model_path(settings: Settings, relative: str) -> Path:
    return settings.resolved_model_dir / relative
