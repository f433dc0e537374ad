"""Attacks on access tokens, against the real app (PostgreSQL + Redis)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from redis.asyncio import Redis

from firewatch.app import create_app
from firewatch.auth.principal import Role
from firewatch.auth.runtime import AuthState
from firewatch.auth.service import issue_token
from firewatch.auth.tokens import MAX_ACCESS_TOKEN_TTL
from firewatch.errors import UnprocessableError
from firewatch.settings import Settings
from tests.conftest import asgi_client, login_token, make_user

ME = "/api/v1/auth/me"


def _auth(app: FastAPI) -> AuthState:
    state: AuthState = app.state.auth
    return state


def _claims(app: FastAPI, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    s = _auth(app).settings
    claims: dict[str, Any] = {
        "iss": s.jwt_issuer,
        "aud": s.jwt_audience,
        "sub": "test-admin",
        "role": "admin",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "ver": 1,
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(app: FastAPI, claims: dict[str, Any], **headers: Any) -> str:
    key = _auth(app).tokens.keys.signing_key
    hdr = {"kid": key.kid, "typ": "at+jwt", **headers}
    return jwt.encode(claims, key.private_key, algorithm=key.alg, headers=hdr)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def _status(app: FastAPI, token: str) -> int:
    async with asgi_client(app, token=token) as c:
        r = await c.get(ME)
        if r.status_code == 401:
            assert r.headers["content-type"] == "application/problem+json"
            assert r.headers["www-authenticate"].startswith("Bearer")
        return r.status_code


async def test_a_well_formed_token_is_accepted(app: FastAPI) -> None:
    assert await _status(app, _sign(app, _claims(app))) == 200


async def test_alg_none_is_rejected(app: FastAPI) -> None:
    key = _auth(app).tokens.keys.signing_key
    header = _b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": key.kid}).encode())
    payload = _b64(json.dumps(_claims(app)).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        assert await _status(app, token) == 401


async def test_hs256_signed_with_the_public_key_is_rejected(app: FastAPI) -> None:
    key = _auth(app).tokens.keys.signing_key
    pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": key.kid}).encode())
    payload = _b64(json.dumps(_claims(app)).encode())
    import hashlib
    import hmac

    sig = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert await _status(app, f"{header}.{payload}.{_b64(sig)}") == 401
    jwk_json = json.dumps(key.public_jwk()).encode()
    sig2 = hmac.new(jwk_json, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert await _status(app, f"{header}.{payload}.{_b64(sig2)}") == 401


async def test_tampered_payload_and_signature_are_rejected(app: FastAPI) -> None:
    viewer_claims = _claims(app, role="viewer")
    token = _sign(app, viewer_claims)
    header, payload, sig = token.split(".")
    escalated = _b64(json.dumps({**viewer_claims, "role": "admin"}).encode())
    assert await _status(app, f"{header}.{escalated}.{sig}") == 401
    flipped = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
    assert await _status(app, f"{header}.{payload}.{flipped}") == 401
    assert await _status(app, f"{header}.{payload}.") == 401
    assert await _status(app, "not-a-jwt") == 401


async def test_signed_by_a_foreign_key_is_rejected(app: FastAPI) -> None:
    foreign = ec.generate_private_key(ec.SECP256R1())
    kid = _auth(app).tokens.keys.signing_key.kid
    token = jwt.encode(
        _claims(app), foreign, algorithm="ES256", headers={"kid": kid, "typ": "at+jwt"}
    )
    assert await _status(app, token) == 401


@pytest.mark.parametrize(
    ("over", "why"),
    [
        ({"exp": -120}, "expired"),
        ({"nbf": 600}, "not valid yet"),
        ({"iss": "evil"}, "wrong issuer"),
        ({"aud": "other-api"}, "wrong audience"),
        ({"aud": ["other-api", "x"]}, "audience list"),
        ({"jti": None}, "no jti"),
        ({"exp": None}, "no exp"),
        ({"role": "superuser"}, "unknown role"),
        ({"ver": None}, "no token version"),
    ],
)
async def test_bad_claims_are_rejected(app: FastAPI, over: dict[str, Any], why: str) -> None:
    now = int(time.time())
    claims = _claims(app)
    for name, value in over.items():
        if isinstance(value, int) and name in ("exp", "nbf"):
            claims[name] = now + value
        elif value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    assert await _status(app, _sign(app, claims)) == 401, why


@pytest.mark.parametrize(
    "kid",
    [
        "unknown-kid",
        "../../../../etc/passwd",
        "../secrets/jwt-keys.json",
        "/dev/null",
        "' OR 1=1 --",
        "k" * 500,
        "",
    ],
)
async def test_unknown_or_injected_kid_is_rejected(app: FastAPI, kid: str) -> None:
    assert await _status(app, _sign(app, _claims(app), kid=kid)) == 401


def _raw_sign(app: FastAPI, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """Sign any header (even one PyJWT would refuse to produce) with the real key."""
    key = _auth(app).tokens.keys.signing_key
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    sig = jwt.get_algorithm_by_name(key.alg).sign(signing_input.encode(), key.private_key)
    return f"{signing_input}.{_b64(sig)}"


async def test_non_string_kid_and_wrong_typ_are_rejected(app: FastAPI) -> None:
    key = _auth(app).tokens.keys.signing_key
    good = {"alg": key.alg, "typ": "at+jwt", "kid": key.kid}
    assert await _status(app, _raw_sign(app, good, _claims(app))) == 200
    for bad in ({"kid": [key.kid]}, {"kid": {"$ref": key.kid}}, {"kid": 7}, {"typ": "JWT"}):
        assert await _status(app, _raw_sign(app, {**good, **bad}, _claims(app))) == 401
    assert await _status(app, _sign(app, _claims(app), typ="JWT")) == 401


async def test_token_of_a_disabled_user_stops_working(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    name, password = await make_user(app, Role.RESPONDER)
    token = await login_token(app, name, password)
    assert await _status(app, token) == 200
    r = await client.patch(f"/api/v1/users/{name}", json={"disabled": True})
    assert r.status_code == 200, r.text
    assert await _status(app, token) == 401
    async with asgi_client(app) as anon:
        r = await anon.post("/api/v1/auth/login", json={"username": name, "password": password})
        assert r.status_code == 401


async def test_role_change_invalidates_old_tokens(app: FastAPI, client: httpx.AsyncClient) -> None:
    name, password = await make_user(app, Role.ADMIN)
    token = await login_token(app, name, password)
    r = await client.patch(f"/api/v1/users/{name}", json={"role": "viewer"})
    assert r.status_code == 200
    assert await _status(app, token) == 401  # the admin token must not survive a demotion
    fresh = await login_token(app, name, password)
    async with asgi_client(app, token=fresh) as c:
        assert (await c.get(ME)).json()["role"] == "viewer"


async def test_logout_denylists_the_token_and_the_refresh_family(app: FastAPI) -> None:
    name, password = await make_user(app, Role.VIEWER)
    async with asgi_client(app) as anon:
        r = await anon.post("/api/v1/auth/login", json={"username": name, "password": password})
        session = r.json()
    token = session["access_token"]
    async with asgi_client(app, token=token) as c:
        assert (await c.get(ME)).status_code == 200
        r = await c.post("/api/v1/auth/logout")
        assert r.status_code == 204
        assert (await c.get(ME)).status_code == 401  # revoked jti
    async with asgi_client(app) as anon:
        r = await anon.post(
            "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
        )
        assert r.status_code == 401


async def test_a_long_lived_token_stays_revoked_as_long_as_it_lives(
    settings: Settings, redis: Redis
) -> None:
    """`token issue --ttl` mints tokens longer than the login TTL. Disabling their user
    raises the version floor in Redis; if that floor expired before the token (it was
    held for the login TTL only), the disabled user's token was accepted again."""
    short = settings.model_copy(update={"access_token_ttl": 60, "token_leeway": 5})
    app = create_app(short)
    async with app.router.lifespan_context(app):
        name, _ = await make_user(app, Role.RESPONDER)
        tokens = _auth(app).tokens
        token = await issue_token(app.state.pool, tokens, name, ttl=MAX_ACCESS_TOKEN_TTL)
        assert await _status(app, token) == 200
        admin, password = await make_user(app, Role.ADMIN)
        async with asgi_client(app, token=await login_token(app, admin, password)) as c:
            r = await c.patch(f"/api/v1/users/{name}", json={"disabled": True})
            assert r.status_code == 200, r.text
        assert await _status(app, token) == 401
        exp = jwt.decode(token, options={"verify_signature": False})["exp"]
        floor_ttl = await redis.ttl(f"fw:deny:user:{name}")
        # the revocation must be remembered until the token (with leeway) is dead
        assert floor_ttl >= exp + short.token_leeway - time.time() - 1, floor_ttl
        # and nothing can mint a token that outlives the revocation record
        with pytest.raises(UnprocessableError):
            await issue_token(app.state.pool, tokens, name, ttl=MAX_ACCESS_TOKEN_TTL + 1)
        with pytest.raises(ValueError, match="access token lives"):
            tokens.issue(name, "admin", version=1, sid=None, ttl=MAX_ACCESS_TOKEN_TTL + 1)
