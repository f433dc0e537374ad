"""Brute force: per-account and per-client limits (429 + Retry-After) and lockout."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from firewatch.app import create_app
from firewatch.auth.principal import Role
from firewatch.settings import Settings
from tests.conftest import asgi_client, make_user

LOGIN = "/api/v1/auth/login"


@pytest.fixture(scope="module")
async def strict_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The real app with production-like login limits (the session app has them high)."""
    strict = settings.model_copy(
        update={
            "rate_limit_login_account": "6/minute",
            "rate_limit_login_client": "20/minute",
            "lockout_threshold": 3,
            "lockout_base_seconds": 60,
            "lockout_max_seconds": 600,
        }
    )
    app = create_app(strict)
    async with app.router.lifespan_context(app):
        yield app


def _peer() -> str:
    """A client address of its own, so per-client limits of other tests do not count."""
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


async def _login(c: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await c.post(LOGIN, json={"username": username, "password": password})


async def test_lockout_after_repeated_failures_is_progressive_and_audited(
    strict_app: FastAPI, client: httpx.AsyncClient
) -> None:
    name, password = await make_user(strict_app, Role.RESPONDER)
    async with asgi_client(strict_app, peer=_peer()) as c:
        codes = [(await _login(c, name, "not-the-password-1")).status_code for _ in range(3)]
        assert codes == [401, 401, 401]
        locked = await _login(c, name, password)  # even the right password is refused now
        assert locked.status_code == 429
        assert locked.headers["content-type"] == "application/problem+json"
        assert 1 <= int(locked.headers["retry-after"]) <= 60
    row = await strict_app.state.pool.fetchrow(
        "SELECT failed_logins, locked_until FROM users WHERE username = $1", name
    )
    assert row["failed_logins"] == 3
    assert row["locked_until"] is not None
    entries = (
        await client.get(
            "/api/v1/audit", params={"action": "auth.lockout", "target": f"user:{name}"}
        )
    ).json()["items"]
    assert len(entries) == 1
    assert entries[0]["details"] == {"seconds": 60, "level": 1}
    assert entries[0]["client"] is not None
    assert "10." not in entries[0]["client"]

    # an admin resets the password: the lock is lifted and the new password works
    r = await client.post(f"/api/v1/users/{name}/password", json={})
    assert r.status_code == 200
    async with asgi_client(strict_app, peer=_peer()) as c:
        assert (await _login(c, name, r.json()["password"])).status_code == 200


async def test_second_lockout_doubles(strict_app: FastAPI) -> None:
    name, _password = await make_user(strict_app, Role.VIEWER)
    throttle = strict_app.state.auth.throttle
    first = second = None
    for _ in range(3):
        first = await throttle.failed(name) or first
    for _ in range(3):
        second = await throttle.failed(name) or second
    assert first is not None
    assert second is not None
    assert (first.seconds, second.seconds) == (60, 120)


async def test_unknown_accounts_lock_the_same_way(strict_app: FastAPI) -> None:
    ghost = f"ghost-{secrets.token_hex(4)}"
    async with asgi_client(strict_app, peer=_peer()) as c:
        codes = [(await _login(c, ghost, "guess-number-one")).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]  # no hint that the account does not exist


async def test_per_account_limit_spans_clients(strict_app: FastAPI) -> None:
    name, password = await make_user(strict_app, Role.VIEWER)
    codes = []
    for i in range(7):
        async with asgi_client(strict_app, peer=_peer()) as c:
            # alternate good and bad so the lockout never triggers: only the rate limit
            pw = password if i % 2 == 0 else "wrong-password-x"
            codes.append((await _login(c, name, pw)).status_code)
    assert codes[:6] == [200, 401, 200, 401, 200, 401]
    assert codes[6] == 429


async def test_per_client_limit(strict_app: FastAPI) -> None:
    peer = _peer()
    codes = []
    async with asgi_client(strict_app, peer=peer) as c:
        for i in range(21):
            r = await _login(c, f"spray-{i}-{secrets.token_hex(3)}", "sprayed-password-1")
            codes.append(r.status_code)
    assert codes[:20] == [401] * 20
    assert codes[20] == 429
    async with asgi_client(strict_app, peer=_peer()) as other:  # another client is unaffected
        # a fresh name: a fixed one is locked out by other suites sharing this Redis
        fresh = f"spray-x-{secrets.token_hex(3)}"
        assert (await _login(other, fresh, "sprayed-password-1")).status_code == 401


async def test_api_requests_per_user_are_limited(settings: Settings) -> None:
    tight = settings.model_copy(update={"rate_limit_api_per_minute": 5})
    app = create_app(tight)
    async with app.router.lifespan_context(app):
        name, password = await make_user(app, Role.VIEWER)
        async with asgi_client(app) as anon:
            token = (await _login(anon, name, password)).json()["access_token"]
        async with asgi_client(app, token=token) as c:
            codes = [(await c.get("/api/v1/auth/me")).status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
