"""/metrics of a real ``firewatch serve --workers 2`` counts every worker's requests exactly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import psutil
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from firewatch.observability import metrics
from tests import servers

TOKEN = "scrape-token-0123456789abcdef"
FLUSHED = metrics.REQUEST_FLUSH_SECONDS + 1.0  # a flush interval, and time to run it


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(
    data: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return data.get((name, frozenset(labels.items())), 0.0)


async def burst(
    base_url: str,
    method: str,
    path: str,
    n: int,
    json: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> list[int]:
    """``n`` concurrent requests, each on its own connection (so both workers accept some)."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=10, headers=headers
    ) as c:
        rs = await asyncio.gather(*(c.request(method, path, json=json) for _ in range(n)))
    return [r.status_code for r in rs]


def worker_pids(multiproc_dir: Path) -> set[str]:
    return {p.stem.rsplit("_", 1)[1] for p in multiproc_dir.glob("histogram_*.db")}


async def test_counts_are_exact_across_two_workers(
    fresh_database: str, redis_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    stale = data_dir / "prometheus"
    stale.mkdir(parents=True)
    (stale / "counter_1.db").write_bytes(b"left over by a previous run")
    env = {
        "FIREWATCH_DATABASE_URL": fresh_database,
        "FIREWATCH_REDIS_URL": redis_url,
        "FIREWATCH_DATA_DIR": str(data_dir),
        "FIREWATCH_WORKERS": "2",
        "FIREWATCH_METRICS_TOKEN": TOKEN,
        "FIREWATCH_LOG_FORMAT": "json",
        # no suggester process: serve's children are then exactly its uvicorn workers
        "FIREWATCH_SIMILAR_SUGGEST_INTERVAL": "0",
    }
    # several processes import the app at once on a shared, busy test machine
    with servers.live_server(env, tmp_path / "serve.log", ready_timeout=240) as server:
        assert not (stale / "counter_1.db").exists()  # cleaned by the master at start
        base = server.base_url
        workers = [
            p
            for p in psutil.Process(server.process.pid).children()
            if "resource_tracker" not in " ".join(p.cmdline())
        ]
        assert len(workers) == 2, [p.cmdline() for p in workers]
        healthz = 0
        # Each worker in turn answers a burst alone (the other is stopped and cannot
        # accept), so both workers' files hold observations the scrape must add up.
        for stopped in workers:
            stopped.suspend()
            try:
                assert await burst(base, "GET", "/healthz", 10) == [200] * 10
            finally:
                stopped.resume()
            healthz += 10
        # a worker writes the requests it counted at most a flush interval later
        await asyncio.sleep(FLUSHED)
        assert worker_pids(stale) == {str(p.pid) for p in workers}

        body = {"title": "t", "category": "latency"}
        auth = servers.bearer(base)
        for severity, n in (("sev1", 3), ("sev3", 2)):
            codes = await burst(
                base,
                "POST",
                "/api/v1/incidents",
                n,
                json={**body, "severity": severity},
                headers=auth,
            )
            assert codes == [201] * n
        missing = await burst(base, "GET", "/api/v1/incidents/INC-999999999", 7, headers=auth)
        assert missing == [404] * 7
        assert await burst(base, "GET", "/no/such/path", 4) == [404] * 4

        # resolved behind firewatch's back: the gauge reads the database, not a counter
        conn = await asyncpg.connect(fresh_database)
        try:
            await conn.execute(
                "UPDATE incidents SET status = 'resolved' WHERE id = "
                "(SELECT min(id) FROM incidents WHERE severity = 1)"
            )
        finally:
            await conn.close()

        await asyncio.sleep(FLUSHED)  # both workers wrote what they counted
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            denied = await c.get("/metrics")
            assert denied.status_code == 401
            assert denied.headers["content-type"].startswith("application/problem+json")
            wrong = await c.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
            assert wrong.status_code == 401
            r = await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        data = samples(r.text)
        # the last requests before a graceful stop: still counted in memory when it begins
        assert await burst(base, "GET", "/healthz", 3) == [200] * 3
    # stopped (SIGTERM: each worker's lifespan ends, writing what it counted)
    stopped_registry = CollectorRegistry()
    collector: Callable[..., object] = multiprocess.MultiProcessCollector  # (unannotated)
    collector(stopped_registry, path=str(stale))
    healthz_labels = {"method": "GET", "route": "/healthz", "status_class": "2xx"}
    after_stop = stopped_registry.get_sample_value(
        "firewatch_http_request_duration_seconds_count", healthz_labels
    )
    assert after_stop == healthz + 3

    duration = "firewatch_http_request_duration_seconds_count"
    assert value(data, duration, method="GET", route="/healthz", status_class="2xx") == healthz
    assert value(data, duration, method="POST", route="/api/v1/incidents", status_class="2xx") == 5
    assert (
        value(data, duration, method="GET", route="/api/v1/incidents/{ref}", status_class="4xx")
        == 7
    )
    assert value(data, duration, method="GET", route="unmatched", status_class="4xx") == 4
    assert value(data, duration, method="GET", route="/metrics", status_class="4xx") == 2
    # the le="+Inf" bucket equals the count: observations are not lost between workers
    assert (
        value(
            data,
            "firewatch_http_request_duration_seconds_bucket",
            method="GET",
            route="/healthz",
            status_class="2xx",
            le="+Inf",
        )
        == healthz
    )
    assert value(data, "firewatch_incidents_opened_total", severity="SEV1") == 3
    assert value(data, "firewatch_incidents_opened_total", severity="SEV3") == 2
    assert value(data, "firewatch_open_incidents", severity="SEV1") == 2
    assert value(data, "firewatch_open_incidents", severity="SEV3") == 2
    assert value(data, "firewatch_open_incidents", severity="SEV2") == 0
    assert value(data, "firewatch_auth_failures_total", reason="invalid_credentials") == 2
