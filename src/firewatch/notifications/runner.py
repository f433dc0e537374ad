"""``firewatch worker``: the notification/retention worker as its own process."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import structlog

from firewatch import __version__
from firewatch.notifications.service import Worker, config_from_settings
from firewatch.observability import tracing
from firewatch.runtime import migrations
from firewatch.runtime.database import create_pool
from firewatch.settings import Settings

log = structlog.get_logger(__name__)


async def run(settings: Settings) -> None:
    """Deliver until SIGTERM/SIGINT; then stop cleanly (in-flight deliveries roll back)."""
    assert settings.database_url is not None
    dsn = settings.database_url.get_secret_value()
    if settings.migrate_on_start:
        await migrations.upgrade(dsn)
    cfg = config_from_settings(settings)
    tracing.configure(__version__)  # delivery spans, from the OTEL_* variables
    pool = await create_pool(
        dsn,
        min_size=1,
        max_size=cfg.concurrency + 2,
        command_timeout=settings.db_command_timeout,
    )
    try:
        task = asyncio.create_task(Worker(pool, cfg).run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        log.info("worker started", concurrency=cfg.concurrency)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("worker stopped")
    finally:
        await pool.close()
        tracing.shutdown()
