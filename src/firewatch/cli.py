"""The ``firewatch`` command: serve, migrate, and (as features land) more."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated

import asyncpg
import structlog
import typer
import uvicorn

from firewatch.audit.service import load_hmac_key
from firewatch.auth import cli as auth_cli
from firewatch.auth.keys import KeyringError
from firewatch.auth.runtime import open_keystore
from firewatch.detection import suggester as similar_suggester
from firewatch.errors import FirewatchError
from firewatch.observability import multiproc
from firewatch.observability.logging import configure_logging
from firewatch.runtime import migrations
from firewatch.runtime.embedded import EmbeddedPostgres, EmbeddedRedis
from firewatch.settings import ENV_PREFIX, Settings, SettingsError, load_settings

cli = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # tracebacks with locals could print secrets
    help="firewatch incident tracker",
)

EMBEDDED_DATABASE = "firewatch"
#: How often `serve` checks its embedded servers and the suggester process.
SUPERVISE_SECONDS = 1.0

log = structlog.get_logger(__name__)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        typer.echo(f"firewatch: {exc}", err=True)
        raise typer.Exit(2) from None


async def _ensure_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # CREATE DATABASE takes no parameters; the name is our constant, not input.
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@contextmanager
def resolved_servers(
    settings: Settings, started: list[EmbeddedPostgres | EmbeddedRedis] | None = None
) -> Iterator[Settings]:
    """Start the embedded servers that are not configured; yield settings with URLs.

    The URLs are exported to the environment so that uvicorn's worker processes
    (which load settings afresh) reach the same servers. The servers started are
    appended to ``started`` (for `serve` to watch them).
    """
    started = [] if started is None else started
    try:
        if settings.database_url is None:
            pg = EmbeddedPostgres(settings.data_dir)
            admin = pg.start()
            started.append(pg)
            asyncio.run(_ensure_database(admin, EMBEDDED_DATABASE))
            os.environ[f"{ENV_PREFIX}DATABASE_URL"] = pg._server.get_uri(EMBEDDED_DATABASE)
            typer.echo(f"firewatch: embedded PostgreSQL in {settings.data_dir}/postgres", err=True)
        if settings.redis_url is None:
            rd = EmbeddedRedis(settings.data_dir)
            os.environ[f"{ENV_PREFIX}REDIS_URL"] = rd.start()
            started.append(rd)
            typer.echo(f"firewatch: embedded Redis in {settings.data_dir}", err=True)
        yield load_settings()
    finally:
        for server in reversed(started):
            server.stop()


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Overrides FIREWATCH_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides FIREWATCH_PORT")] = None,
    workers: Annotated[int | None, typer.Option(help="Overrides FIREWATCH_WORKERS")] = None,
) -> None:
    """Serve the API (starting embedded PostgreSQL/Redis when none is configured)."""
    for name, value in (("HOST", host), ("PORT", port), ("WORKERS", workers)):
        if value is not None:
            os.environ[f"{ENV_PREFIX}{name}"] = str(value)
    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Before uvicorn imports the app (and prometheus_client) in any process.
    multiproc.prepare(settings.data_dir)
    if settings.log_pseudonym_key is None:  # one key shared by all workers of this run
        os.environ[f"{ENV_PREFIX}LOG_PSEUDONYM_KEY"] = secrets.token_urlsafe(32)
    # uvicorn re-raises the SIGTERM it caught once it has shut down; with the default
    # action that would kill the process before the embedded servers are stopped.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    embedded: list[EmbeddedPostgres | EmbeddedRedis] = []
    with resolved_servers(settings, embedded) as resolved:
        migrate_before_workers(resolved)
        _prepare_security(resolved)
        supervisor = _Supervisor(resolved, embedded)
        try:
            _run_uvicorn(resolved)
        except SystemExit:  # the SIGTERM, an operator's or the supervisor's
            if supervisor.failure is None:
                raise
        finally:
            supervisor.stop()
        if supervisor.failure is not None:
            typer.echo(f"firewatch: {supervisor.failure}", err=True)
            raise typer.Exit(1)


class _Supervisor:
    """Watches what `serve` runs beside uvicorn, every ``SUPERVISE_SECONDS``.

    The suggester process (started here) is started again when it dies, with an
    error in the log. An embedded server that dies (killed, out of memory) is not
    replaced behind the workers' backs: `serve` shuts down and exits 1 saying which
    one, rather than answering 503 for ever; the next start reuses its data.
    """

    def __init__(self, settings: Settings, embedded: list[EmbeddedPostgres | EmbeddedRedis]):
        self.failure: str | None = None
        self._settings = settings
        self._embedded = embedded
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._suggester = similar_suggester.start(settings)  # its own process (see there)
        self._started_at = time.monotonic()
        self._backoff = 0.5
        self._restart_at = 0.0
        self._thread = threading.Thread(target=self._watch, name="serve-supervisor", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopping.wait(SUPERVISE_SECONDS):
            for server in self._embedded:
                if not server.alive():
                    self.failure = (
                        f"the {server.name} that serve started in {self._settings.data_dir} "
                        "exited; stopping (start firewatch again to restart it with its data)"
                    )
                    log.error("embedded server exited; stopping", server=server.name)
                    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn drains and returns
                    return
            with self._lock:
                process = self._suggester
                if self._stopping.is_set() or process is None or process.is_alive():
                    continue
                if self._restart_at <= self._started_at:  # once per death, not per check
                    lived = time.monotonic() - self._started_at
                    # a crash loop backs off to a start a minute; a long life resets it
                    self._backoff = 1.0 if lived > 60 else min(60.0, self._backoff * 2)
                    log.error(
                        "similar-incident suggester exited; starting it again",
                        exitcode=process.exitcode,
                        in_seconds=self._backoff,
                    )
                    self._restart_at = time.monotonic() + self._backoff
                if time.monotonic() >= self._restart_at:
                    self._suggester = similar_suggester.start(self._settings)
                    self._started_at = time.monotonic()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        with self._lock:
            similar_suggester.stop(self._suggester)


def migrate_before_workers(settings: Settings) -> None:
    """Apply migrations once, here, under the advisory lock, unless
    ``FIREWATCH_MIGRATE_ON_START=false`` (then ``firewatch migrate`` is the operator's
    job); either way the workers do not check again (each check opens a SQLAlchemy
    engine; ~0.4 s of a warm start)."""
    assert settings.database_url is not None
    if settings.migrate_on_start:
        asyncio.run(migrations.upgrade(settings.database_url.get_secret_value()))
    os.environ[f"{ENV_PREFIX}MIGRATE_ON_START"] = "false"


def _run_uvicorn(resolved: Settings) -> None:
    uvicorn.run(
        "firewatch.app:app_from_env",
        factory=True,
        host=resolved.host,
        port=resolved.port,
        workers=resolved.workers,
        log_config=None,
        access_log=False,  # firewatch.access logs each request (route, status, trace)
        server_header=False,
        date_header=True,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )


def _prepare_security(settings: Settings) -> None:
    """Signing keys and the first admin exist before any worker starts."""
    try:
        open_keystore(settings)
        load_hmac_key(settings)  # generated, or refused (unsafe mode, too short), once
        created = asyncio.run(auth_cli.bootstrap(settings))
    except (KeyringError, FirewatchError, OSError) as exc:
        typer.echo(f"firewatch: {exc}", err=True)
        raise typer.Exit(2) from None
    except asyncpg.exceptions.UndefinedTableError:
        typer.echo(
            "firewatch: the database has no schema yet; run `firewatch migrate` "
            f"(or leave {ENV_PREFIX}MIGRATE_ON_START=true)",
            err=True,
        )
        raise typer.Exit(2) from None
    if created is not None:
        username, password = created
        if password is None:
            typer.echo(f"firewatch: created the first admin {username!r}", err=True)
        else:  # printed once, to the console only (never to the log)
            typer.echo(
                f"firewatch: created the first admin {username!r} with password {password}\n"
                "firewatch: store it now; it is not shown again "
                f"(reset with `firewatch user reset-password {username}`)",
                err=True,
            )


@cli.command()
def migrate() -> None:
    """Apply database migrations (safe to run while other replicas start)."""
    settings = _settings()
    with resolved_servers(settings) as resolved:
        assert resolved.database_url is not None
        heads = asyncio.run(migrations.upgrade(resolved.database_url.get_secret_value()))
    typer.echo(f"database at revision {', '.join(heads)}")


@cli.command()
def report(
    window: Annotated[str, typer.Option(help="7d, 30d, 12h ... ending now")] = "30d",
    service: Annotated[str | None, typer.Option(help="Only this service")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON summary")] = False,
) -> None:
    """MTTA / time to mitigate / MTTR, repeats and SLO breaches over a window."""
    from firewatch.analytics import cli as analytics_cli

    settings = _settings()
    with resolved_servers(settings) as resolved:
        code = analytics_cli.report(resolved, window, service, team, as_json)
    raise typer.Exit(code)


auth_cli.register(cli)


def _register_model_commands() -> None:
    from firewatch.detection.cli import model_cli

    cli.add_typer(model_cli, name="model")


_register_model_commands()


@cli.command()
def worker() -> None:
    """Deliver queued notifications and purge old alerts (run one or more beside serve)."""
    from firewatch.notifications import runner

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    with resolved_servers(settings) as resolved:
        asyncio.run(runner.run(resolved))


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.exit(130)
