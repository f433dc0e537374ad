"""Drift in /metrics: a real ``firewatch serve --workers 2`` exports the latest drift
check of each stream from the database, whichever worker answers the scrape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from tests import servers
from tests.detection.helpers import API, unique_stream

TOKEN = "drift-scrape-token-0123456789"
GAUGE = "firewatch_detection_drift_psi"


def drift_series(text: str) -> dict[str, float]:
    return {
        s.labels["stream"]: s.value
        for family in text_string_to_metric_families(text)
        if family.name == GAUGE
        for s in family.samples
    }


async def _points(url: str, stream: str, values: np.ndarray, ages: np.ndarray) -> None:
    now = datetime.now(UTC)
    conn = await asyncpg.connect(url)
    try:
        stream_id = await conn.fetchval("SELECT id FROM signal_streams WHERE name = $1", stream)
        await conn.executemany(
            "INSERT INTO signal_points (stream_id, ts, value) VALUES ($1, $2, $3)",
            [
                (stream_id, now - timedelta(seconds=float(a)), float(v))
                for v, a in zip(values, ages, strict=True)
            ],
        )
    finally:
        await conn.close()


async def test_drift_gauge_is_the_latest_check_on_every_worker(
    fresh_database: str, redis_url: str, tmp_path: Path
) -> None:
    env = {
        "FIREWATCH_DATABASE_URL": fresh_database,
        "FIREWATCH_REDIS_URL": redis_url,
        "FIREWATCH_DATA_DIR": str(tmp_path / "data"),
        "FIREWATCH_WORKERS": "2",
        "FIREWATCH_METRICS_TOKEN": TOKEN,
    }
    rng = np.random.default_rng(7)
    shifted, steady, unchecked = (unique_stream(p) for p in ("shifted", "steady", "unchecked"))
    with servers.live_server(env, tmp_path / "serve.log", ready_timeout=240) as server:
        auth = servers.bearer(server.base_url)
        async with httpx.AsyncClient(base_url=server.base_url, headers=auth, timeout=30) as c:
            for name in (shifted, steady, unchecked):
                r = await c.put(f"{API}/streams/{name}", json={"labels": {"category": "x"}})
                assert r.status_code == 201, r.text
            reference_ages = 86400 + 600 * np.arange(1, 600)  # before the last day
            recent_ages = 600 * np.arange(1, 120)  # the last day
            await _points(fresh_database, shifted, rng.normal(10, 1, 599), reference_ages)
            await _points(fresh_database, shifted, rng.normal(12, 1, 119), recent_ages)
            await _points(fresh_database, steady, rng.normal(5, 1, 599), reference_ages)
            await _points(fresh_database, steady, rng.normal(5, 1, 119), recent_ages)
            await _points(fresh_database, unchecked, rng.normal(5, 1, 599), reference_ages)
            await _points(fresh_database, unchecked, rng.normal(9, 1, 119), recent_ages)
            checks = {}
            for name in (shifted, steady):
                r = await c.post(f"{API}/streams/{name}/drift/check")
                assert r.status_code == 200, r.text
                checks[name] = r.json()
            # a GET computes drift too, but only a check is recorded
            r = await c.get(f"{API}/streams/{unchecked}/drift")
            assert r.status_code == 200, r.text
            assert r.json()["level"] == "significant"

        scrape = {"Authorization": f"Bearer {TOKEN}"}
        limits = httpx.Limits(max_keepalive_connections=0)  # a new connection per scrape
        seen: list[dict[str, float]] = []
        async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=30) as m:
            for _ in range(6):
                r = await m.get("/metrics", headers=scrape)
                assert r.status_code == 200
                seen.append(drift_series(r.text))

    assert checks[shifted]["level"] == "significant"
    assert checks[steady]["psi"] < checks[shifted]["psi"]
    expected = {shifted: checks[shifted]["psi"], steady: checks[steady]["psi"]}
    assert expected[shifted] > 0.25
    for series in seen:
        assert {k: v for k, v in series.items() if k in (shifted, steady, unchecked)} == expected
