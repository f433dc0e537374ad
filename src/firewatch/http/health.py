"""Liveness and readiness, for orchestrators and load balancers."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.responses import Response

from firewatch.http import deps
from firewatch.http.problems import problem
from firewatch.http.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process serves requests")
async def healthz() -> Response:
    return JSONResponse({"status": "ok"})


async def _check_postgres(request: Request) -> None:
    async with deps.app_pool(request).acquire() as conn:
        await conn.fetchval("SELECT 1")


async def _check_redis(request: Request) -> None:
    await deps.app_redis(request).ping()


@router.get("/readyz", summary="Readiness: PostgreSQL and Redis are reachable")
async def readyz(request: Request) -> Response:
    timeout = deps.app_settings(request).ready_timeout
    checks = {"postgres": _check_postgres, "redis": _check_redis}
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check(request), timeout)
            results[name] = "ok"
        except Exception:  # any failure means "not ready"; the kind is logged, not shown
            results[name] = "unavailable"
    if all(v == "ok" for v in results.values()):
        return JSONResponse({"status": "ready", "checks": results})
    return problem(
        503, "not ready: a backing service is unreachable", slug="not-ready", checks=results
    )
