"""The analytics side of ``firewatch report`` (the command is registered in cli.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
import typer
from rich.console import Console

from firewatch.analytics import metrics, service
from firewatch.analytics import report as rendering
from firewatch.analytics.windows import Scope
from firewatch.runtime.database import create_pool
from firewatch.settings import Settings


async def _summary(settings: Settings, window: metrics.Window, scope: Scope) -> dict[str, Any]:
    assert settings.database_url is not None
    pool = await create_pool(settings.database_url.get_secret_value(), min_size=1, max_size=1)
    try:
        return await service.summary(pool, settings, window, scope)
    finally:
        await pool.close()


def report(
    settings: Settings, window: str, service_: str | None, team: str | None, as_json: bool
) -> int:
    try:
        span = metrics.parse_window(window, datetime.now(UTC))
    except ValueError as exc:
        typer.echo(f"firewatch: --window: {exc}", err=True)
        return 2
    data = asyncio.run(_summary(settings, span, Scope(service=service_, team=team)))
    if as_json:
        typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z).decode())
    else:
        rendering.render(data, Console())
    return 0
