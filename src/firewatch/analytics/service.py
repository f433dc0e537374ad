"""Analytics use cases: read a window of incidents, compute, hand back plain data."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from firewatch.analytics import metrics, store
from firewatch.analytics.metrics import Options, SloTarget
from firewatch.analytics.windows import Scope, Window
from firewatch.runtime.database import PgPool

if TYPE_CHECKING:
    PoolConnection = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
from firewatch.settings import Settings


def options_from(settings: Settings, as_of: datetime | None = None) -> Options:
    targets = {
        int(name.removeprefix("SEV")): SloTarget(t.ack_seconds, t.resolve_seconds)
        for name, t in settings.slo_targets.items()
    }
    return Options(
        as_of=as_of or datetime.now(UTC),
        repeat_days=settings.analytics_repeat_days,
        slo_targets=targets,
    )


async def summary(
    pool: PgPool, settings: Settings, window: Window, scope: Scope | None = None
) -> dict[str, Any]:
    options = options_from(settings)
    async with pool.acquire() as conn:
        helper = await _idle_connection(pool)
        try:
            frame = await store.incidents_frame(
                conn, metrics.history_start(window, options), window.end, scope, helper=helper
            )
        finally:
            if helper is not None:
                await pool.release(helper)
    # pandas holds the GIL for most of this but not all; a thread keeps the loop
    # answering health checks while a large window is computed.
    return await asyncio.to_thread(metrics.summary, frame, window, options)


async def _idle_connection(pool: PgPool) -> PoolConnection | None:
    """A second connection for a large read, only if one is free right away (never
    waits while holding the first, so a busy pool cannot deadlock)."""
    if pool.get_idle_size() < 1:
        return None
    try:
        return await pool.acquire(timeout=0.05)
    except TimeoutError:
        return None
