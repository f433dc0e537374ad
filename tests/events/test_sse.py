"""Live events: a change committed by one process reaches SSE clients of another."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from firewatch.auth.principal import Role
from firewatch.events import service as events_service
from firewatch.runtime.redis import create_redis
from firewatch.settings import Settings
from tests import servers
from tests.alerts.conftest import load_fixture
from tests.conftest import make_user

AM = "/api/v1/integrations/alertmanager"


@pytest.fixture(scope="module")
def replica(
    tmp_path_factory: pytest.TempPathFactory, settings: Settings, database_url: str, redis_url: str
) -> Iterator[str]:
    """A second firewatch process on the same PostgreSQL, Redis and keys."""
    env = {
        "FIREWATCH_DATABASE_URL": database_url,
        "FIREWATCH_REDIS_URL": redis_url,
        "FIREWATCH_DATA_DIR": str(settings.data_dir),
        "FIREWATCH_MIGRATE_ON_START": "false",
    }
    log = tmp_path_factory.mktemp("sse") / "firewatch.log"
    with servers.live_server(env, log) as fw:
        yield fw.base_url


async def events(
    base_url: str, token: str, headers: dict[str, str] | None = None
) -> AsyncGenerator[dict[str, Any]]:
    """Parse the stream into {id, data} events; first {"ready": True} once it is open."""
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30) as http,
        http.stream(
            "GET", "/api/v1/events", headers={"Authorization": f"Bearer {token}", **(headers or {})}
        ) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        current: dict[str, Any] = {}
        async for line in r.aiter_lines():
            if line.startswith("retry: "):
                yield {"ready": True}  # subscribed, and the start position is fixed
            elif line.startswith("id: "):
                current["id"] = int(line[4:])
            elif line.startswith("data: "):
                current["data"] = orjson.loads(line[6:])
            elif line == "" and "data" in current:
                yield current
                current = {}


def payload() -> dict[str, Any]:
    body = load_fixture("firing-single.json")
    body["groupKey"] = f"sse-{uuid.uuid4().hex}"
    return body


async def next_matching(
    stream: AsyncIterator[dict[str, Any]], ref: str, kind: str
) -> dict[str, Any]:
    async with asyncio.timeout(60):
        async for event in stream:
            if (
                "data" in event
                and event["data"]["incident_id"] == ref
                and event["data"]["kind"] == kind
            ):
                return event
    raise AssertionError("stream ended")


async def test_change_on_one_replica_reaches_another(
    replica: str, client: httpx.AsyncClient, admin_token: str
) -> None:
    stream = events(replica, admin_token)
    assert await asyncio.wait_for(anext(stream), 60) == {"ready": True}
    r = await client.post(AM, json=payload())  # committed by this test's in-process app
    ref = r.json()["incident"]
    created = await next_matching(stream, ref, "created")
    assert created["id"] == created["data"]["id"]
    joined = await next_matching(stream, ref, "alerts_joined")
    assert joined["id"] > created["id"]
    assert joined["data"]["after"]["alerts"][0]["fingerprint"] == "d17ad377723157fa"
    await stream.aclose()

    # Resume after the 'created' entry: the replay starts with what came after it.
    resumed = events(replica, admin_token, {"Last-Event-ID": str(created["id"])})
    assert await asyncio.wait_for(anext(resumed), 60) == {"ready": True}
    replayed = await asyncio.wait_for(anext(resumed), 60)
    assert replayed["id"] == joined["id"]
    await resumed.aclose()


async def test_events_need_authentication_and_a_valid_last_event_id(
    replica: str, admin_token: str
) -> None:
    async with httpx.AsyncClient(base_url=replica, timeout=10) as http:
        r = await http.get("/api/v1/events")
        assert r.status_code == 401
        r = await http.get(
            "/api/v1/events",
            headers={"Authorization": f"Bearer {admin_token}", "Last-Event-ID": "abc"},
        )
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"


async def test_changes_nobody_published_still_arrive(
    replica: str, client: httpx.AsyncClient, admin_token: str
) -> None:
    """A responder's transition (not published to Redis) reaches the stream by its poll."""
    r = await client.post(
        "/api/v1/incidents", json={"title": "manual incident", "severity": "SEV4"}
    )
    assert r.status_code == 201, r.text
    ref = r.json()["id"]
    stream = events(replica, admin_token)
    assert await asyncio.wait_for(anext(stream), 60) == {"ready": True}
    reader = asyncio.ensure_future(next_matching(stream, ref, "status_changed"))
    r = await client.post(f"/api/v1/incidents/{ref}/transitions", json={"to": "acknowledged"})
    assert r.status_code == 200, r.text
    event = await asyncio.wait_for(reader, 60)
    assert event["data"]["after"] == {"status": "acknowledged"}
    await stream.aclose()


async def test_deployments_on_other_redis_databases_never_see_our_events(
    redis_url: str,
) -> None:
    """Pub/sub channels are server-wide: ours carries the database number."""
    ours = create_redis(redis_url)
    other_db = (servers.redis_db(redis_url) + 1) % 16
    theirs = create_redis(servers.with_redis_db(redis_url, other_db))
    entry = {"id": 1, "incident_id": 1, "at": "2026-11-27T00:00:00Z", "actor": "a", "kind": "k"}
    try:
        assert events_service.channel(ours) != events_service.channel(theirs)
        async with ours.pubsub() as listening:  # closed on failure too
            await listening.subscribe(events_service.channel(ours))
            await listening.get_message(timeout=5)  # the subscribe confirmation
            await events_service.publish(theirs, [{**entry, "id": 2}])
            await events_service.publish(ours, [entry])
            got = await listening.get_message(ignore_subscribe_messages=True, timeout=5)
            assert got is not None
            assert orjson.loads(got["data"])["id"] == 1  # only ours arrived
            assert await listening.get_message(ignore_subscribe_messages=True, timeout=0.5) is None
    finally:
        await ours.aclose()
        await theirs.aclose()


async def _ended(stream: AsyncIterator[dict[str, Any]], within: float) -> list[dict[str, Any]]:
    """Everything the stream still sends until it ends (TimeoutError if it does not)."""
    received = []
    async with asyncio.timeout(within):
        async for event in stream:
            received.append(event)
    return received


@pytest.mark.parametrize("revoke", ["disable", "logout"])
async def test_a_stream_ends_when_its_credential_is_revoked(
    replica: str, app: FastAPI, client: httpx.AsyncClient, revoke: str
) -> None:
    """An open stream used to outlive the token that opened it: a disabled (or logged
    out) user kept receiving every incident change for as long as it stayed open."""
    name, password = await make_user(app, Role.VIEWER)
    token = servers.bearer(replica, name, password)["Authorization"].removeprefix("Bearer ")
    stream = events(replica, token)
    assert await asyncio.wait_for(anext(stream), 60) == {"ready": True}
    if revoke == "disable":
        r = await client.patch(f"/api/v1/users/{name}", json={"disabled": True})
        assert r.status_code == 200, r.text
    else:
        async with httpx.AsyncClient(base_url=replica, timeout=10) as http:
            r = await http.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 204, r.text
    # the stream re-checks its credential every POLL_SECONDS and then ends
    await asyncio.sleep(events_service.POLL_SECONDS + 0.5)
    ref = (await client.post(AM, json=payload())).json()["incident"]
    leaked = await _ended(stream, within=events_service.POLL_SECONDS * 3)
    assert [e for e in leaked if e.get("data", {}).get("incident_id") == ref] == []


async def test_an_open_stream_does_not_spend_the_request_budget(
    replica: str, app: FastAPI, redis: Redis
) -> None:
    """The stream re-checks its credential every POLL_SECONDS; each check used to count
    as a request against FIREWATCH_RATE_LIMIT_API_PER_MINUTE (30 a minute per open
    stream), so a dashboard left open ate the budget of its user's real requests."""
    name, password = await make_user(app, Role.VIEWER)
    token = servers.bearer(replica, name, password)["Authorization"].removeprefix("Bearer ")
    stream = events(replica, token)
    try:
        assert await asyncio.wait_for(anext(stream), 60) == {"ready": True}
        counted = await redis.get(f"fw:rl:api:{name}")
        assert counted is not None  # opening the stream was a request, and counted
        await asyncio.sleep(events_service.POLL_SECONDS * 2.5)  # two re-checks, or more
        assert await redis.get(f"fw:rl:api:{name}") == counted
    finally:
        await stream.aclose()


async def _kill_subscribers(redis_url: str) -> int:
    """CLIENT KILL every pub/sub connection to this run's Redis database (only)."""
    redis = create_redis(redis_url)
    try:
        db = redis.connection_pool.connection_kwargs.get("db", 0)
        killed = 0
        for c in await redis.client_list():
            if int(c["db"]) == db and "P" in c["flags"]:
                killed += int(await redis.client_kill_filter(_id=c["id"]))
        return killed
    finally:
        await redis.aclose()


async def _subscribers(redis_url: str) -> int:
    redis = create_redis(redis_url)
    try:
        [(_, count)] = await redis.pubsub_numsub(events_service.channel(redis))
        return int(count)
    finally:
        await redis.aclose()


async def test_a_stream_outlives_its_killed_redis_connection(
    replica: str, client: httpx.AsyncClient, admin_token: str, redis_url: str
) -> None:
    """A stream whose pub/sub connection Redis closed used to end mid-chunk with an
    ASGI traceback; it now goes on from the timeline poll and subscribes again."""
    stream = events(replica, admin_token)
    assert await asyncio.wait_for(anext(stream), 60) == {"ready": True}
    assert await _kill_subscribers(redis_url) >= 1
    r = await client.post(AM, json=payload())
    ref = r.json()["incident"]
    await next_matching(stream, ref, "created")  # the stream is still open
    for _ in range(50):  # and subscribed again
        if await _subscribers(redis_url) >= 1:
            break
        await asyncio.sleep(0.2)
    assert await _subscribers(redis_url) >= 1
    r = await client.post(AM, json=payload())
    await next_matching(stream, r.json()["incident"], "created")
    await stream.aclose()
