"""The app's routes: added to the app itself (http/routes.py), not as included routers.

- The OpenAPI document is the one ``include_router`` gives for the same routers.
- Router order decides no answer: no two routers hold routes that can serve the same
  request. create_app() adds the incidents router first (its GET is the hottest route
  and requests are matched in order), which is only safe while this holds. Within one
  router, declaration order decides, as for ``/notifications/destinations`` before
  ``/notifications/{notification_id}``.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from firewatch.app import routers
from firewatch.http import problems
from firewatch.http.responses import JSONResponse
from firewatch.settings import Settings


def _key(route: APIRoute) -> tuple[str, frozenset[str]]:
    return route.path, frozenset(route.methods or ())


def owners(settings: Settings) -> dict[tuple[str, frozenset[str]], int]:
    """(path, methods) -> index of the router (in create_app's order) declaring it."""
    out: dict[tuple[str, frozenset[str]], int] = {}
    for index, router in enumerate(routers(settings)):
        for route in router.routes:
            assert isinstance(route, APIRoute)
            out[_key(route)] = index
    return out


def api_routes(app: FastAPI) -> list[APIRoute]:
    return [r for r in app.router.routes if isinstance(r, APIRoute)]


def test_the_openapi_document_is_the_one_include_router_gives(
    app: FastAPI, settings: Settings
) -> None:
    reference = FastAPI(default_response_class=JSONResponse, responses=problems.RESPONSES)
    for router in routers(settings):
        reference.include_router(router)
    ours, theirs = app.openapi(), reference.openapi()
    assert ours["paths"] == theirs["paths"]
    assert ours["components"] == theirs["components"]


def test_every_route_is_the_apps_own(app: FastAPI, settings: Settings) -> None:
    declared = owners(settings)
    served = {_key(r) for r in api_routes(app)}
    assert set(declared) <= served
    assert not [r for r in app.router.routes if getattr(r, "original_router", None)]


def test_no_two_routers_serve_the_same_request(app: FastAPI, settings: Settings) -> None:
    declared = owners(settings)
    routes = [r for r in api_routes(app) if _key(r) in declared]
    assert len(routes) > 40
    for route in routes:
        sample = re.sub(r"\{[^}]+\}", "1", route.path)  # "1" fits str, int and path
        for method in route.methods or ():
            serving = {
                declared[_key(other)]
                for other in routes
                if method in (other.methods or ()) and other.path_regex.match(sample)
            }
            assert serving == {declared[_key(route)]}, (method, sample, serving)


def test_the_incidents_router_is_matched_first(app: FastAPI, settings: Settings) -> None:
    declared = owners(settings)
    first = next(r for r in api_routes(app) if _key(r) in declared)
    incidents: APIRouter = routers(settings)[0]
    assert first.path.startswith("/api/v1/incidents")
    assert "/api/v1/incidents/{ref}" in {getattr(r, "path", None) for r in incidents.routes}
