"""Password policy and hashing parameters; integration API keys."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from firewatch.auth import apikeys
from firewatch.auth.passwords import Hasher, check_policy, generate_password
from firewatch.auth.principal import Role
from firewatch.errors import UnprocessableError
from firewatch.runtime.database import PgPool
from firewatch.settings import Settings
from tests.conftest import ClientFor, IntegrationKey, asgi_client, login_token


@pytest.mark.parametrize(
    "password",
    [
        "short-one",
        "password1234",
        "Qwertyuiop123",
        "aaaaaaaaaaaaaaaa",
        "xx-alice-in-it-xx",
        "a\x00" * 8,
    ],
)
def test_policy_refuses_weak_passwords(password: str) -> None:
    with pytest.raises(UnprocessableError) as info:
        check_policy(password, username="alice")
    assert password not in info.value.detail


def test_policy_accepts_a_long_uncommon_password() -> None:
    check_policy("correct-kettle-staple-41", username="alice")


@pytest.mark.parametrize("username", ["q", "7", "ab", None])
def test_a_generated_password_passes_the_policy(username: str | None) -> None:
    """A one-character username is in about half of all random 24-character strings;
    the generator draws again rather than hand out what the policy refuses."""
    for _ in range(200):
        password = generate_password(username)
        check_policy(password, username=username)
        assert len(password) == 24


async def test_resetting_a_short_usernames_password_always_works(
    client: httpx.AsyncClient,
) -> None:
    """schemathesis (tests/http/test_fuzz_openapi.py): a reset of user "0" was a 200
    or a 422 "must not contain the username" at random (and, for no such user, a 404
    or that 422)."""
    r = await client.post(
        "/api/v1/users",
        json={"username": "q", "role": "viewer", "password": "correct-kettle-staple-41"},
    )
    assert r.status_code == 201, r.text
    for _ in range(12):  # all twelve passed with a chance of 1 in ~9,000 before
        r = await client.post("/api/v1/users/q/password", json={})
        assert r.status_code == 200, r.text
        assert "q" not in r.json()["password"].lower()
    r = await client.post("/api/v1/users/no-such-user-0/password", json={})
    assert r.status_code == 404, r.text


def test_defaults_are_rfc9106_argon2id() -> None:
    s = Settings()
    assert (s.password_hash_time_cost, s.password_hash_memory_kib, s.password_hash_parallelism) == (
        3,
        65536,
        4,
    )


async def test_hash_format_and_rehash_on_login(app: FastAPI, pool: PgPool) -> None:
    other = Hasher(time_cost=2, memory_kib=8192, parallelism=1, concurrency=1)
    stored = await other.hash("rehash-me-please-77")
    assert stored.startswith("$argon2id$v=19$m=8192,t=2,p=1$")
    await pool.execute(
        "INSERT INTO users (username, role, password_hash) VALUES ('rehash-user', 'viewer', $1)",
        stored,
    )
    await login_token(app, "rehash-user", "rehash-me-please-77")
    new = await pool.fetchval("SELECT password_hash FROM users WHERE username = 'rehash-user'")
    assert new.startswith("$argon2id$v=19$m=8192,t=1,p=1$")  # the app's current parameters
    await login_token(app, "rehash-user", "rehash-me-please-77")  # and it still works


async def test_create_user_validates_and_never_returns_the_hash(
    client: httpx.AsyncClient,
) -> None:
    weak = await client.post(
        "/api/v1/users", json={"username": "weakling", "role": "viewer", "password": "password1234"}
    )
    assert weak.status_code == 422
    r = await client.post(
        "/api/v1/users",
        json={"username": "Carol.Ops", "role": "responder", "password": "carrot-lantern-991"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["username"] == "carol.ops"
    assert "hash" not in r.text
    assert "carrot" not in r.text
    dup = await client.post(
        "/api/v1/users",
        json={"username": "carol.ops", "role": "viewer", "password": "carrot-lantern-992"},
    )
    assert dup.status_code == 409


def test_api_key_format() -> None:
    key_id, key, secret_hash = apikeys.new_key()
    assert key.startswith(f"fw_{key_id}_")
    parsed = apikeys.parse(key)
    assert parsed is not None
    assert parsed[0] == key_id
    assert apikeys.secret_matches(parsed[1], secret_hash)
    assert not apikeys.secret_matches(parsed[1][:-1] + "x", secret_hash)
    assert apikeys.parse("fw_short_x") is None


async def test_api_key_lifecycle(
    app: FastAPI, client: httpx.AsyncClient, integration_key: IntegrationKey, pool: PgPool
) -> None:
    created = await client.post(
        "/api/v1/integrations/keys", json={"name": "alertmanager-prod", "scopes": ["alerts:write"]}
    )
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    body = created.json()
    key = body["key"]
    assert key.startswith(f"fw_{body['id']}_")
    listed = (await client.get("/api/v1/integrations/keys")).json()
    assert key not in str(listed)  # shown once
    bad_scope = await client.post(
        "/api/v1/integrations/keys", json={"name": "x", "scopes": ["users:admin"]}
    )
    assert bad_scope.status_code == 422

    async with asgi_client(app, token=key) as c:
        assert (await c.get("/api/v1/auth/me")).json()["permissions"] == ["alerts:write"]
        assert (await c.get("/api/v1/incidents")).status_code == 403
    used = await pool.fetchval("SELECT last_used_at FROM api_keys WHERE key_id = $1", body["id"])
    assert used is not None

    assert (await client.delete(f"/api/v1/integrations/keys/{body['id']}")).status_code == 200
    async with asgi_client(app, token=key) as c:
        assert (await c.get("/api/v1/auth/me")).status_code == 401
    forged = key[:-4] + "AAAA"
    other = await integration_key(["signals:write"])
    async with asgi_client(app, token=forged) as c, asgi_client(app, token=other) as s:
        assert (await c.get("/api/v1/auth/me")).status_code == 401
        assert (await s.get("/api/v1/auth/me")).json()["permissions"] == ["signals:write"]


async def test_viewer_cannot_escalate(client_for: ClientFor) -> None:
    viewer = await client_for(Role.VIEWER)
    me = (await viewer.get("/api/v1/auth/me")).json()
    for attempt in (
        viewer.patch(f"/api/v1/users/{me['subject']}", json={"role": "admin"}),
        viewer.post("/api/v1/users", json={"username": "x", "role": "admin", "password": "p" * 12}),
        viewer.post("/api/v1/integrations/keys", json={"name": "x", "scopes": ["alerts:write"]}),
        viewer.post("/api/v1/incidents", json={"title": "x", "severity": "SEV1"}),
    ):
        assert (await attempt).status_code == 403
