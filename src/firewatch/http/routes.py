"""Routers' routes added to the app itself, as ``@app.get(...)`` would add them.

FastAPI 0.165 keeps an included router whole (``include_router`` adds one
``_IncludedRouter`` entry) and, for every request, walks the included routers in
order, each time building the effective context of every candidate route and
matching the chosen router twice. That walk cost ~114k instructions of a ~900k GET
incident in-process (``python -m bench.inprocess --instructions``, 2026-11-28): as
much as a tenth of the request. A route added to the app's own router is matched by
its path pattern alone.

``add_routes`` re-adds each route of a router with every attribute the router gave it
(its path with the prefix, tags, dependencies, responses, status code, OpenAPI
fields, route class) through ``app.router.add_api_route``: the app then supplies what
``include_router`` would have (its default response class, its ``responses``,
dependency overrides). The OpenAPI document is the same (tests/http/test_routes.py
builds both and compares them).
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

# add_api_route's parameters that a built APIRoute keeps as attributes of the same name
_COPIED = tuple(
    name
    for name in inspect.signature(APIRouter.add_api_route).parameters
    if name not in ("self", "path", "endpoint", "route_class_override")
)


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """Add every route of ``router`` to ``app``'s own router, in order."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"{route!r} is not an APIRoute: include its router instead")
        attributes: dict[str, Any] = {name: getattr(route, name) for name in _COPIED}
        app.router.add_api_route(
            route.path, route.endpoint, route_class_override=type(route), **attributes
        )
