"""Typed access to what the lifespan put on the application state."""

from __future__ import annotations

from typing import cast

from fastapi import Request
from redis.asyncio import Redis

from firewatch.runtime.database import PgPool
from firewatch.settings import Settings


def pool(request: Request) -> PgPool:
    return cast(PgPool, request.app.state.pool)


def redis_client(request: Request) -> Redis:
    return cast(Redis, request.app.state.redis)


def settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)
