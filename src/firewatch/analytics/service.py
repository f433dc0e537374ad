"""Analytics use cases: read a window of incidents, compute, hand back plain data."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from firewatch.analytics import metrics, store
from firewatch.analytics.metrics import Options, SloTarget
from firewatch.analytics.windows import Scope, Window
from firewatch.runtime.database import PgPool
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
        frame = await store.incidents_frame(
            conn, metrics.history_start(window, options), window.end, scope
        )
    # pandas holds the GIL for most of this but not all; a thread keeps the loop
    # answering health checks while a large window is computed.
    return await asyncio.to_thread(metrics.summary, frame, window, options)
