"""Routes whose endpoint FastAPI need not solve per request: called directly.

For every request, FastAPI's route handler walks the endpoint's dependency tree
(``solve_dependencies``: parameters collected from the path, query, headers, cookies
and body, errors gathered, sub-dependency caches built), opens two
``AsyncExitStack``s and then calls the endpoint. For an endpoint such as
``GET /api/v1/incidents/{ref}``, whose parameters are a path string, the request and
the caller (one bearer-scheme dependency), all of that resolves to the same three
values every time, at ~70 us of a ~440 us request (``python -m bench.inprocess``,
bench/README.md).

``DirectRoute`` is an ``APIRoute`` (same path, OpenAPI entry, routing precedence,
request wrapping and exception handling: errors still propagate to the app's exception
handlers) whose handler, when the endpoint has only that shape, calls the requirement
and then the endpoint itself. Any other shape (a body, query or header parameters,
other dependencies, including any the ``include_router`` call adds) keeps FastAPI's
handler, decided once when the handler is built; so does a request while
``app.dependency_overrides`` is not empty.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import fastapi.routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.convertors import StringConvertor
from starlette.requests import Request
from starlette.responses import Response

from firewatch.auth.dependencies import BearerScheme

Requirement = Callable[[Request], Awaitable[Any]]


class DirectRoute(APIRoute):
    """An APIRoute that calls a simple endpoint without FastAPI's solver (above)."""

    direct = False  # whether the handler built last (for its inclusion) is the direct one

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        standard = super().get_route_handler()
        dependant, overrides = _effective(self)
        plan = _plan(self, dependant)
        self.direct = plan is not None
        if plan is None:
            return standard
        requirement, caller, request_name, path_names = plan
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            if overrides is not None and getattr(overrides, "dependency_overrides", None):
                return await standard(request)  # tests may swap dependencies
            params = request.path_params
            kwargs: dict[str, Any] = {name: params[name] for name in path_names}
            kwargs[caller] = await requirement(request)
            if request_name is not None:
                kwargs[request_name] = request
            response = await endpoint(**kwargs)
            if not isinstance(response, Response):
                raise TypeError(f"{self.name} must return a Response to be a DirectRoute")
            return response

        return handler


def _effective(route: APIRoute) -> tuple[Dependant, Any]:
    """The dependant FastAPI solves for ``route`` and the holder of the dependency
    overrides (the app): with the dependencies of the ``include_router`` call that
    included it, which FastAPI 0.165 keeps beside the route (its effective context,
    set while it builds the route's handler for that inclusion)."""
    context = getattr(fastapi.routing, "_effective_route_context_var", None)
    effective = context.get() if context is not None else None
    if effective is not None and getattr(effective, "original_route", None) is route:
        dependant = getattr(effective, "dependant", None)
        if isinstance(dependant, Dependant):
            return dependant, getattr(effective, "dependency_overrides_provider", None)
    return route.dependant, route.dependency_overrides_provider


def _plan(
    route: APIRoute, d: Dependant
) -> tuple[Requirement, str, str | None, tuple[str, ...]] | None:
    """(requirement, its parameter, the request parameter, path parameters) when the
    endpoint has the direct shape, else None."""
    if d.query_params or d.header_params or d.cookie_params or d.body_params:
        return None
    if (
        d.background_tasks_param_name
        or d.response_param_name
        or d.websocket_param_name
        or d.security_scopes_param_name
        or d.http_connection_param_name
    ):
        return None
    if not inspect.iscoroutinefunction(route.endpoint) or len(d.dependencies) != 1:
        return None
    (dependency,) = d.dependencies
    call = dependency.call
    if not isinstance(call, BearerScheme) or dependency.dependencies or dependency.name is None:
        return None
    names = []
    for field in d.path_params:
        convertor = route.param_convertors.get(field.name)
        info = field.field_info
        if info.annotation is not str or info.metadata or field.alias != field.name:
            return None
        if not isinstance(convertor, StringConvertor):
            return None
        names.append(field.name)
    return call, dependency.name, d.request_param_name, tuple(names)
