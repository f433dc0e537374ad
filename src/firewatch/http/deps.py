"""Typed access to what the lifespan put on the application state.

``pool``, ``redis_client`` and ``settings`` are FastAPI dependencies and are
``async`` on purpose: FastAPI runs a plain ``def`` dependency in a worker thread,
which costs a thread hop on every request (measured with py-spy under `make bench`).
Code that already holds the request uses the ``app_*`` accessors.
"""

from __future__ import annotations

from typing import cast

from fastapi import Request
from redis.asyncio import Redis

from firewatch.incidents.service import CreateBatcher
from firewatch.runtime.database import PgPool
from firewatch.settings import Settings


def app_pool(request: Request) -> PgPool:
    return cast(PgPool, request.app.state.pool)


def app_creates(request: Request) -> CreateBatcher:
    return cast(CreateBatcher, request.app.state.creates)


def app_redis(request: Request) -> Redis:
    return cast(Redis, request.app.state.redis)


def app_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


async def pool(request: Request) -> PgPool:
    return app_pool(request)


async def redis_client(request: Request) -> Redis:
    return app_redis(request)


async def settings(request: Request) -> Settings:
    return app_settings(request)
