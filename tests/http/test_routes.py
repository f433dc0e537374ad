"""Router order does not decide any answer: no two routers of the app hold routes that
can serve the same request. create_app() includes the incidents router first (its GET
is the hottest route and FastAPI tries included routers in order for every request),
which is only safe while this holds. (Within one router, declaration order decides, as
for ``/notifications/destinations`` before ``/notifications/{notification_id}``.)"""

from __future__ import annotations

import re

from fastapi import FastAPI
from starlette.routing import Route


def routes_by_router(app: FastAPI) -> list[tuple[int, Route]]:
    """(index of the router or top-level route in app.router.routes, route)."""
    out: list[tuple[int, Route]] = []
    for index, entry in enumerate(app.router.routes):
        included = getattr(entry, "original_router", None)  # FastAPI 0.165 include_router
        members = list(included.routes) if included is not None else [entry]
        out.extend((index, r) for r in members if isinstance(r, Route))
    return out


def test_no_two_routers_serve_the_same_request(app: FastAPI) -> None:
    routes = routes_by_router(app)
    assert len(routes) > 40
    for owner, route in routes:
        sample = re.sub(r"\{[^}]+\}", "1", route.path)  # "1" fits str, int and path
        for method in route.methods or ():
            owners = {
                index
                for index, other in routes
                if method in (other.methods or ()) and other.path_regex.match(sample)
            }
            assert owners == {owner}, (method, sample, owners)


def test_the_incidents_router_is_tried_first(app: FastAPI) -> None:
    first = next(
        index
        for index, entry in enumerate(app.router.routes)
        if getattr(entry, "original_router", None) is not None
    )
    paths = {r.path for index, r in routes_by_router(app) if index == first}
    assert "/api/v1/incidents/{ref}" in paths
