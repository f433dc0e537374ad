"""Session fixtures: one fresh database per test worker, on real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from redis.asyncio import Redis

from firewatch.app import create_app
from firewatch.runtime import migrations
from firewatch.runtime.database import PgPool, create_pool
from firewatch.runtime.redis import create_redis
from firewatch.settings import Settings
from tests import servers


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def admin_database_url(servers_dir: Path) -> Iterator[str]:
    with servers.admin_database_url(servers_dir) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(servers_dir: Path) -> Iterator[str]:
    with servers.redis_base_url(servers_dir) as url:
        yield servers.with_redis_db(url, 1 + servers.worker_index() % 15)


@pytest.fixture(scope="session")
async def database_url(admin_database_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test worker, dropped at the end."""
    name, url = await servers.create_database(admin_database_url)
    await migrations.upgrade(url)
    try:
        yield url
    finally:
        await servers.drop_database(admin_database_url, name)


@pytest.fixture(scope="session")
def settings(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return Settings(
        database_url=SecretStr(database_url),
        redis_url=SecretStr(redis_url),
        data_dir=tmp_path_factory.mktemp("data"),
        migrate_on_start=False,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(application.router.lifespan_context(application))
        yield application


@pytest.fixture(scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://firewatch.test") as c:
        yield c


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[PgPool]:
    p = await create_pool(database_url, min_size=1, max_size=20)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture(scope="session")
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    r = create_redis(redis_url)
    await r.flushdb()
    try:
        yield r
    finally:
        await r.aclose()
