"""Errors that services raise and the HTTP layer renders as RFC 9457 problems.

Each carries its status and a stable problem ``type`` so a client can branch on it;
the ``detail`` is written for the person reading it and never holds exception text
from a library, a query or a secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

PROBLEM_BASE = "https://firewatch.dev/problems/"


class FirewatchError(Exception):
    status: int = 500
    slug: str = "internal"
    title: str = "Internal error"

    def __init__(
        self, detail: str, *, headers: dict[str, str] | None = None, **extensions: Any
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}  # response headers (e.g. WWW-Authenticate), not body
        self.extensions = extensions

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug


class BadRequestError(FirewatchError):
    status, slug, title = 400, "bad-request", "Bad request"


class UnauthorizedError(FirewatchError):
    status, slug, title = 401, "unauthorized", "Authentication required"


class ForbiddenError(FirewatchError):
    status, slug, title = 403, "forbidden", "Forbidden"


class NotFoundError(FirewatchError):
    status, slug, title = 404, "not-found", "Not found"


class ConflictError(FirewatchError):
    status, slug, title = 409, "conflict", "Conflict"


class InvalidTransitionError(FirewatchError):
    status, slug, title = 409, "invalid-transition", "Invalid status transition"


class PreconditionFailedError(FirewatchError):
    status, slug, title = 412, "precondition-failed", "Precondition failed"


class PreconditionRequiredError(FirewatchError):
    status, slug, title = 428, "precondition-required", "Precondition required"


def field_errors(detail: str, *fields: str) -> list[dict[str, Any]]:
    """``errors`` of a 422, one per field, as a request validation 422 writes them:
    ``field`` is the dotted location (``body.password``, ``query.from``,
    ``header.if-match``, ``path.name``), ``loc`` the same as a list."""
    return [{"loc": f.split("."), "field": f, "type": "value_error", "msg": detail} for f in fields]


class UnprocessableError(FirewatchError):
    """A 422: always names what it refuses (``errors``, a list of ``{"field": ...}``),
    given as ``field`` (one location or several) or as ready-made ``errors``."""

    status, slug, title = 422, "validation", "Invalid request"

    @overload
    def __init__(
        self,
        detail: str,
        *,
        field: str | Sequence[str],
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None: ...

    @overload
    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]],
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None: ...

    def __init__(
        self,
        detail: str,
        *,
        field: str | Sequence[str] | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        if errors is None:
            fields = [field] if isinstance(field, str) else list(field or ())
            errors = field_errors(detail, *fields)
        if not errors:
            raise ValueError("a 422 names the field(s) it refuses")
        super().__init__(detail, headers=headers, errors=errors, **extensions)


class RateLimitedError(FirewatchError):
    status, slug, title = 429, "rate-limited", "Too many requests"


class UnavailableError(FirewatchError):
    status, slug, title = 503, "unavailable", "Service unavailable"
