"""PostgreSQL ends firewatch's connections (``pg_terminate_backend``, as a failover or
an operator would) while requests are in flight: every answer is a success or a 503
problem, nothing that was answered 2xx is lost, nothing is half-written, and the
notification worker keeps delivering. Only this module's own database is touched."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from firewatch.app import create_app
from firewatch.settings import Settings
from tests import servers
from tests.notifications.receiver import Receiver, receiver

INCIDENTS = "/api/v1/incidents"


@pytest.fixture(scope="module")
def rx() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, fresh_database: str, redis_url: str
) -> Iterator[servers.LiveServer]:
    # A long poll: a notification arrives promptly only when the worker is woken by
    # NOTIFY, i.e. when it LISTENs again after losing its listening connection.
    env = {
        "FIREWATCH_DATABASE_URL": fresh_database,
        "FIREWATCH_REDIS_URL": redis_url,
        "FIREWATCH_DATA_DIR": str(tmp_path_factory.mktemp("connection-loss")),
        "FIREWATCH_MIGRATE_ON_START": "false",
        "FIREWATCH_WORKER_IN_SERVE": "true",
        "FIREWATCH_NOTIFY_POLL_INTERVAL": "30",
        # ~3,000 creates a run as "admin": within the default 6,000 a minute, which
        # every live server of this xdist worker shares (one Redis db, one user name);
        # not counted here, so neither this module nor the next one meets a 429
        "FIREWATCH_RATE_LIMIT_API_PER_MINUTE": "0",
        "FIREWATCH_SIMILAR_SUGGEST_INTERVAL": "0",
        "FIREWATCH_PASSWORD_HASH_TIME_COST": "1",
        "FIREWATCH_PASSWORD_HASH_MEMORY_KIB": "8192",
        "FIREWATCH_PASSWORD_HASH_PARALLELISM": "1",
    }
    log = tmp_path_factory.mktemp("connection-loss-log") / "firewatch.log"
    with servers.live_server(env, log) as fw:
        yield fw


def not_access(log: str) -> str:
    """The server log without its access lines (what went wrong, for an assertion)."""
    return "\n".join(line for line in log.splitlines() if "firewatch.access" not in line)[-6000:]


async def terminate_backends(database_url: str) -> int:
    """End every connection firewatch holds to this module's database."""
    name = urlsplit(database_url).path.lstrip("/")
    conn = await asyncpg.connect(database_url)
    try:
        killed: int = await conn.fetchval(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'firewatch' AND datname = $1) t",
            name,
        )
        return killed
    finally:
        await conn.close()


async def create_under_kills(
    base_url: str, headers: dict[str, str], database_url: str, prefix: str
) -> list[tuple[str, httpx.Response | None]]:
    """Eight clients opening incidents while the backends are terminated six times."""
    answers: list[tuple[str, httpx.Response | None]] = []
    stop = asyncio.Event()

    async def client(n: int, http: httpx.AsyncClient) -> None:
        i = 0
        while not stop.is_set():
            title = f"{prefix}-{n}-{i}"
            i += 1
            try:
                r: httpx.Response | None = await http.post(
                    INCIDENTS, json={"title": title, "severity": "SEV3"}
                )
            except httpx.TransportError:  # the server closed the connection unanswered
                r = None
            answers.append((title, r))

    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
        tasks = [asyncio.create_task(client(n, http)) for n in range(8)]
        try:
            for _ in range(6):
                await asyncio.sleep(0.7)
                assert await terminate_backends(database_url) > 0
            await asyncio.sleep(0.7)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    return answers


async def rows_of(database_url: str, prefix: str) -> dict[str, Any]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT i.title,
                 (SELECT count(*) FROM incident_timeline t WHERE t.incident_id = i.id) AS timeline,
                 (SELECT count(*) FROM audit_log a WHERE a.target = 'INC-' || i.id) AS audit,
                 (SELECT count(*) FROM notifications n WHERE n.incident_id = i.id) AS notes
               FROM incidents i WHERE i.title LIKE $1""",
            f"{prefix}-%",
        )
    finally:
        await conn.close()
    return {r["title"]: (r["timeline"], r["audit"], r["notes"]) for r in rows}


async def test_terminated_connections_answer_503_and_lose_nothing(
    live: servers.LiveServer, fresh_database: str, rx: Receiver
) -> None:
    headers = servers.bearer(live.base_url)
    async with httpx.AsyncClient(base_url=live.base_url, headers=headers) as http:
        made = await http.post(
            "/api/v1/notifications/destinations",
            json={"name": "chaos", "kind": "webhook", "url": rx.url},
        )
        assert made.status_code == 201, made.text
    prefix = f"kill-{uuid.uuid4().hex[:8]}"
    answers = await create_under_kills(live.base_url, headers, fresh_database, prefix)

    statuses = {None if r is None else r.status_code for _, r in answers}
    assert statuses <= {201, 503}, (statuses, not_access(live.log()))
    for _, r in answers:
        if r is not None and r.status_code == 503:
            assert r.headers["content-type"] == "application/problem+json"
            assert "retry-after" in r.headers
    stored = await rows_of(fresh_database, prefix)
    # each create is one transaction: the incident, its timeline entry, its audit entry
    # and its notification, or none of them
    assert set(stored.values()) <= {(1, 1, 1)}, stored
    created = {title for title, r in answers if r is not None and r.status_code == 201}
    assert created <= set(stored), created - set(stored)
    assert len(created) > 50  # there was load, not only failures

    # the pool has recovered by itself
    deadline = time.monotonic() + 10
    async with httpx.AsyncClient(base_url=live.base_url, headers=headers) as http:
        while (await http.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, "not ready again after the kills"
            await asyncio.sleep(0.2)
        after = await http.post(INCIDENTS, json={"title": f"{prefix}-after", "severity": "SEV3"})
        assert after.status_code == 201


async def test_worker_keeps_delivering_after_its_connections_are_killed(
    live: servers.LiveServer, fresh_database: str, rx: Receiver
) -> None:
    headers = servers.bearer(live.base_url)
    prefix = f"worker-{uuid.uuid4().hex[:8]}"
    await create_under_kills(live.base_url, headers, fresh_database, prefix)
    async with httpx.AsyncClient(base_url=live.base_url, headers=headers, timeout=30) as http:
        last = await http.post(INCIDENTS, json={"title": f"{prefix}-last", "severity": "SEV3"})
        assert last.status_code == 201
    # Woken by NOTIFY, well within the 30 s poll: the worker is alive and listening.
    deadline = time.monotonic() + 15
    while True:
        titles = {m.json()["incident"]["title"] for m in list(rx.delivered)}
        if f"{prefix}-last" in titles:
            break
        assert time.monotonic() < deadline, not_access(live.log())
        await asyncio.sleep(0.1)
    # and everything stored was delivered (at least once)
    stored = await rows_of(fresh_database, prefix)
    deadline = time.monotonic() + 15
    while not set(stored) <= titles:
        assert time.monotonic() < deadline, sorted(set(stored) - titles)[:5]
        await asyncio.sleep(0.2)
        titles = {m.json()["incident"]["title"] for m in list(rx.delivered)}


async def test_only_a_lost_connection_is_a_503_not_a_query_bug(
    settings: Settings, database_url: str
) -> None:
    """asyncpg raises InterfaceError both for a closed connection and for a query our
    code calls wrongly: only the first is 'retry shortly'; the second is a bug, a 500
    with its traceback in the log, not a 503 that hides it."""
    app: FastAPI = create_app(settings)

    @app.get("/api/v1/test-query-bug", include_in_schema=False)
    async def query_bug() -> None:
        async with app.state.pool.acquire() as conn:
            await conn.fetchval("SELECT $1::int + $2::int", 1)  # one argument short

    @app.get("/api/v1/test-closed-connection", include_in_schema=False)
    async def closed_connection() -> None:
        conn = await asyncpg.connect(database_url)
        await conn.close()
        await conn.fetchval("SELECT 1")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://firewatch.test") as c,
    ):
        bug = await c.get("/api/v1/test-query-bug")
        lost = await c.get("/api/v1/test-closed-connection")
    assert bug.status_code == 500, bug.text
    assert "retry-after" not in bug.headers
    assert lost.status_code == 503, lost.text
    assert lost.headers["content-type"] == "application/problem+json"
    assert "retry-after" in lost.headers
