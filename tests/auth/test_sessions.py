"""Login, refresh rotation and reuse detection, JWKS, against the real app."""

from __future__ import annotations

import httpx
import jwt
from fastapi import FastAPI

from firewatch.auth.principal import Role
from tests.conftest import asgi_client, make_user

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"


async def test_login_me_and_jwks_verify_the_token(
    app: FastAPI, anon_client: httpx.AsyncClient
) -> None:
    name, password = await make_user(app, Role.RESPONDER)
    r = await anon_client.post(LOGIN, json={"username": name.upper(), "password": password})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] > 0
    assert body["refresh_token"].startswith("fwr_")

    jwks = (await anon_client.get("/.well-known/jwks.json")).json()
    header = jwt.get_unverified_header(body["access_token"])
    (jwk,) = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    assert "d" not in jwk  # public parts only
    public = jwt.PyJWK(jwk).key
    claims = jwt.decode(
        body["access_token"], public, algorithms=[jwk["alg"]], audience="firewatch-api"
    )
    assert claims["sub"] == name
    assert claims["role"] == "responder"
    assert {"iss", "aud", "exp", "nbf", "iat", "jti", "sid"} <= set(claims)
    assert claims["exp"] - claims["iat"] == body["expires_in"]

    async with asgi_client(app, token=body["access_token"]) as c:
        me = (await c.get("/api/v1/auth/me")).json()
    assert me["subject"] == name
    assert "incidents:write" in me["permissions"]
    assert "users:admin" not in me["permissions"]


async def test_wrong_password_and_unknown_user_get_the_same_answer(
    app: FastAPI, anon_client: httpx.AsyncClient
) -> None:
    name, _password = await make_user(app, Role.VIEWER)
    bad = await anon_client.post(LOGIN, json={"username": name, "password": "wrong-password-123"})
    unknown = await anon_client.post(
        LOGIN, json={"username": "nobody-here-x", "password": "wrong-password-123"}
    )
    assert bad.status_code == unknown.status_code == 401
    assert bad.json()["detail"] == unknown.json()["detail"]
    assert "wrong-password-123" not in bad.text


async def test_refresh_rotates_and_reuse_revokes_the_family(
    app: FastAPI, anon_client: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    name, password = await make_user(app, Role.VIEWER)
    first = (await anon_client.post(LOGIN, json={"username": name, "password": password})).json()
    r = await anon_client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    async with asgi_client(app, token=second["access_token"]) as c:
        assert (await c.get("/api/v1/auth/me")).status_code == 200

    # the stolen first token is presented again: the whole family dies
    reuse = await anon_client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401
    r = await anon_client.post(REFRESH, json={"refresh_token": second["refresh_token"]})
    assert r.status_code == 401
    async with asgi_client(app, token=second["access_token"]) as c:
        assert (await c.get("/api/v1/auth/me")).status_code == 401  # session denylisted

    audit = (await client.get("/api/v1/audit", params={"action": "auth.refresh_reuse"})).json()
    assert any(e["target"] == f"user:{name}" for e in audit["items"])


async def test_garbage_refresh_tokens_are_401(anon_client: httpx.AsyncClient) -> None:
    for token in ("fwr_nope", "x" * 150, "fwr_" + "A" * 43):
        r = await anon_client.post(REFRESH, json={"refresh_token": token})
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"


async def test_unauthenticated_requests_are_401(anon_client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Basic YWRtaW46YWRtaW4="}, {"Authorization": "Bearer"}):
        r = await anon_client.get("/api/v1/incidents", headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")


async def test_nul_in_a_name_to_look_up_is_a_422_not_a_500(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient
) -> None:
    """PostgreSQL text cannot hold NUL: these names reached the lookup's query (a 500)."""
    r = await anon_client.post(LOGIN, json={"username": "ad\x00min", "password": "x" * 12})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    for method, path, body in [
        ("GET", "/api/v1/users/a%00b", None),
        ("PATCH", "/api/v1/users/a%00b", {"disabled": True}),
        ("POST", "/api/v1/users/a%00b/password", {}),
        ("DELETE", "/api/v1/integrations/keys/a%00b", None),
    ]:
        r = await client.request(method, path, json=body)
        assert r.status_code == 422, (method, path, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    # names without NUL that do not exist are still a plain 404 / 401
    assert (await client.get("/api/v1/users/nobody-here")).status_code == 404
    assert (await client.delete("/api/v1/integrations/keys/abcdefabcdef")).status_code == 404
    r = await anon_client.post(LOGIN, json={"username": "nobody-here", "password": "x" * 12})
    assert r.status_code == 401
