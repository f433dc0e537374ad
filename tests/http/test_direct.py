"""DirectRoute (http/direct.py): GET incident answered without FastAPI's dependency
solver, with the same answers as through it, on the real app (PostgreSQL, Redis)."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from starlette.responses import JSONResponse, Response

from firewatch.auth.principal import Principal
from firewatch.auth.rbac import Permission, require
from firewatch.http.direct import DirectRoute
from firewatch.incidents import api as incidents_api
from tests.conftest import IntegrationKey, asgi_client


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


async def test_only_get_incident_is_direct(app: FastAPI) -> None:
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
    assert routes  # the others: a body, query parameters or headers, so FastAPI's handler
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
