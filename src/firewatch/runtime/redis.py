"""The shared Redis client (ephemeral state only: nothing here is the system of record)."""

from __future__ import annotations

from redis.asyncio import Redis


def create_redis(url: str) -> Redis:
    """Client with short timeouts, so a dead Redis turns into a fast, clear error."""
    return Redis.from_url(
        url,
        socket_connect_timeout=2.0,
        socket_timeout=2.0,
        health_check_interval=30,
        decode_responses=False,
    )
