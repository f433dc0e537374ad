"""Routes whose endpoint FastAPI need not solve per request: called directly.

For every request, FastAPI's route handler walks the endpoint's dependency tree
(``solve_dependencies``: parameters collected from the path, query, headers, cookies
and body, errors gathered, sub-dependency caches built), opens two
``AsyncExitStack``s and then calls the endpoint. For an endpoint such as
``GET /api/v1/incidents/{ref}``, whose parameters are a path string, the request and
the caller (one bearer-scheme dependency), all of that resolves to the same three
values every time: calling the endpoint directly took a GET incident from ~437 to
~390 us of CPU in-process (``python -m bench.inprocess``, bench/README.md).

``DirectRoute`` is an ``APIRoute`` (same path, OpenAPI entry, routing precedence,
request wrapping and exception handling: errors still propagate to the app's exception
handlers) whose handler, when the endpoint has only that shape, calls the requirement
and then the endpoint itself. The shape may include one JSON body (``POST`` of an
incident or a comment): it is read and decoded as FastAPI reads it, before the
requirement, and validated with FastAPI's own ``request_body_to_args`` after it, so
every answer is FastAPI's (tests/http/test_direct.py sends 25 requests through both
handlers and compares). Create went from 1,313k to 1,126k instructions in-process.
Any other shape (query or header parameters, form bodies, several bodies, other
dependencies, including any the ``include_router`` call adds) keeps FastAPI's
handler, decided once when the handler is built; so does a request while
``app.dependency_overrides`` is not empty.
"""

from __future__ import annotations

import email.message
import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import fastapi.routing
from fastapi import params
from fastapi._compat import ModelField, Undefined
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_body_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.convertors import StringConvertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from firewatch.auth.dependencies import BearerScheme

Requirement = Callable[[Request], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class _Plan:
    requirement: Requirement
    caller: str  # the requirement's parameter
    request: str | None  # the request's parameter, if any
    path: tuple[str, ...]  # path string parameters
    body: ModelField | None  # the one JSON body parameter, if any
    strict_content_type: bool


class DirectRoute(APIRoute):
    """An APIRoute that calls a simple endpoint without FastAPI's solver (above)."""

    direct = False  # whether the handler built last (for its inclusion) is the direct one

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        standard = super().get_route_handler()
        effective, overrides = _effective(self)
        plan = _plan(self, effective)
        self.direct = plan is not None
        if plan is None:
            return standard
        endpoint = self.endpoint
        body_fields = [plan.body] if plan.body is not None else []

        async def handler(request: Request) -> Response:
            if overrides is not None and getattr(overrides, "dependency_overrides", None):
                return await standard(request)  # tests may swap dependencies
            # As FastAPI: the body is read and decoded first (a malformed one is a 400
            # even without credentials), then the requirement, then the body validated.
            body = await _json_body(request, plan.strict_content_type) if body_fields else None
            params = request.path_params
            kwargs: dict[str, Any] = {name: params[name] for name in plan.path}
            kwargs[plan.caller] = await plan.requirement(request)
            if plan.request is not None:
                kwargs[plan.request] = request
            if body_fields:
                values, errors = await request_body_to_args(
                    body_fields=body_fields, received_body=body, embed_body_fields=False
                )
                if errors:
                    raise RequestValidationError(errors, body=body)
                kwargs.update(values)
            response = await endpoint(**kwargs)
            if not isinstance(response, Response):
                raise TypeError(f"{self.name} must return a Response to be a DirectRoute")
            return response

        return handler


async def _json_body(request: Request, strict_content_type: bool) -> Any:
    """The request body as FastAPI 0.165's handler reads it for one JSON body field
    (fastapi/routing.py, get_request_handler): no body is ``Undefined``; a body that
    is JSON by its content type is decoded (without a content type only when not
    strict); any other body stays bytes, for validation to refuse. tests/http/
    test_direct.py holds the answers to those cases equal to FastAPI's own."""
    try:
        body_bytes = await request.body()
        if not body_bytes:
            return Undefined
        content_type = request.headers.get("content-type")
        if not content_type:
            return body_bytes if strict_content_type else await request.json()
        message = email.message.Message()
        message["content-type"] = content_type
        if message.get_content_maintype() == "application":
            subtype = message.get_content_subtype()
            if subtype == "json" or subtype.endswith("+json"):
                return await request.json()
        return body_bytes
    except json.JSONDecodeError as e:
        error = {
            "type": "json_invalid",
            "loc": ("body", e.pos),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": e.msg},
        }
        raise RequestValidationError([error], body=e.doc) from e
    except HTTPException:
        raise
    except Exception as e:
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from e


def _effective(route: APIRoute) -> tuple[Any, Any]:
    """What FastAPI solves for ``route`` (its effective context, or the route itself:
    ``dependant``, ``_embed_body_fields``, ``strict_content_type``) and the holder of
    the dependency overrides (the app): with the dependencies of the ``include_router``
    call that included it, which FastAPI 0.165 keeps beside the route (its effective
    context, set while it builds the route's handler for that inclusion)."""
    context = getattr(fastapi.routing, "_effective_route_context_var", None)
    effective = context.get() if context is not None else None
    if (
        effective is not None
        and getattr(effective, "original_route", None) is route
        and isinstance(getattr(effective, "dependant", None), Dependant)
    ):
        return effective, getattr(effective, "dependency_overrides_provider", None)
    return route, route.dependency_overrides_provider


def _plan(route: APIRoute, effective: Any) -> _Plan | None:
    """How to call the endpoint directly, or None when it has another shape."""
    d: Dependant = effective.dependant
    if d.query_params or d.header_params or d.cookie_params:
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
    body: ModelField | None = None
    if d.body_params:
        # one JSON body (params.Body itself: not Form or File), not embedded
        if len(d.body_params) != 1 or getattr(effective, "_embed_body_fields", True):
            return None
        (body,) = d.body_params
        if type(body.field_info) is not params.Body:
            return None
    strict = getattr(effective, "strict_content_type", True)
    if isinstance(strict, DefaultPlaceholder):
        strict = strict.value
    return _Plan(call, dependency.name, d.request_param_name, tuple(names), body, bool(strict))
