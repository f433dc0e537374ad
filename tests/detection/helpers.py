"""Shared helpers: unique streams with synthetic history, over the real API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np

from firewatch.detection import synthetic

API = "/api/v1/signals"


def unique_stream(prefix: str = "test") -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def points(name: str, values: Any, epochs: Any) -> list[dict[str, Any]]:
    return [
        {"stream": name, "ts": iso(float(e)), "value": float(v)}
        for v, e in zip(values, epochs, strict=True)
    ]


def recent_stream(seed: int, train_points: int = 1500, test_points: int = 600) -> synthetic.Stream:
    """A clean synthetic stream (no injected anomalies) starting at a UTC midnight, so
    its hours of day, and hence its scores, are the same on every run. Its last point
    is at least a day in the past."""
    now = datetime.now(UTC).timestamp()
    start = (now - 86400 - 300 * (train_points + test_points)) // 86400 * 86400
    return synthetic.stream(
        seed,
        train_points=train_points,
        test_points=test_points,
        anomalies_per_kind=0,
        start_epoch=float(start),
    )


async def register(client: httpx.AsyncClient, name: str, **fields: Any) -> dict[str, Any]:
    body = {"labels": {"category": "model_degradation", "model": "ranker"}, **fields}
    r = await client.put(f"{API}/streams/{name}", json=body)
    assert r.status_code in (200, 201), r.text
    data: dict[str, Any] = r.json()
    return data


async def post(client: httpx.AsyncClient, pts: list[dict[str, Any]]) -> dict[str, Any]:
    r = await client.post(API, json={"points": pts})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def seed_and_train(
    client: httpx.AsyncClient,
    name: str,
    stream: synthetic.Stream,
    service: str | None = None,
    **train: Any,
) -> dict[str, Any]:
    await register(client, name, service=service)
    await post(client, points(name, stream.train_values, stream.train_epochs))
    r = await client.post(f"{API}/streams/{name}/models", json={"activate": True, **train})
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


def shifted(
    stream: synthetic.Stream, start: int, length: int, sigmas: float
) -> np.ndarray[Any, Any]:
    values = stream.test_values.copy()
    spread = float(np.std(stream.train_values))
    values[start : start + length] += sigmas * spread
    return values
