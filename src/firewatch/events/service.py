"""Publish timeline entries to Redis after commit; stream them to SSE clients.

Every replica publishes the changes it commits to one Redis pub/sub channel and
every replica's SSE clients subscribe to it, so a client sees changes made
anywhere. Pub/sub is fire-and-forget: the timeline in PostgreSQL is the record,
and a client that reconnects with ``Last-Event-ID`` replays what it missed from it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
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
KEEPALIVE_SECONDS = 15.0


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


def _encode(entry: Mapping[str, Any]) -> bytes:
    return orjson.dumps(event_json(entry), option=orjson.OPT_UTC_Z)


async def publish(redis: Redis, entries: Iterable[Mapping[str, Any]]) -> None:
    """Publish committed timeline entries; a Redis failure is logged, never raised."""
    messages = [_encode(e) for e in entries]
    if not messages:
        return
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.publish(CHANNEL, message)
            await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("live event publish failed", error_type=type(exc).__name__)


def sse_frame(event_id: int, data: bytes) -> bytes:
    return b"id: %d\ndata: %s\n\n" % (event_id, data)


async def stream(
    pool: PgPool, redis: Redis, *, last_event_id: int | None, replay_limit: int
) -> AsyncIterator[bytes]:
    """SSE frames: the replay after ``last_event_id``, then live entries as published.

    Subscribing comes before the replay, so nothing committed in between is lost;
    entries seen in both are sent once.
    """
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(CHANNEL)
        yield b"retry: 2000\n\n"
        replayed: set[int] = set()
        if last_event_id is not None:
            async with pool.acquire() as conn:
                rows = await store.timeline_since(conn, last_event_id, replay_limit)
            for row in rows:
                replayed.add(row["id"])
                yield sse_frame(row["id"], _encode(dict(row)))
        while True:
            message = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=KEEPALIVE_SECONDS
            )
            if message is None:
                yield b": keepalive\n\n"
                continue
            data = message["data"]
            if not isinstance(data, bytes):
                continue
            event_id = int(orjson.loads(data)["id"])
            if event_id in replayed or (last_event_id is not None and event_id <= last_event_id):
                continue
            yield sse_frame(event_id, data)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
