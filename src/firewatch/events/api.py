"""``GET /api/v1/events``: live incident changes as Server-Sent Events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Header, Query, Request
from redis.asyncio import Redis
from starlette.responses import StreamingResponse

from firewatch.auth.dependencies import authenticate
from firewatch.auth.principal import Principal
from firewatch.auth.rbac import Permission, is_allowed, require
from firewatch.errors import BadRequestError, UnauthorizedError
from firewatch.events import service
from firewatch.http import deps
from firewatch.runtime.database import PgPool

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/v1", tags=["events"])

REPLAY_LIMIT = 1000


def _event_id(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        parsed = int(value)
    except ValueError:
        raise BadRequestError("Last-Event-ID must be an event id this server sent") from None
    if not 0 <= parsed < 2**63:
        raise BadRequestError("Last-Event-ID must be an event id this server sent")
    return parsed


def _reauthenticate(request: Request) -> Callable[[], Awaitable[bool]]:
    """Whether the credential that opened the stream still holds incidents:read.

    The same check as a new request (signature and expiry, denylist, token version,
    a revoked API key), but without spending the caller's request budget: a stream
    open for an hour would otherwise use 1,800 of its requests. Redis or PostgreSQL
    down ends it (fail closed, like a new request).
    """

    async def still_allowed() -> bool:
        try:
            principal = await authenticate(request, count=False)
        except UnauthorizedError:
            return False
        except Exception as exc:
            log.warning("events: cannot re-check the caller", error_type=type(exc).__name__)
            return False
        return is_allowed(principal, Permission.INCIDENTS_READ)

    return still_allowed


@router.get(
    "/events",
    summary="Live incident changes (text/event-stream); resumes from Last-Event-ID",
    response_class=StreamingResponse,
)
async def events(
    request: Request,
    caller: Annotated[Principal, require(Permission.INCIDENTS_READ)],
    pool: Annotated[PgPool, Depends(deps.pool)],
    redis: Annotated[Redis, Depends(deps.redis_client)],
    last_event_id: Annotated[str | None, Header()] = None,
    since: Annotated[
        str | None, Query(description="Same as Last-Event-ID, for clients that cannot set it")
    ] = None,
) -> StreamingResponse:
    resume = _event_id(last_event_id if last_event_id is not None else since)
    return StreamingResponse(
        service.stream(
            pool,
            redis,
            last_event_id=resume,
            replay_limit=REPLAY_LIMIT,
            still_allowed=_reauthenticate(request),
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
