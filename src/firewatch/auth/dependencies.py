"""The single ``current_principal`` dependency: who is calling this request.

``Authorization: Bearer <token>`` carries either a user's access token (a JWT) or an
integration's API key (``fw_<id>_<secret>``). Every /api/v1 route reaches this
through ``rbac.require(...)``. For a JWT, the signature and claims are verified
(cached until expiry) and the denylist and the principal's request budget are
checked in Redis on every request: when Redis is unreachable the request fails
closed with 503. API keys are checked against PostgreSQL; their request budget is
counted in Redis but does not fail closed (ingestion keeps working, the key itself
is still verified).
"""

from __future__ import annotations

from typing import cast

import structlog
from fastapi import Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase

from firewatch.auth.apikeys import looks_like_key
from firewatch.auth.authenticate import authenticate_api_key
from firewatch.auth.principal import Principal
from firewatch.auth.runtime import AuthState
from firewatch.auth.tokens import ExpiredTokenError, InvalidTokenError
from firewatch.errors import RateLimitedError, UnauthorizedError
from firewatch.http.client import client_address

log = structlog.get_logger(__name__)

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="firewatch"'}


def auth_state(request: Request) -> AuthState:
    return cast(AuthState, request.app.state.auth)


def record_auth_failure(reason: str) -> None:
    """Count a refused credential or permission (``firewatch_auth_failures_total``).

    Imported here, on a failure only: ``firewatch.cli`` imports this module, and
    prometheus-client must not be imported before ``serve`` has set
    PROMETHEUS_MULTIPROC_DIR (ADR-007).
    """
    from firewatch.observability import metrics

    metrics.record_auth_failure(reason)


def _unauthorized(detail: str, reason: str) -> UnauthorizedError:
    """A 401, counted in ``firewatch_auth_failures_total{reason}``."""
    record_auth_failure(reason)
    return UnauthorizedError(detail, headers=_CHALLENGE)


def _rate_limited(detail: str, retry_after: int) -> RateLimitedError:
    record_auth_failure("rate_limited")
    return RateLimitedError(detail, retry_after=retry_after)


def request_client(request: Request) -> str | None:
    """The caller's address, pseudonymised (what audit records and limits see)."""
    auth = auth_state(request)
    return auth.pseudonymise(client_address(request, auth.settings.trusted_proxies))


class BearerScheme(SecurityBase):
    """The ``bearer`` security scheme as a dependency whose value is the Principal.

    Being the security scheme itself (rather than depending on fastapi's HTTPBearer,
    whose value is the raw credentials) keeps the per-request dependency tree one
    level shallower, and the scheme and each route's required permission (its scope,
    see rbac.require) still appear in the OpenAPI document.
    """

    def __init__(self) -> None:
        self.model = HTTPBearerModel(
            description="A user's access token (from /api/v1/auth/login) or an "
            "integration's API key fw_<id>_<secret>."
        )
        self.scheme_name = "bearer"

    async def __call__(self, request: Request) -> Principal:
        return await authenticate(request)


async def authenticate(request: Request, *, count: bool = True) -> Principal:
    """The caller of ``request``. ``count=False`` checks the credential without
    spending the caller's request budget (an open event stream re-checking it)."""
    header = request.headers.get("authorization")
    if header is None:
        raise _unauthorized(
            "this endpoint needs 'Authorization: Bearer <token or API key>'",
            "missing_credentials",
        )
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise _unauthorized("use 'Authorization: Bearer <token>'", "malformed")
    auth = auth_state(request)
    settings = auth.settings
    client = request_client(request)
    if looks_like_key(credential):
        try:
            principal = await authenticate_api_key(request.app.state.pool, credential, client)
        except UnauthorizedError:
            record_auth_failure("invalid_credentials")
            raise
        limit = settings.rate_limit_ingest_per_minute if count else 0
        if limit:
            try:
                result = await auth.revocations.count_integration(principal.subject, limit)
            except Exception as exc:  # Redis down: the key is verified; keep ingesting
                log.warning("integration rate limit unavailable", error_type=type(exc).__name__)
            else:
                if result.over_limit:
                    raise _rate_limited(
                        "request budget of this integration exhausted", result.retry_after
                    )
        return principal
    try:
        claims = auth.tokens.verify(credential)
    except InvalidTokenError as exc:
        reason = "expired" if isinstance(exc, ExpiredTokenError) else "invalid_credentials"
        raise _unauthorized(str(exc), reason) from None
    result = await auth.revocations.check_token(
        jti=claims.jti,
        sid=claims.sid,
        subject=claims.subject,
        version=claims.version,
        limit=settings.rate_limit_api_per_minute if count else 0,
    )
    if result.revoked:
        raise _unauthorized("the token has been revoked", "revoked")
    if result.over_limit:
        raise _rate_limited("request budget of this user exhausted", result.retry_after)
    return Principal(
        subject=claims.subject,
        kind="user",
        role=claims.role,
        client=client,
        token_id=claims.jti,
        session_id=claims.sid,
        expires_at=claims.exp,
    )


current_principal = BearerScheme()
