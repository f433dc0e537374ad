"""Session fixtures: one fresh database per test worker, on real servers."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from redis.asyncio import Redis

from firewatch.app import create_app
from firewatch.auth import service as auth_service
from firewatch.auth.principal import SYSTEM
from firewatch.auth.rbac import Role
from firewatch.auth.runtime import AuthState
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


@asynccontextmanager
async def _migrated_database(admin_database_url: str) -> AsyncIterator[str]:
    name, url = await servers.create_database(admin_database_url)
    await migrations.upgrade(url)
    try:
        yield url
    finally:
        await servers.drop_database(admin_database_url, name)


@pytest.fixture(scope="session")
async def database_url(admin_database_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test worker, dropped at the end."""
    async with _migrated_database(admin_database_url) as url:
        yield url


@pytest.fixture(scope="module")
async def fresh_database(admin_database_url: str) -> AsyncIterator[str]:
    """A migrated database of the test module's own (for a live server, or for gauges
    read from the database that must be exact), dropped after the module."""
    async with _migrated_database(admin_database_url) as url:
        yield url


@pytest.fixture(scope="session")
def settings(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return Settings(
        database_url=SecretStr(database_url),
        redis_url=SecretStr(redis_url),
        data_dir=tmp_path_factory.mktemp("data"),
        migrate_on_start=False,
        **TEST_SECURITY,
    )


# Cheap argon2 (tests are not about its cost; tests/auth checks the defaults separately),
# tokens that outlive the session, and limits no ordinary test reaches. Tests about
# limits and lockout build their own app with strict settings (tests/auth/).
TEST_SECURITY: dict[str, Any] = {
    "password_hash_time_cost": 1,
    "password_hash_memory_kib": 8192,
    "password_hash_parallelism": 1,
    "access_token_ttl": 3600,
    "rate_limit_login_account": "10000/minute",
    "rate_limit_login_client": "10000/minute",
    "rate_limit_api_per_minute": 1_000_000,
    "rate_limit_ingest_per_minute": 1_000_000,
    "lockout_threshold": 100,
    "audit_seal_interval": 0.2,
}
ADMIN_USERNAME = "test-admin"


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(application.router.lifespan_context(application))
        yield application


def asgi_client(
    app: FastAPI, *, token: str | None = None, peer: str = "127.0.0.1"
) -> httpx.AsyncClient:
    """An httpx client over ASGI (peer address ``peer``), with a bearer token if given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.ASGITransport(app=app, client=(peer, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://firewatch.test", headers=headers)


async def login_token(app: FastAPI, username: str, password: str) -> str:
    async with asgi_client(app) as c:
        r = await c.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        token: str = r.json()["access_token"]
        return token


_user_numbers = itertools.count(1)


async def make_user(app: FastAPI, role: Role, username: str | None = None) -> tuple[str, str]:
    """Create a user directly through the service; returns (username, password)."""
    name = username or f"{role.value}-{secrets.token_hex(4)}-{next(_user_numbers)}"
    password = secrets.token_urlsafe(18)
    auth: AuthState = app.state.auth
    await auth_service.create_user(app.state.pool, auth.hasher, SYSTEM, name, role, password)
    return name, password


@pytest.fixture(scope="session")
async def admin_token(app: FastAPI) -> str:
    name, password = await make_user(app, Role.ADMIN, ADMIN_USERNAME)
    return await login_token(app, name, password)


@pytest.fixture(scope="session")
async def client(app: FastAPI, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    """Authenticated as the ADMIN user ``test-admin`` (bearer access token)."""
    async with asgi_client(app, token=admin_token) as c:
        yield c


@pytest.fixture(scope="session")
async def anon_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """No credentials at all."""
    async with asgi_client(app) as c:
        yield c


ClientFor = Callable[[Role | str], Awaitable[httpx.AsyncClient]]


@pytest.fixture(scope="session")
async def client_for(app: FastAPI) -> AsyncIterator[ClientFor]:
    """``await client_for("responder")``: a client logged in as a user of that role.

    One user and client per role for the session; treat them as shared (do not log
    them out or change their role; make your own user with ``make_user`` for that).
    """
    clients: dict[Role, httpx.AsyncClient] = {}

    async def factory(role: Role | str) -> httpx.AsyncClient:
        wanted = Role(role)
        if wanted not in clients:
            name, password = await make_user(app, wanted)
            clients[wanted] = asgi_client(app, token=await login_token(app, name, password))
        return clients[wanted]

    try:
        yield factory
    finally:
        for c in clients.values():
            await c.aclose()


IntegrationKey = Callable[..., Awaitable[str]]


@pytest.fixture(scope="session")
async def integration_key(app: FastAPI) -> IntegrationKey:
    """``await integration_key(["alerts:write"])``: a new raw ``fw_...`` API key."""

    async def factory(scopes: list[str] | tuple[str, ...] = ("alerts:write",)) -> str:
        name = f"it-{secrets.token_hex(5)}"
        _row, key = await auth_service.create_api_key(app.state.pool, SYSTEM, name, list(scopes))
        return key

    return factory


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
