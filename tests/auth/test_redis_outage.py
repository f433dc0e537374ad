"""Redis stops mid-test: denylist-dependent requests fail closed (503), the rest work,
and service recovers when Redis returns. Uses its own redis-server (never the shared one)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from firewatch.app import create_app
from firewatch.auth.principal import Role
from firewatch.settings import Settings
from tests.conftest import IntegrationKey, asgi_client, login_token, make_user
from tests.servers import OwnRedis


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_redis_outage_fails_closed_and_recovers(
    settings: Settings, own_redis: OwnRedis, integration_key: IntegrationKey
) -> None:
    app: FastAPI = create_app(settings.model_copy(update={"redis_url": SecretStr(own_redis.url)}))
    async with app.router.lifespan_context(app):
        name, password = await make_user(app, Role.RESPONDER)
        token = await login_token(app, name, password)
        key = await integration_key(["alerts:write"])
        async with asgi_client(app, token=token) as c, asgi_client(app, token=key) as k:
            created = await c.post("/api/v1/incidents", json={"title": "t", "severity": "SEV3"})
            assert created.status_code == 201
            url = f"/api/v1/incidents/{created.json()['id']}"
            assert (await c.get(url)).status_code == 200

            own_redis.stop()
            down = await c.get(url)
            assert down.status_code == 503  # the denylist cannot be checked: fail closed
            assert down.headers["content-type"] == "application/problem+json"
            assert "retry-after" in down.headers
            login = await c.post(
                "/api/v1/auth/login", json={"username": name, "password": password}
            )
            assert login.status_code == 503  # brute-force protection lives in Redis
            # what does not need Redis keeps working
            assert (await c.get("/healthz")).status_code == 200
            assert (await c.get("/.well-known/jwks.json")).status_code == 200
            ready = await c.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"] == {"postgres": "ok", "redis": "unavailable"}
            # an API key is checked against PostgreSQL: authenticated (then forbidden here)
            assert (await k.get(url)).status_code == 403

            own_redis.start()  # same port: the client reconnects by itself
            deadline = time.monotonic() + 10
            while (await c.get(url)).status_code != 200:
                assert time.monotonic() < deadline, "did not recover after Redis returned"
            assert (await c.get(url)).status_code == 200
            assert (await c.get("/readyz")).status_code == 200
