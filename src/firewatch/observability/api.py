"""``GET /metrics``: the Prometheus exposition of every worker, plus database gauges."""

from __future__ import annotations

import hmac

import structlog
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from firewatch.http import deps
from firewatch.http.problems import problem
from firewatch.observability import metrics

log = structlog.get_logger(__name__)

router = APIRouter(tags=["observability"])


def _authorized(request: Request) -> bool:
    token = deps.app_settings(request).metrics_token
    if token is None:
        return True
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    return hmac.compare_digest(presented.strip().encode(), token.get_secret_value().encode())


@router.get("/metrics", include_in_schema=False)
async def scrape(request: Request) -> Response:
    """Prometheus scrape endpoint (bearer token when FIREWATCH_METRICS_TOKEN is set)."""
    if not _authorized(request):
        metrics.record_auth_failure("invalid_credentials")
        return problem(
            401,
            "a valid bearer token is required for /metrics",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    gauges: metrics.DatabaseGauges | None
    try:
        async with deps.app_pool(request).acquire() as conn:
            gauges = await metrics.collect_database_gauges(conn)
    except Exception as exc:  # the process metrics are still worth serving without the DB
        log.warning("metrics: database gauges unavailable", error=type(exc).__name__)
        gauges = None
    body = await run_in_threadpool(metrics.render, gauges)
    return Response(body, media_type=metrics.CONTENT_TYPE_LATEST)
