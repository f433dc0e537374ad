"""Publish timeline entries to Redis after commit; stream them to SSE clients.

Every replica publishes the changes it commits to one Redis pub/sub channel and
every replica's SSE clients subscribe to it, so a client sees changes made
anywhere at once. Pub/sub is fire-and-forget: the timeline in PostgreSQL is the
record. A client that reconnects with ``Last-Event-ID`` replays what it missed
from it, and a connected stream also reads the timeline every couple of seconds,
so entries nobody published (a responder's edit through another code path, a
publish lost to a Redis hiccup) still arrive, a little later.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from firewatch.events import store
from firewatch.incidents.model import display_ref
from firewatch.runtime.database import PgPool

log = structlog.get_logger(__name__)

CHANNEL = "firewatch:events"
POLL_SECONDS = 2.0
KEEPALIVE_SECONDS = 15.0
# Identity values are handed out at insert and become visible at commit, which can
# be out of order; the poll re-reads this many ids below the highest one sent.
POLL_TRAILING_IDS = 200
POLL_LIMIT = 500


def event_json(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A timeline entry as it travels on the stream (the SSE ``data`` field)."""
    return {
        "id": entry["id"],
        "incident_id": display_ref(entry["incident_id"]),
        "at": entry["at"],
        "actor": entry["actor"],
        "kind": entry["kind"],
        "before": entry.get("before"),
        "after": entry.get("after"),
        "note": entry.get("note"),
    }


def channel(redis: Redis) -> str:
    """The pub/sub channel of this deployment. Redis channels are server-wide, not per
    database, so it carries the database number, like every key of ours is scoped by
    it: deployments (or test runs) sharing a Redis server on different databases must
    never see each other's incidents (a foreign event would also push a stream's
    last-sent id past its own entries)."""
    db = redis.connection_pool.connection_kwargs.get("db", 0)
    return f"{CHANNEL}:{db}"


def _encode(entry: Mapping[str, Any]) -> bytes:
    return orjson.dumps(event_json(entry), option=orjson.OPT_UTC_Z)


async def publish(redis: Redis, entries: Iterable[Mapping[str, Any]]) -> None:
    """Publish committed timeline entries; a Redis failure is logged, never raised."""
    messages = [_encode(e) for e in entries]
    if not messages:
        return
    try:
        name = channel(redis)
        async with redis.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.publish(name, message)
            await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("live event publish failed", error_type=type(exc).__name__)


def sse_frame(event_id: int, data: bytes) -> bytes:
    return b"id: %d\ndata: %s\n\n" % (event_id, data)


class _Sent:
    """Ids already sent on one stream, so replay, poll and pub/sub never repeat one."""

    def __init__(self, after: int) -> None:
        self.high = after
        self._ids: set[int] = set()

    def fresh(self, event_id: int) -> bool:
        if event_id in self._ids or event_id <= self.high - POLL_TRAILING_IDS:
            return False
        self._ids.add(event_id)
        self.high = max(self.high, event_id)
        if len(self._ids) > 4 * POLL_TRAILING_IDS:
            floor = self.high - POLL_TRAILING_IDS
            self._ids = {i for i in self._ids if i > floor}
        return True


async def stream(
    pool: PgPool,
    redis: Redis,
    *,
    last_event_id: int | None,
    replay_limit: int,
    still_allowed: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIterator[bytes]:
    """SSE frames: the replay after ``last_event_id``, then entries as they commit.

    Subscribing comes before the replay, so nothing committed in between is lost;
    an entry seen by several paths (replay, pub/sub, poll) is sent once.

    ``still_allowed`` is asked every ``POLL_SECONDS`` and before any frame once that
    long has passed: when it answers False (the caller's token expired or was
    revoked, the user was disabled or lost the permission) the stream ends, so an
    open connection never outlives the credential that opened it.
    """
    async with redis.pubsub() as pubsub:  # closed when the client goes away
        await pubsub.subscribe(channel(redis))
        async with pool.acquire() as conn:
            start = last_event_id if last_event_id is not None else await store.latest_id(conn)
        # Only now is the stream open for the client: the start position is fixed, so a
        # change the client makes after seeing this frame is above it and is sent.
        yield b"retry: 2000\n\n"
        sent = _Sent(start)
        floor = start  # nothing at or below the client's Last-Event-ID (or "now") is sent
        if last_event_id is not None:
            async with pool.acquire() as conn:
                rows = await store.timeline_since(conn, last_event_id, replay_limit)
            for row in rows:
                if sent.fresh(row["id"]):
                    yield sse_frame(row["id"], _encode(dict(row)))
        loop = asyncio.get_running_loop()
        next_poll = loop.time() + POLL_SECONDS
        idle_since = loop.time()
        checked = loop.time()
        subscribed = True
        while True:
            timeout = max(0.0, next_poll - loop.time())
            message = None
            try:
                # after a lost connection this connects again and resubscribes
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
                if not subscribed:
                    log.info("live events resubscribed")
                    subscribed = True
            except (RedisError, OSError) as exc:
                # Redis went away (restart, failover, CLIENT KILL): carry on from the
                # timeline poll, which loses nothing, and resubscribe at the next turn
                if subscribed:
                    log.warning("live events subscription lost", error_type=type(exc).__name__)
                    subscribed = False
                await asyncio.sleep(max(0.0, next_poll - loop.time()))
            if still_allowed is not None and loop.time() - checked >= POLL_SECONDS:
                if not await still_allowed():
                    return
                checked = loop.time()
            if message is not None and isinstance(message["data"], bytes):
                data = message["data"]
                event_id = int(orjson.loads(data)["id"])
                if event_id > floor and sent.fresh(event_id):
                    idle_since = loop.time()
                    yield sse_frame(event_id, data)
            if loop.time() >= next_poll:
                next_poll = loop.time() + POLL_SECONDS
                after = max(floor, sent.high - POLL_TRAILING_IDS)
                async with pool.acquire() as conn:
                    rows = await store.timeline_since(conn, after, POLL_LIMIT)
                for row in rows:
                    if sent.fresh(row["id"]):
                        idle_since = loop.time()
                        yield sse_frame(row["id"], _encode(dict(row)))
            if loop.time() - idle_since >= KEEPALIVE_SECONDS:
                idle_since = loop.time()
                yield b": keepalive\n\n"
