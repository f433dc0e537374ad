"""The metric helpers other features call: names, labels and cardinality bounds."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from firewatch.observability import metrics
from firewatch.runtime.database import PgPool
from tests.conftest import ClientFor, IntegrationKey, asgi_client


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_helpers_count_with_bounded_labels() -> None:
    before = {
        "auth_other": sample("firewatch_auth_failures_total", reason="other"),
        "auth_expired": sample("firewatch_auth_failures_total", reason="expired"),
        "ingested": sample("firewatch_alerts_ingested_total", source="alertmanager"),
        "sev2": sample("firewatch_incidents_opened_total", severity="SEV2"),
        "delivered": sample("firewatch_notification_deliveries_total", outcome="delivered"),
        "notif_other": sample("firewatch_notification_deliveries_total", outcome="other"),
        "anomalies": sample("firewatch_detection_anomalies_total", stream="latency"),
        "scores": sample("firewatch_detection_score_count", stream="latency"),
        "score_sum": sample("firewatch_detection_score_sum", stream="latency"),
    }
    metrics.record_auth_failure("user alice typed a wrong password")  # not a known reason
    metrics.record_auth_failure("expired")
    metrics.record_alerts_ingested(4, "alertmanager")
    metrics.record_alerts_ingested(0, "alertmanager")
    metrics.record_incident_opened(2)
    metrics.record_incident_opened("sev2")
    metrics.record_notification("delivered")
    metrics.record_notification("exploded")
    metrics.record_anomaly("latency")
    metrics.observe_score("latency", 0.25)
    metrics.observe_score("latency", 0.5)

    assert sample("firewatch_auth_failures_total", reason="other") == before["auth_other"] + 1
    assert sample("firewatch_auth_failures_total", reason="expired") == before["auth_expired"] + 1
    assert (
        sample("firewatch_alerts_ingested_total", source="alertmanager") == before["ingested"] + 4
    )
    assert sample("firewatch_incidents_opened_total", severity="SEV2") == before["sev2"] + 2
    assert (
        sample("firewatch_notification_deliveries_total", outcome="delivered")
        == before["delivered"] + 1
    )
    assert (
        sample("firewatch_notification_deliveries_total", outcome="other")
        == before["notif_other"] + 1
    )
    assert (
        sample("firewatch_detection_anomalies_total", stream="latency") == before["anomalies"] + 1
    )
    assert sample("firewatch_detection_score_count", stream="latency") == before["scores"] + 2
    assert sample("firewatch_detection_score_sum", stream="latency") == before["score_sum"] + 0.75
    with pytest.raises(ValueError, match="n must be"):
        metrics.record_alerts_ingested(-1, "alertmanager")


def test_request_method_label_is_a_known_method_or_other() -> None:
    """A client inventing methods (``PURGE``, random tokens) cannot add series."""
    route = "/test/methods"
    name = "firewatch_http_request_duration_seconds_count"
    labels = {"route": route, "status_class": "4xx"}
    before = {m: sample(name, method=m, **labels) for m in ("GET", "_OTHER")}
    metrics.observe_request("GET", route, 404, 0.001)
    for invented in ("PURGE", "X" + secrets.token_hex(8), "get"):
        metrics.observe_request(invented, route, 405, 0.001)
    assert sample(name, method="GET", **labels) == before["GET"] + 1
    assert sample(name, method="_OTHER", **labels) == before["_OTHER"] + 3
    assert sample(name, method="PURGE", **labels) == 0.0


def test_status_class() -> None:
    assert [metrics.status_class(s) for s in (200, 201, 304, 404, 503, 99, 600)] == [
        "2xx",
        "2xx",
        "3xx",
        "4xx",
        "5xx",
        "other",
        "other",
    ]


async def test_queue_depth_is_read_from_the_outbox(client: httpx.AsyncClient, pool: PgPool) -> None:
    # Disabled, and removed with its rows afterwards: an enabled destination without a
    # service filter would queue a notification for every incident other tests open in
    # this database, and its pending rows would be theirs to deliver.
    async with pool.acquire() as conn:
        destination = await conn.fetchval(
            "INSERT INTO notification_destinations (name, kind, url, created_by, enabled) "
            "VALUES ($1, 'webhook', 'http://127.0.0.1:9/hook', 'test', false) RETURNING id",
            f"obs-{secrets.token_hex(4)}",
        )
    try:
        async with pool.acquire() as conn:
            for status in ("pending", "pending", "pending", "delivered", "dead"):
                await conn.execute(
                    "INSERT INTO notifications (destination_id, event_kind, payload, status) "
                    "VALUES ($1, 'incident.opened', '{}'::jsonb, $2)",
                    destination,
                    status,
                )
            pending = await conn.fetchval(
                "SELECT count(*) FROM notifications WHERE status = 'pending'"
            )
        assert pending >= 3
        r = await client.get("/metrics")
        assert r.status_code == 200
        depth = {
            s.labels["queue"]: s.value
            for f in text_string_to_metric_families(r.text)
            if f.name == "firewatch_queue_depth"
            for s in f.samples
        }
        assert depth == {"notifications": pending}
    finally:
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM notifications WHERE destination_id = $1", destination)
            await conn.execute("DELETE FROM notification_destinations WHERE id = $1", destination)


async def test_metrics_endpoint_in_process(client: httpx.AsyncClient) -> None:
    """Without multiprocess mode the default registry plus the database gauges is served."""
    r = await client.get("/metrics")
    assert r.status_code == 200
    exposed = {
        f"{f.name}_total" if f.type == "counter" else f.name
        for f in text_string_to_metric_families(r.text)
        if f.name.startswith("firewatch_")
    }
    assert exposed == metrics.METRIC_NAMES


async def test_refused_requests_are_counted_by_reason(
    app: FastAPI, client_for: ClientFor, integration_key: IntegrationKey
) -> None:
    """README, Metrics: firewatch_auth_failures_total counts refused API requests and
    logins by reason, not only refused scrapes of /metrics."""

    def counts() -> dict[str, float]:
        return {
            reason: sample("firewatch_auth_failures_total", reason=reason)
            for reason in ("missing_credentials", "malformed", "invalid_credentials", "forbidden")
        }

    before = counts()
    async with asgi_client(app) as anon:
        assert (await anon.get("/api/v1/incidents")).status_code == 401
        r = await anon.get("/api/v1/incidents", headers={"Authorization": "Basic eDp5"})
        assert r.status_code == 401
        r = await anon.get("/api/v1/incidents", headers={"Authorization": "Bearer not.a.jwt"})
        assert r.status_code == 401
        key = await integration_key(["alerts:write"])
        r = await anon.get("/api/v1/incidents", headers={"Authorization": f"Bearer {key}x"})
        assert r.status_code == 401
        r = await anon.post(
            "/api/v1/auth/login",
            json={"username": "nobody-at-all", "password": "wrong-password-123"},
        )
        assert r.status_code == 401
    viewer = await client_for("viewer")
    r = await viewer.post("/api/v1/incidents", json={"title": "t", "severity": "SEV3"})
    assert r.status_code == 403
    after = counts()
    assert after["missing_credentials"] == before["missing_credentials"] + 1
    assert after["malformed"] == before["malformed"] + 1
    assert after["invalid_credentials"] == before["invalid_credentials"] + 3
    assert after["forbidden"] == before["forbidden"] + 1


_FORK_SCRIPT = """
import os, sys
from prometheus_client import CollectorRegistry, multiprocess
from firewatch.observability import metrics

metrics.record_incident_opened(2)
child = os.fork()
if child == 0:  # the child's counts must go to files of its own pid
    metrics.record_incident_opened(2)
    metrics.record_incident_opened(2)
    os._exit(0)
os.waitpid(child, 0)
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
value = registry.get_sample_value("firewatch_incidents_opened_total", {"severity": "SEV2"})
files = sorted(name for name in os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
print(value, len(files), f"counter_{child}.db" in files, f"counter_{os.getpid()}.db" in files)
"""


def test_multiprocess_values_follow_a_fork_without_asking_the_kernel_each_time(
    tmp_path: Path,
) -> None:
    """metrics.py gives prometheus-client a pid kept current by a fork hook (instead of
    an os.getpid() system call per update): a forked child still writes its own file."""
    done = subprocess.run(
        [sys.executable, "-c", _FORK_SCRIPT],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["3.0", "2", "True", "True"]


def test_a_counted_histogram_adds_counts_as_observe_would() -> None:
    """CountedHistogram.add (the request histogram's batches) exposes what the same
    observations through Histogram.observe expose."""
    from prometheus_client import CollectorRegistry, generate_latest

    seconds = [0.0004, 0.001, 0.0011, 0.003, 0.2, 0.2, 7.0, 12.5]
    observed, added = CollectorRegistry(), CollectorRegistry()
    one = metrics.CountedHistogram(
        "t_seconds", "t", ["route"], buckets=metrics.REQUEST_BUCKETS, registry=observed
    )
    other = metrics.CountedHistogram(
        "t_seconds", "t", ["route"], buckets=metrics.REQUEST_BUCKETS, registry=added
    )
    for s in seconds:
        one.labels("/r").observe(s)
    bounds = (*metrics.REQUEST_BUCKETS, float("inf"))
    lows = (-1.0, *bounds[:-1])
    counts = [sum(1 for s in seconds if lo < s <= hi) for lo, hi in zip(lows, bounds, strict=True)]
    other.labels("/r").add(sum(seconds), counts)
    assert generate_latest(added) == generate_latest(observed)
    with pytest.raises(ValueError, match="counts for 14 buckets"):
        other.labels("/r").add(1.0, [1])


async def test_requests_reach_the_histogram_within_the_flush_interval() -> None:
    """In an event loop a request is counted in the process and written to the
    histogram by the next flush: at most REQUEST_FLUSH_SECONDS later, or before this
    process renders a scrape."""
    import asyncio

    route = "/test/flush"
    name = "firewatch_http_request_duration_seconds_count"
    labels = {"method": "GET", "route": route, "status_class": "2xx"}
    before = sample(name, **labels)
    metrics.observe_request("GET", route, 200, 0.002)
    metrics.observe_request("GET", route, 204, 0.3)
    assert sample(name, **labels) == before  # counted, not yet written
    await asyncio.sleep(metrics.REQUEST_FLUSH_SECONDS + 0.5)
    assert sample(name, **labels) == before + 2
    bucket = "firewatch_http_request_duration_seconds_bucket"
    assert sample(bucket, le="0.0025", **labels) - sample(bucket, le="0.001", **labels) >= 1
    metrics.observe_request("GET", route, 200, 0.002)
    text = metrics.render(None).decode()  # a scrape of this process writes first
    assert sample(name, **labels) == before + 3
    assert f'{name}{{method="GET",route="{route}",status_class="2xx"}} {before + 3}' in text


def test_requests_land_in_the_buckets_and_classes_histogram_observe_gives() -> None:
    """observe_request keeps durations and finds their buckets and status classes at
    the flush: the same counts and sum as Histogram.observe of each request, bounds
    included (a duration equal to a bound is in that bound's bucket)."""
    from prometheus_client import CollectorRegistry, Histogram

    route = "/test/buckets"
    seconds = [0.0, 0.001, 0.0011, *metrics.REQUEST_BUCKETS, 0.2, 11.0, 600.0]
    reference = Histogram(
        "r_seconds",
        "r",
        ["status_class"],
        buckets=metrics.REQUEST_BUCKETS,
        registry=CollectorRegistry(),
    )
    name = "firewatch_http_request_duration_seconds"
    labels = {"method": "GET", "route": route}
    classes = {200: "2xx", 204: "2xx", 503: "5xx", 99: "other"}
    before = {c: _histogram(name, status_class=c, **labels) for c in set(classes.values())}
    for i, duration in enumerate(seconds):
        status = list(classes)[i % len(classes)]
        metrics.observe_request("GET", route, status, duration)  # no loop: written at once
        reference.labels(classes[status]).observe(duration)
    for status_class in set(classes.values()):
        expected = {
            s.name.removeprefix("r_seconds") + str(sorted(s.labels.items())): s.value
            for family in reference.collect()
            for s in family.samples
            if s.labels.get("status_class") == status_class and not s.name.endswith("_created")
        }
        got = _histogram(name, status_class=status_class, **labels)
        delta = {key: got[key] - before[status_class].get(key, 0.0) for key in got}
        assert delta == pytest.approx(expected)


def _histogram(name: str, **labels: str) -> dict[str, float]:
    """The request histogram's samples of ``labels``, keyed as the test above keys them
    (suffix and the ``le``/``status_class`` labels)."""
    out: dict[str, float] = {}
    for family in REGISTRY.collect():
        for s in family.samples:
            if not s.name.startswith(name) or s.name.endswith("_created"):
                continue
            if all(s.labels.get(k) == v for k, v in labels.items()):
                rest = {k: v for k, v in s.labels.items() if k in {"le", "status_class"}}
                out[s.name.removeprefix(name) + str(sorted(rest.items()))] = s.value
    return out
