"""``firewatch model train|list|activate|rollback|quarantine`` (registered in cli.py)."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from firewatch.analytics.windows import parse_window
from firewatch.auth.principal import Principal
from firewatch.detection import registry
from firewatch.errors import FirewatchError
from firewatch.runtime.database import PgPool, create_pool
from firewatch.settings import Settings

model_cli = typer.Typer(no_args_is_help=True, help="Anomaly detection model registry")
T = TypeVar("T")


def _actor() -> Principal:
    return Principal(subject=f"cli:{getpass.getuser()}", kind="system", role="admin")


def _run(settings: Settings, job: Callable[[PgPool], Awaitable[T]]) -> T:
    async def go() -> T:
        assert settings.database_url is not None
        pool = await create_pool(settings.database_url.get_secret_value(), min_size=1, max_size=2)
        try:
            return await job(pool)
        finally:
            await pool.close()

    try:
        return asyncio.run(go())
    except FirewatchError as exc:
        typer.echo(f"firewatch: {exc.detail}", err=True)
        raise typer.Exit(1) from None


def _show(rows: list[Any]) -> None:
    table = Table()
    for col in ("version", "status", "train points", "data window", "threshold", "holdout alarms"):
        table.add_column(col)
    for r in rows:
        window = f"{r['data_from']:%Y-%m-%d %H:%M} -> {r['data_to']:%Y-%m-%d %H:%M}"
        table.add_row(
            str(r["version"]),
            r["status"],
            str(r["train_points"]),
            window,
            f"{r['threshold']:.4f}",
            str(r["evaluation"].get("holdout_alarm_rate")),
        )
    Console().print(table)


@model_cli.command("train")
def train(
    stream: str,
    since: Annotated[str | None, typer.Option(help="Data window ending now, e.g. 14d")] = None,
    activate: Annotated[bool, typer.Option(help="Activate the new version")] = False,
) -> None:
    """Train a new version on the stream's history."""
    start = parse_window(since, datetime.now(UTC)).start if since else None
    with _settings_ctx() as settings:
        row = _run(
            settings,
            lambda pool: registry.train(
                pool, settings, _actor(), stream, since=start, activate=activate
            ),
        )
    _show([row])


@model_cli.command("list")
def list_models(stream: str) -> None:
    """Versions of a stream's model, newest first."""
    with _settings_ctx() as settings:
        rows = _run(settings, lambda pool: registry.list_models(pool, stream))
    _show(rows)


@model_cli.command("activate")
def activate(stream: str, version: int) -> None:
    """Make a version the one that scores the stream (every worker, next batch)."""
    with _settings_ctx() as settings:
        row = _run(settings, lambda pool: registry.activate(pool, _actor(), stream, version))
    _show([row])


@model_cli.command("rollback")
def rollback(stream: str) -> None:
    """Re-activate the version that was active before the current one."""
    with _settings_ctx() as settings:
        row = _run(settings, lambda pool: registry.rollback(pool, _actor(), stream))
    _show([row])


@model_cli.command("quarantine")
def quarantine(stream: str, version: int, reason: Annotated[str, typer.Option(help="Why")]) -> None:
    """Take a version out of service for good (rolls back if it was active)."""
    with _settings_ctx() as settings:
        model, active = _run(
            settings, lambda pool: registry.quarantine(pool, _actor(), stream, version, reason)
        )
    _show([model] + ([active] if active is not None else []))


def _settings_ctx() -> Any:
    from firewatch import cli as root

    return root.resolved_servers(root._settings())
