"""Walk every route of the application against the one permission matrix.

Each /api/v1 route must declare exactly one permission (``require(...)``), or be in
the short lists of public and any-authenticated routes below. Then every role (and
integration keys of each scope) calls every route: forbidden ones must answer 403,
allowed ones must get past authorization. Routes added later by other features are
walked automatically.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from firewatch.auth.principal import Principal, Role
from firewatch.auth.rbac import (
    INTEGRATION_SCOPES,
    ROLE_PERMISSIONS,
    Permission,
    is_allowed,
)
from tests.conftest import ClientFor, IntegrationKey, asgi_client

PUBLIC = {
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    # authenticated by its HMAC signature per integration, not by a principal
    ("POST", "/api/v1/integrations/webhook/{integration}"),
}
# Endless streams: an allowed caller would never see the end of the answer over
# ASGI, so they are called only where the answer must be 401/403.
STREAMS = {("GET", "/api/v1/events")}
ANY_AUTHENTICATED = {
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/auth/me"),
}
# Mutations that must hold for people; a test below asserts the matrix says so.
ESCALATION_FREE = {Role.VIEWER: {Permission.INCIDENTS_WRITE, Permission.USERS_ADMIN}}


def _api_routes(app: FastAPI) -> Iterator[tuple[str, str, list[str] | None]]:
    """(method, path, security scopes or None for a public route), from OpenAPI.

    The OpenAPI document is generated from each route's real dependency tree, and
    ``require(...)`` declares its permission as the bearer scheme's scope.
    """
    for path, operations in app.openapi()["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, op in operations.items():
            security = op.get("security")
            scopes = None if not security else [s for req in security for s in req["bearer"]]
            yield method.upper(), path, scopes


def _requirements(scopes: list[str] | None) -> list[Permission]:
    return [Permission(s) for s in scopes or []]


def _concrete(path: str) -> str:
    # a syntactically valid value for each path parameter; the target need not exist
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_api_route_declares_exactly_one_permission(app: FastAPI) -> None:
    seen = 0
    for method, path, scopes in _api_routes(app):
        perms = _requirements(scopes)
        if (method, path) in PUBLIC:
            assert scopes is None, f"{method} {path} should be public"
            continue
        assert scopes is not None, f"{method} {path} is not authenticated"
        if (method, path) in ANY_AUTHENTICATED:
            assert perms == [], f"{method} {path} should not need a permission"
            continue
        assert len(perms) == 1, f"{method} {path} declares {perms}: needs exactly one"
        seen += 1
    assert seen >= 7


def test_matrix_shape() -> None:
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)
    assert ROLE_PERMISSIONS[Role.VIEWER] < ROLE_PERMISSIONS[Role.RESPONDER]
    for perm in ESCALATION_FREE[Role.VIEWER]:
        assert perm not in ROLE_PERMISSIONS[Role.VIEWER]
    for role in (Role.VIEWER, Role.RESPONDER):
        for perm in (
            Permission.USERS_ADMIN,
            Permission.AUDIT_READ,
            Permission.INTEGRATIONS_ADMIN,
            Permission.MODELS_ADMIN,
        ):
            assert perm not in ROLE_PERMISSIONS[role]
    assert frozenset({Permission.ALERTS_WRITE, Permission.SIGNALS_WRITE}) == INTEGRATION_SCOPES
    # an integration holds only its scopes, and never more than ingestion
    key = Principal("k", "integration", "integration", scopes=frozenset({"alerts:write"}))
    assert is_allowed(key, Permission.ALERTS_WRITE)
    assert not is_allowed(key, Permission.SIGNALS_WRITE)
    forged = Principal("k", "integration", "admin", scopes=frozenset({"users:admin"}))
    assert not is_allowed(forged, Permission.USERS_ADMIN)
    assert not is_allowed(Principal("x", "user", "root"), Permission.INCIDENTS_READ)


async def _call(c: httpx.AsyncClient, method: str, path: str) -> httpx.Response:
    body: dict[str, object] | None = {} if method in ("POST", "PATCH", "PUT") else None
    return await c.request(method, _concrete(path), json=body)


@pytest.mark.parametrize("role", list(Role))
async def test_each_role_against_every_route(
    app: FastAPI, client_for: ClientFor, role: Role
) -> None:
    c = await client_for(role)
    allowed = ROLE_PERMISSIONS[role]
    for method, path, scopes in _api_routes(app):
        if (method, path) in PUBLIC | ANY_AUTHENTICATED:
            continue
        (perm,) = _requirements(scopes)
        if perm in allowed and (method, path) in STREAMS:
            continue
        r = await _call(c, method, path)
        if perm in allowed:
            assert r.status_code not in (401, 403), f"{role} {method} {path}: {r.text}"
        else:
            assert r.status_code == 403, f"{role} {method} {path} -> {r.status_code}"
            assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("scope", sorted(p.value for p in INTEGRATION_SCOPES))
async def test_integration_keys_reach_only_their_scope(
    app: FastAPI, integration_key: IntegrationKey, scope: str
) -> None:
    key = await integration_key([scope])
    async with asgi_client(app, token=key) as c:
        for method, path, scopes in _api_routes(app):
            if (method, path) in PUBLIC:
                continue
            perms = _requirements(scopes)
            if perms == [Permission(scope)] and (method, path) in STREAMS:
                continue
            r = await _call(c, method, path)
            if perms == [Permission(scope)]:
                assert r.status_code not in (401, 403), f"{scope} {method} {path}: {r.text}"
            elif (method, path) in ANY_AUTHENTICATED:
                assert r.status_code in (200, 422), f"{scope} {method} {path}"
            else:
                assert r.status_code == 403, f"key {scope}: {method} {path} -> {r.status_code}"


async def test_anonymous_gets_401_on_every_protected_route(
    app: FastAPI, anon_client: httpx.AsyncClient
) -> None:
    for method, path, _scopes in _api_routes(app):
        if (method, path) in PUBLIC:
            continue
        r = await _call(anon_client, method, path)
        assert r.status_code == 401, f"{method} {path} -> {r.status_code}"
