"""DirectRoute (http/direct.py): GET incident, create and comment answered without
FastAPI's dependency solver, with the same answers as through it, on the real app
(PostgreSQL, Redis)."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from starlette.responses import JSONResponse, Response

from firewatch.auth.principal import Principal
from firewatch.auth.rbac import Permission, require
from firewatch.http.direct import DirectRoute
from firewatch.incidents import api as incidents_api
from tests.conftest import ClientFor, IntegrationKey, asgi_client


def effective_routes(app: FastAPI, router: APIRouter) -> dict[tuple[str, str], bool]:
    """(method, path) -> whether the route app serves is direct, as included in ``app``."""
    out: dict[tuple[str, str], bool] = {}
    for included in app.router.routes:  # FastAPI 0.165 keeps an included router whole
        if getattr(included, "original_router", None) is router:
            candidates = getattr(included, "effective_candidates", None)
            assert candidates is not None
            for context in candidates():
                route = context.original_route
                for method in route.methods:
                    out[(method, route.path)] = route.direct
    return out


async def test_get_create_and_comment_are_direct(app: FastAPI) -> None:
    declared = {
        (r.path, frozenset(r.methods or ()))
        for r in incidents_api.router.routes
        if isinstance(r, DirectRoute)
    }
    routes = {
        (method, r.path): r.direct
        for r in app.router.routes
        if isinstance(r, DirectRoute) and (r.path, frozenset(r.methods or ())) in declared
        for method in r.methods or ()
    }
    assert routes.pop(("GET", "/api/v1/incidents/{ref}")) is True
    assert routes.pop(("POST", "/api/v1/incidents")) is True
    assert routes.pop(("POST", "/api/v1/incidents/{ref}/comments")) is True
    assert routes  # the others have query parameters or headers: FastAPI's handler
    assert not any(routes.values())


async def test_get_incident_answers_as_through_fastapi(
    app: FastAPI,
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    integration_key: IntegrationKey,
) -> None:
    created = await client.post("/api/v1/incidents", json={"title": "direct", "severity": "SEV3"})
    assert created.status_code == 201
    ref = created.json()["id"]
    got = await client.get(f"/api/v1/incidents/{ref}")
    assert got.status_code == 200
    assert got.json() == created.json()
    assert got.headers["etag"] == created.headers["etag"]
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-content-type-options"] == "nosniff"  # the middlewares still run
    assert "x-request-id" in got.headers

    missing = await anon_client.get(f"/api/v1/incidents/{ref}")
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.headers["www-authenticate"] == 'Bearer realm="firewatch"'

    async with asgi_client(app, token=await integration_key(["alerts:write"])) as key:
        forbidden = await key.get(f"/api/v1/incidents/{ref}")
    assert forbidden.status_code == 403
    assert "incidents:read" in forbidden.json()["detail"]

    for bad, status in (("INC-0x1", 404), ("INC-99999999", 404), ("nope", 404)):
        r = await client.get(f"/api/v1/incidents/{bad}")
        assert r.status_code == status, (bad, r.text)
        assert r.json()["instance"] == f"/api/v1/incidents/{bad}"
    assert (await client.delete(f"/api/v1/incidents/{ref}")).status_code == 405


def _router(**include: Any) -> tuple[FastAPI, APIRouter, list[str]]:
    calls: list[str] = []
    router = APIRouter(route_class=DirectRoute)

    @router.get("/things/{name}")
    async def thing(
        name: str,
        caller: Annotated[Principal, require(Permission.INCIDENTS_READ)],
        request: Request,
    ) -> Response:
        calls.append(f"endpoint {name} {caller.subject}")
        return JSONResponse({"name": name})

    app = FastAPI()
    app.include_router(router, **include)
    return app, router, calls


async def test_dependencies_added_by_include_router_keep_fastapis_handler() -> None:
    def gate() -> None:
        raise HTTPException(418, "the include's own dependency ran")

    app, router, calls = _router(dependencies=[Depends(gate)])
    assert effective_routes(app, router) == {("GET", "/things/{name}"): False}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/things/a")
    assert r.status_code == 418  # never skipped, before authentication was even tried
    assert calls == []


async def test_dependency_overrides_are_honoured() -> None:
    app, router, calls = _router()
    assert effective_routes(app, router) == {("GET", "/things/{name}"): True}
    (route,) = router.routes
    assert isinstance(route, DirectRoute)
    (requirement,) = [d.call for d in route.dependant.dependencies]
    assert requirement is not None
    app.dependency_overrides[requirement] = lambda: Principal(
        subject="stand-in", kind="user", role="admin"
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/things/b")
    assert r.status_code == 200
    assert calls == ["endpoint b stand-in"]


def _unused() -> None:
    """A dependency override nothing depends on: while any override is set, a
    DirectRoute hands the request to FastAPI's own handler."""


_VOLATILE = ("id", "number", "opened_at", "updated_at", "at")
_GOOD = b'{"title": "t", "severity": "SEV3", "labels": {"env": "prod"}}'
_BODY_CASES: list[tuple[str, str, dict[str, str], bytes]] = [
    ("valid", "admin", {"content-type": "application/json"}, _GOOD),
    ("charset", "admin", {"content-type": "application/json; charset=utf-8"}, _GOOD),
    ("+json", "admin", {"content-type": "application/vnd.firewatch+json"}, _GOOD),
    ("no content type", "admin", {}, _GOOD),
    ("text/plain", "admin", {"content-type": "text/plain"}, _GOOD),
    ("malformed", "admin", {"content-type": "application/json"}, b'{"title": '),
    ("not utf-8", "admin", {"content-type": "application/json"}, b'{"title": "\xff\xfe"}'),
    ("raw bytes", "admin", {"content-type": "application/json"}, b"\xff\xfe\x00"),
    ("empty", "admin", {"content-type": "application/json"}, b""),
    ("array", "admin", {"content-type": "application/json"}, b"[]"),
    ("null", "admin", {"content-type": "application/json"}, b"null"),
    (
        "wrong types",
        "admin",
        {"content-type": "application/json"},
        b'{"title": 5, "severity": "SEV9"}',
    ),
    (
        "extra field",
        "admin",
        {"content-type": "application/json"},
        b'{"title": "t", "severity": "SEV3", "x": 1}',
    ),
    ("missing title", "admin", {"content-type": "application/json"}, b'{"severity": "SEV3"}'),
    (
        "nul",
        "admin",
        {"content-type": "application/json"},
        b'{"title": "a\\u0000b", "severity": "SEV3"}',
    ),
    ("anonymous", "anonymous", {"content-type": "application/json"}, _GOOD),
    ("anonymous malformed", "anonymous", {"content-type": "application/json"}, b"{"),
    ("anonymous invalid", "anonymous", {"content-type": "application/json"}, b"{}"),
    ("viewer", "viewer", {"content-type": "application/json"}, _GOOD),
    ("viewer invalid", "viewer", {"content-type": "application/json"}, b"{}"),
    ("too large", "admin", {"content-type": "application/json"}, b" " * 2_000_000 + _GOOD),
]


def _comparable(response: httpx.Response) -> tuple[int, str | None, Any]:
    kind = response.headers.get("content-type")
    body: Any = response.content
    if kind and "json" in kind:
        body = response.json()
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k not in _VOLATILE}
    return response.status_code, kind, body


async def test_bodies_are_answered_as_fastapi_answers_them(
    app: FastAPI, admin_token: str, client_for: ClientFor, client: httpx.AsyncClient
) -> None:
    """Each request twice, through the direct handler and through FastAPI's (forced by
    an override): the same status, content type and body, for create and comment."""
    viewer = await client_for("viewer")
    created = await client.post("/api/v1/incidents", json={"title": "c", "severity": "SEV4"})
    ref = created.json()["id"]
    comment_cases = [
        ("comment", "admin", {"content-type": "application/json"}, b'{"body": "looking"}'),
        ("comment malformed", "admin", {"content-type": "application/json"}, b'{"body"'),
        ("comment empty", "admin", {"content-type": "application/json"}, b'{"body": ""}'),
        ("comment anonymous", "anonymous", {}, b'{"body": "x"}'),
    ]
    async with asgi_client(app) as anonymous:
        callers = {"admin": client, "anonymous": anonymous, "viewer": viewer}
        cases = [("/api/v1/incidents", *case) for case in _BODY_CASES]
        cases += [(f"/api/v1/incidents/{ref}/comments", *case) for case in comment_cases]
        for path, name, who, headers, body in cases:
            caller = callers[who]
            direct = await caller.post(path, content=body, headers=headers)
            app.dependency_overrides[_unused] = _unused
            try:
                standard = await caller.post(path, content=body, headers=headers)
            finally:
                del app.dependency_overrides[_unused]
            assert _comparable(direct) == _comparable(standard), name
            assert direct.status_code < 500, name
