"""The outbox delivered by the worker to real local HTTP receivers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import structlog
import structlog.testing

from firewatch.notifications import service
from firewatch.runtime.database import PgPool, create_pool
from tests.alerts.conftest import load_fixture
from tests.notifications.receiver import receiver

AM = "/api/v1/integrations/alertmanager"
DEST = "/api/v1/notifications/destinations"
FAST = service.WorkerConfig(backoff_base=0.01, backoff_max=0.05, max_attempts=4, timeout=5.0)


def alert_payload(service_name: str, severity: str = "critical") -> dict[str, Any]:
    payload = load_fixture("firing-single.json")
    payload["groupKey"] = f'{{}}:{{service="{service_name}", g="{uuid.uuid4().hex}"}}'
    labels = payload["alerts"][0]["labels"]
    labels["service"] = service_name
    labels["severity"] = severity
    payload["commonLabels"] = dict(labels)
    payload["alerts"][0]["fingerprint"] = uuid.uuid4().hex[:16]
    return payload


@pytest.fixture
async def svc(client: httpx.AsyncClient) -> AsyncIterator[str]:
    """A service name unique to the test; its destinations are removed afterwards."""
    name = f"svc-{uuid.uuid4().hex[:8]}"
    yield name
    r = await client.get(DEST)
    for d in r.json()["items"]:
        if d["services"] == [name]:
            await client.delete(f"{DEST}/{d['id']}")


async def destination(
    client: httpx.AsyncClient, svc: str, url: str, **fields: Any
) -> dict[str, Any]:
    body = {
        "name": f"dest-{uuid.uuid4().hex[:8]}",
        "kind": "webhook",
        "url": url,
        "services": [svc],
        **fields,
    }
    r = await client.post(DEST, json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def drain(pool: PgPool, cfg: service.WorkerConfig, until: Any, seconds: float = 10) -> None:
    """Run delivery in-process until ``until()`` holds (bounded in time)."""
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if await until():
                return
            if not await service.deliver_one(pool, http, cfg):
                await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


async def notifications_of(client: httpx.AsyncClient, incident: str) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/notifications", params={"incident": incident})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_retried_then_delivered_with_valid_signature(
    client: httpx.AsyncClient, pool: PgPool, svc: str
) -> None:
    with receiver(fail_first=2) as rx:
        dest = await destination(client, svc, rx.url)
        rx.secret = dest["secret"]
        assert dest["url"].endswith("/…")  # the stored URL is never shown in full
        r = await client.post(AM, json=alert_payload(svc))
        ref = r.json()["incident"]
        [note] = await notifications_of(client, ref)
        assert note["event_kind"] == "incident.opened"
        assert note["status"] == "pending"

        async def delivered() -> bool:
            return len(rx.delivered) == 1

        await drain(pool, FAST, delivered)
    got = rx.delivered[0]
    assert got.signature_ok is True
    assert got.json()["incident"]["id"] == ref
    assert got.json()["event"] == "incident.opened"
    assert got.headers["x-firewatch-delivery"] == str(note["id"])
    assert [x.signature_ok for x in rx.requests] == [True, True, True]
    r = await client.get(f"/api/v1/notifications/{note['id']}")
    detail = r.json()
    assert detail["status"] == "delivered"
    assert [a["outcome"] for a in detail["attempts_log"]] == ["retry", "retry", "delivered"]
    assert [a["status_code"] for a in detail["attempts_log"]] == [503, 503, 200]


async def test_always_failing_receiver_dead_letters(
    client: httpx.AsyncClient, pool: PgPool, svc: str
) -> None:
    with receiver(always_fail=True) as rx:
        await destination(client, svc, rx.url)
        ref = (await client.post(AM, json=alert_payload(svc))).json()["incident"]
        [note] = await notifications_of(client, ref)

        async def dead() -> bool:
            return bool((await notifications_of(client, ref))[0]["status"] == "dead")

        await drain(pool, FAST, dead)
        assert len(rx.requests) == FAST.max_attempts
    detail = (await client.get(f"/api/v1/notifications/{note['id']}")).json()
    assert [a["outcome"] for a in detail["attempts_log"]] == ["retry"] * 3 + ["dead"]
    assert detail["last_error"] == "HTTP 503"
    r = await client.post(f"/api/v1/notifications/{note['id']}/retry")
    assert r.status_code == 202
    assert (await notifications_of(client, ref))[0]["status"] == "pending"
    r = await client.post(f"/api/v1/notifications/{note['id']}/retry")
    assert r.status_code == 409


async def test_unreachable_receiver_is_retried(
    client: httpx.AsyncClient, pool: PgPool, svc: str
) -> None:
    with receiver() as rx:
        dead_url = rx.url
    await destination(client, svc, dead_url)  # nothing listens there any more
    ref = (await client.post(AM, json=alert_payload(svc))).json()["incident"]

    async def dead() -> bool:
        return bool((await notifications_of(client, ref))[0]["status"] == "dead")

    await drain(pool, FAST, dead)
    note = (await notifications_of(client, ref))[0]
    assert note["attempts"] == FAST.max_attempts
    assert note["last_error"] == "ConnectError"


async def test_a_notification_that_cannot_be_handled_is_dead_lettered_not_retried_forever(
    client: httpx.AsyncClient, pool: PgPool, svc: str
) -> None:
    """A poison row must not stall the queue behind it. This destination's URL (stored
    before the API refused such URLs) has a port httpx refuses: every attempt at it
    raises ``httpx.InvalidURL`` (no ``httpx.HTTPError``) before an outcome is recorded.
    It used to roll back, stay pending with no attempt counted and be claimed again on
    every poll, first in line, forever. Now it is a failed attempt like any other."""
    cfg = dataclasses.replace(FAST, poll_interval=0.02, concurrency=1)
    bad_url = "http://127.0.0.1:0x50/secret-path"
    with receiver() as rx:
        bad = await destination(client, svc, "http://127.0.0.1:9/secret-path")
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE notification_destinations SET url = $2 WHERE id = $1", bad["id"], bad_url
            )
        await destination(client, svc, rx.url)
        first = (await client.post(AM, json=alert_payload(svc))).json()["incident"]
        [poison] = [
            n for n in await notifications_of(client, first) if n["destination_id"] == bad["id"]
        ]
        behind = [
            (await client.post(AM, json=alert_payload(svc))).json()["incident"] for _ in range(3)
        ]

        async def settled() -> bool:
            note = (await client.get(f"/api/v1/notifications/{poison['id']}")).json()
            return len(rx.delivered) == 4 and note["status"] == "dead"

        worker = service.Worker(pool, cfg)
        async with httpx.AsyncClient() as http:
            with structlog.testing.capture_logs() as logs:
                loop = asyncio.create_task(worker._deliver_loop(http))  # the real loop
                try:
                    deadline = time.monotonic() + 15
                    while not await settled():
                        assert time.monotonic() < deadline, (len(rx.delivered), poison)
                        await asyncio.sleep(0.05)
                finally:
                    loop.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await loop
    failed = [e for e in logs if e["event"] == "notification delivery failed"]
    assert sum(e["notification"] == poison["id"] for e in failed) == cfg.max_attempts
    assert failed[0]["error_type"] == "InvalidURL"
    assert failed[0]["raised_at"]  # where, for whoever debugs it
    # never the error's message or traceback: it can quote the URL, which carries tokens
    assert "secret-path" not in repr(logs)
    assert all("exc_info" not in e for e in failed)
    assert {m.json()["incident"]["id"] for m in rx.delivered} == {first, *behind}
    detail = (await client.get(f"/api/v1/notifications/{poison['id']}")).json()
    assert detail["attempts"] == cfg.max_attempts
    assert [a["outcome"] for a in detail["attempts_log"]] == ["retry"] * 3 + ["dead"]
    assert {a["error"] for a in detail["attempts_log"]} == {"InvalidURL"}  # the type only
    assert detail["last_error"] == "InvalidURL"


async def test_filters_by_severity_service_and_kind(client: httpx.AsyncClient, svc: str) -> None:
    with receiver() as rx:
        await destination(client, svc, rx.url, min_severity="SEV2", event_kinds=["incident.opened"])
        warn = (await client.post(AM, json=alert_payload(svc, "warning"))).json()["incident"]
        assert await notifications_of(client, warn) == []
        crit = alert_payload(svc, "critical")
        ref = (await client.post(AM, json=crit)).json()["incident"]
        assert [n["event_kind"] for n in await notifications_of(client, ref)] == ["incident.opened"]
        # all resolved -> incident.mitigated, which this destination does not want
        crit["alerts"][0]["status"] = "resolved"
        assert (await client.post(AM, json=crit)).json()["status"] == "mitigated"
        assert len(await notifications_of(client, ref)) == 1
        other = (await client.post(AM, json=alert_payload(svc + "-x"))).json()["incident"]
        assert await notifications_of(client, other) == []


async def test_slack_destination_gets_a_slack_message(
    client: httpx.AsyncClient, pool: PgPool, svc: str
) -> None:
    with receiver() as rx:
        dest = await destination(client, svc, rx.url, kind="slack")
        assert "secret" not in dest
        ref = (await client.post(AM, json=alert_payload(svc))).json()["incident"]

        async def delivered() -> bool:
            return len(rx.delivered) == 1

        await drain(pool, FAST, delivered)
    message = rx.delivered[0].json()
    assert ref in message["text"]
    assert "[SEV1]" in message["text"]
    assert message["blocks"][0]["type"] == "section"


async def test_destination_validation(client: httpx.AsyncClient) -> None:
    r = await client.post(DEST, json={"name": "x", "kind": "webhook", "url": "file:///etc/passwd"})
    assert r.status_code == 422
    r = await client.post(DEST, json={"name": "x", "kind": "pager", "url": "http://a.example/"})
    assert r.status_code == 422
    # URLs that delivery could never send to: refused now, not dead-lettered later
    for url in ("http://127.0.0.1:0x50/hook", "http://a.example:99999/", "http://[::1/hook"):
        r = await client.post(DEST, json={"name": "x", "kind": "webhook", "url": url})
        assert r.status_code == 422, (url, r.text)
        assert [e["field"] for e in r.json()["errors"]] == ["body.url"]
        assert url not in r.text  # never echoed


async def test_destination_name_over_the_column_limit_is_a_422(client: httpx.AsyncClient) -> None:
    """The column holds 1-100 characters: 101 used to reach PostgreSQL's CHECK (a 500)."""
    long_name = "d" * 101
    r = await client.post(
        DEST, json={"name": long_name, "kind": "webhook", "url": "http://a.example/"}
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in r.json()["errors"]] == ["body.name"]
    assert long_name not in r.text  # rejected values are not echoed
    r = await client.get(DEST)
    assert all(d["name"] != long_name for d in r.json()["items"])
    name = f"d{uuid.uuid4().hex}".ljust(100, "d")  # exactly at the limit is accepted
    body = {"name": name, "kind": "webhook", "url": "http://a.example/", "services": [name]}
    r = await client.post(DEST, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == name
    assert (await client.delete(f"{DEST}/{r.json()['id']}")).status_code == 204


async def test_ids_beyond_bigint_are_a_422_not_a_500(client: httpx.AsyncClient) -> None:
    """Ids are bigint: a larger number used to reach asyncpg's encoder (a 500)."""
    huge = str(2**63)
    for method, path in [
        ("GET", f"/api/v1/notifications/{huge}"),
        ("POST", f"/api/v1/notifications/{huge}/retry"),
        ("DELETE", f"{DEST}/{huge}"),
        ("GET", "/api/v1/notifications/0"),
    ]:
        r = await client.request(method, path)
        assert r.status_code == 422, (method, path, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    largest = str(2**63 - 1)
    for method, path in [  # and one that does not exist is a 404, whatever the route
        ("GET", f"/api/v1/notifications/{largest}"),
        ("POST", f"/api/v1/notifications/{largest}/retry"),
        ("DELETE", f"{DEST}/{largest}"),
    ]:
        r = await client.request(method, path)
        assert r.status_code == 404, (method, path, r.text)
        assert r.headers["content-type"] == "application/problem+json"


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("FIREWATCH_")}
    full.update(env)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "firewatch", "worker"], env=full, stdout=out, stderr=out
        )


async def test_worker_killed_mid_delivery_delivers_after_restart(
    client: httpx.AsyncClient, database_url: str, redis_url: str, tmp_path: Path, svc: str
) -> None:
    env = {
        "FIREWATCH_DATABASE_URL": database_url,
        "FIREWATCH_REDIS_URL": redis_url,
        "FIREWATCH_NOTIFY_BACKOFF_BASE": "0.05",
        "FIREWATCH_NOTIFY_POLL_INTERVAL": "0.2",
        "FIREWATCH_NOTIFY_CONCURRENCY": "1",
        "FIREWATCH_MIGRATE_ON_START": "false",
    }
    with receiver(hang_first=True) as rx:
        dest = await destination(client, svc, rx.url)
        rx.secret = dest["secret"]
        ref = (await client.post(AM, json=alert_payload(svc))).json()["incident"]
        first = _worker(env, tmp_path / "worker.log")
        try:
            assert await asyncio.to_thread(rx.hung.wait, 150), (tmp_path / "worker.log").read_text()
        finally:
            first.send_signal(signal.SIGKILL)  # mid-delivery: the receiver has not answered
            first.wait(10)
        [note] = await notifications_of(client, ref)
        assert note["status"] == "pending"
        assert note["attempts"] == 0
        second = _worker(env, tmp_path / "worker.log")
        try:
            await asyncio.to_thread(rx.got_delivery.wait, 150)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # until the worker commits the delivery
                [note] = await notifications_of(client, ref)
                if note["status"] == "delivered":
                    break
                await asyncio.sleep(0.05)
        finally:
            second.terminate()
            try:
                second.wait(20)
            except subprocess.TimeoutExpired:
                second.kill()
                second.wait()
    assert len(rx.delivered) == 1, (tmp_path / "worker.log").read_text()
    assert rx.delivered[0].signature_ok is True
    assert rx.delivered[0].json()["incident"]["id"] == ref
    [note] = await notifications_of(client, ref)
    assert note["status"] == "delivered"


async def test_retention_purges_old_rows_in_batches(
    client: httpx.AsyncClient, pool: PgPool, svc: str
) -> None:
    payload = alert_payload(svc)
    payload["alerts"] = [
        {
            **payload["alerts"][0],
            "fingerprint": f"{svc}-{i}",
            "labels": {**payload["alerts"][0]["labels"], "i": str(i)},
        }
        for i in range(5)
    ]
    ref = (await client.post(AM, json=payload)).json()["incident"]
    for a in payload["alerts"][:3]:
        a["status"] = "resolved"
    await client.post(AM, json=payload)
    incident_id = int(ref.removeprefix("INC-"))
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE alerts SET resolved_at = now() - interval '40 days' "
            "WHERE incident_id = $1 AND status = 'resolved'",
            incident_id,
        )
    cfg = service.WorkerConfig(retention_days=30, retention_batch=2)
    purged = await service.purge_once(pool, cfg, now=datetime.now(UTC))
    assert purged["alerts"] >= 3
    async with pool.acquire() as conn:
        left = await conn.fetch("SELECT status FROM alerts WHERE incident_id = $1", incident_id)
        kept = await conn.fetchval("SELECT count(*) FROM incidents WHERE id = $1", incident_id)
    assert [r["status"] for r in left] == ["firing", "firing"]
    assert kept == 1
    # nothing younger than the cut-off goes
    later = await service.purge_once(pool, cfg, now=datetime.now(UTC) - timedelta(days=1))
    assert later["alerts"] == 0


async def test_the_listening_connection_never_goes_back_to_the_pool_listening(
    database_url: str,
) -> None:
    """Pooled connections carry no session state: when the listen loop ends (here:
    cancelled, as at shutdown), its LISTENing connection is closed, not handed to the
    next caller still subscribed (the pool does not UNLISTEN on release)."""
    one = await create_pool(database_url, min_size=1, max_size=1)
    try:
        worker = service.Worker(one, service.WorkerConfig())
        task = asyncio.create_task(worker._listen_loop())
        deadline = time.monotonic() + 10
        while not worker._wake.is_set():  # set once add_listener has run
            assert time.monotonic() < deadline, "the worker never listened"
            await asyncio.sleep(0.05)
        listening_pid = await _listening_backend(database_url)
        assert listening_pid is not None
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with one.acquire() as conn:  # the pool's only connection
            assert await conn.fetchval("SELECT pg_backend_pid()") != listening_pid
            assert await conn.fetch("SELECT pg_listening_channels()") == []
        assert await _listening_backend(database_url) is None
    finally:
        await one.close()


async def _listening_backend(database_url: str) -> int | None:
    """The pid of a firewatch backend of this database waiting in LISTEN, if any."""
    conn = await asyncpg.connect(database_url)
    try:
        pid: int | None = await conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'firewatch' AND query LIKE 'LISTEN%' LIMIT 1"
        )
        return pid
    finally:
        await conn.close()
