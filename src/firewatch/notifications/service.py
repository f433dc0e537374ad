"""Notification use cases and the worker that delivers the outbox at least once.

Delivery holds the notification's row lock (``FOR UPDATE SKIP LOCKED``) for the
length of one HTTP attempt, in one transaction that also records the attempt. A
worker killed mid-delivery therefore commits nothing: the lock goes with its
connection and the notification is still pending for the next worker. Several
workers never deliver the same row at once, because each skips locked rows. A
receiver may see a notification twice (a crash after it answered, before our
commit): ``X-Firewatch-Delivery`` carries the id to deduplicate on. An error of the
row's own (not the database's) rolls that transaction back and is then counted as a
failed attempt in a transaction of its own, so a row that always fails is
dead-lettered like one whose receiver always fails, not claimed again forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import structlog

from firewatch import __version__
from firewatch.alerts import store as alerts_store
from firewatch.auth.principal import Principal
from firewatch.errors import ConflictError, NotFoundError
from firewatch.notifications import store
from firewatch.notifications.model import (
    DestinationKind,
    backoff_seconds,
    is_retryable,
    signature,
    slack_message,
)
from firewatch.observability import metrics, tracing
from firewatch.runtime.database import Conn, PgPool, connection_lost
from firewatch.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    concurrency: int = 4
    max_attempts: int = 8
    backoff_base: float = 2.0
    backoff_max: float = 900.0
    timeout: float = 10.0
    poll_interval: float = 1.0
    retention_days: float = 30.0
    retention_batch: int = 1000
    retention_interval: float = 3600.0


def config_from_settings(settings: Settings) -> WorkerConfig:
    return WorkerConfig(
        concurrency=settings.notify_concurrency,
        max_attempts=settings.notify_max_attempts,
        backoff_base=settings.notify_backoff_base,
        backoff_max=settings.notify_backoff_max,
        timeout=settings.notify_timeout,
        poll_interval=settings.notify_poll_interval,
        retention_days=settings.retention_days,
        retention_batch=settings.retention_batch,
        retention_interval=settings.retention_interval,
    )


# ------------------------------------------------------------------ destinations


@dataclass(frozen=True, slots=True)
class NewDestination:
    name: str
    kind: DestinationKind
    url: str
    min_severity: int = 4
    services: list[str] | None = None
    event_kinds: list[str] | None = None
    enabled: bool = True


async def create_destination(
    pool: PgPool, actor: Principal, new: NewDestination
) -> tuple[asyncpg.Record, str | None]:
    """Create a destination; a webhook gets a fresh signing secret, returned once."""
    secret = secrets.token_urlsafe(32) if new.kind is DestinationKind.WEBHOOK else None
    async with pool.acquire() as conn:
        row = await store.create_destination(
            conn,
            name=new.name,
            kind=new.kind.value,
            url=new.url,
            secret=secret,
            min_severity=new.min_severity,
            services=new.services,
            event_kinds=new.event_kinds,
            enabled=new.enabled,
            actor=actor.subject,
        )
    if row is None:
        raise ConflictError(f"a destination named {new.name!r} already exists")
    return row, secret


async def list_destinations(pool: PgPool) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await store.list_destinations(conn)


async def delete_destination(pool: PgPool, destination_id: int) -> None:
    async with pool.acquire() as conn:
        if not await store.delete_destination(conn, destination_id):
            raise NotFoundError(f"destination {destination_id} does not exist")


async def list_notifications(
    pool: PgPool, *, incident_id: int | None, status: str | None, before_id: int | None, limit: int
) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await store.list_notifications(
            conn, incident_id=incident_id, status=status, before_id=before_id, limit=limit
        )


async def get_notification(
    pool: PgPool, notification_id: int
) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
    async with pool.acquire() as conn:
        row = await store.get_notification(conn, notification_id)
        if row is None:
            raise NotFoundError(f"notification {notification_id} does not exist")
        return row, await store.attempts(conn, notification_id)


async def retry_notification(pool: PgPool, notification_id: int) -> None:
    async with pool.acquire() as conn:
        if not await store.retry_dead(conn, notification_id):
            if await store.get_notification(conn, notification_id) is None:
                raise NotFoundError(f"notification {notification_id} does not exist")
            raise ConflictError(f"notification {notification_id} is not dead-lettered")


# ------------------------------------------------------------------ delivery


def render(row: asyncpg.Record, now: float) -> tuple[bytes, dict[str, str]]:
    """The request body and headers for one notification."""
    payload: dict[str, Any] = row["payload"]
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"firewatch/{__version__}",
        "X-Firewatch-Event": row["event_kind"],
        "X-Firewatch-Delivery": str(row["id"]),
    }
    if row["kind"] == DestinationKind.SLACK.value:
        return orjson.dumps(slack_message(payload)), headers
    body = orjson.dumps({"id": row["id"], **payload})
    if row["secret"]:
        ts = int(now)
        headers["X-Firewatch-Timestamp"] = str(ts)
        headers["X-Firewatch-Signature"] = signature(row["secret"], ts, body)
    return body, headers


async def deliver_one(pool: PgPool, http: httpx.AsyncClient, cfg: WorkerConfig) -> bool:
    """Deliver the next due notification, if any; True when one was attempted."""
    # No SQL spans here: polling for due work is no trace (4 one-statement traces a
    # second per idle worker otherwise); the delivery span below is exported.
    with tracing.untraced():
        return await _deliver_due(pool, http, cfg)


async def _deliver_due(pool: PgPool, http: httpx.AsyncClient, cfg: WorkerConfig) -> bool:
    row: asyncpg.Record | None = None
    began = time.monotonic()
    try:
        async with pool.acquire() as conn, conn.transaction():
            row = await store.claim_due(conn)
            if row is None:
                return False
            attempt = row["attempts"] + 1
            body, headers = render(row, time.time())
            started = time.monotonic()
            status_code: int | None = None
            error: str | None = None
            # The delivery span continues the trace of the change that queued it; the
            # URL's path is left out of it (a Slack webhook path is the secret).
            with tracing.notification_span(
                row["kind"], row["url"], parent=row["traceparent"], with_path=False
            ) as span:
                tracing.inject_trace_headers(headers)
                try:
                    response = await http.post(
                        row["url"], content=body, headers=headers, timeout=cfg.timeout
                    )
                    status_code = response.status_code
                    tracing.set_http_status(span, status_code)
                    if not 200 <= status_code < 300:
                        error = f"HTTP {status_code}"
                except httpx.HTTPError as exc:
                    # The exception text may hold the URL (a Slack URL is a secret): type only.
                    error = type(exc).__name__
                    tracing.set_error(span, error)
            duration_ms = int((time.monotonic() - started) * 1000)
            outcome, next_at = _outcome(cfg, attempt, error, status_code)
            await store.record_attempt(
                conn,
                row["id"],
                attempt=attempt,
                duration_ms=duration_ms,
                status_code=status_code,
                error=error,
                outcome=outcome,
                next_attempt_at=next_at,
            )
    except Exception as exc:
        if row is None or _infrastructure_error(exc):
            raise  # the database's trouble, not the row's: it stays as it was
        # The row's own (its data fails rendering, its URL, a bug): rolled back and
        # left as it was, it would be claimed again on every poll, forever.
        # The type and where it was raised, not the message or traceback: an error
        # about a destination can quote its URL, and URLs carry tokens (README).
        log.error(
            "notification delivery failed",
            notification=row["id"],
            error_type=type(exc).__name__,
            raised_at=_raised_at(exc),
        )
        attempt = row["attempts"] + 1
        counted = await _record_unhandled(pool, cfg, row, exc, began)
        if counted is None:
            return True
        outcome = counted
    metrics.record_notification(outcome)
    if outcome == "dead":
        log.warning("notification dead-lettered", notification=row["id"], attempts=attempt)
    return True


def _outcome(
    cfg: WorkerConfig, attempt: int, error: str | None, status_code: int | None
) -> tuple[str, datetime | None]:
    """``delivered``, ``retry`` (and when) or ``dead`` after attempt number ``attempt``."""
    if error is None:
        return "delivered", None
    if is_retryable(status_code) and attempt < cfg.max_attempts:
        delay = backoff_seconds(attempt, base=cfg.backoff_base, cap=cfg.backoff_max)
        return "retry", datetime.now(UTC) + timedelta(seconds=delay)
    return "dead", None


def _raised_at(exc: BaseException) -> str | None:
    """``file:line in function`` of the innermost frame of ``exc``'s traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return None
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno} in {last.name}"


async def _record_unhandled(
    pool: PgPool, cfg: WorkerConfig, row: asyncpg.Record, exc: Exception, began: float
) -> str | None:
    """Count an exception raised while handling ``row`` as a failed attempt (retried
    with backoff, dead-lettered after ``max_attempts``), like a receiver's error; the
    error recorded is its type only (its text may hold the URL, a secret).

    Its own transaction, from the claimed row's id and attempt count alone: nothing
    of what failed runs again. None when the row moved on since (another worker has
    it, or counted or delivered it): nothing is recorded then.
    """
    attempt = row["attempts"] + 1
    error = type(exc).__name__
    outcome, next_at = _outcome(cfg, attempt, error, None)
    async with pool.acquire() as conn, conn.transaction():
        if not await store.lock_pending(conn, row["id"], attempts=row["attempts"]):
            return None
        await store.record_attempt(
            conn,
            row["id"],
            attempt=attempt,
            duration_ms=int((time.monotonic() - began) * 1000),
            status_code=None,
            error=error,
            outcome=outcome,
            next_attempt_at=next_at,
        )
    return outcome


async def purge_once(
    pool: PgPool, cfg: WorkerConfig, *, now: datetime | None = None
) -> dict[str, int]:
    """Delete resolved alerts and delivered notifications older than the retention age.

    Batches of ``retention_batch`` rows, each its own short transaction, so a large
    backlog never holds long locks. Incidents and their timelines are kept.
    """
    cutoff = (now or datetime.now(UTC)) - timedelta(days=cfg.retention_days)
    purged = {"alerts": 0, "notifications": 0}
    for name, purge in (
        ("alerts", alerts_store.purge_resolved),
        ("notifications", store.purge_delivered),
    ):
        while True:
            async with pool.acquire() as conn:
                n = await purge(conn, older_than=cutoff, batch=cfg.retention_batch)
            purged[name] += n
            if n < cfg.retention_batch:
                break
    return purged


#: Pause before a lost LISTEN connection is replaced (short: until then only polls wake).
LISTEN_RETRY_SECONDS = 0.5


class Worker:
    """Delivery loops plus the retention loop; wakes on NOTIFY, polls as a fallback.

    No loop ends on an error: a terminated connection, a failover or an error nobody
    foresaw is logged and the loop goes on, so a worker (inside ``serve`` nobody
    would notice it stopping) keeps delivering once the database is back.
    """

    def __init__(self, pool: PgPool, cfg: WorkerConfig) -> None:
        self.pool = pool
        self.cfg = cfg
        self._wake = asyncio.Event()

    def _on_notify(self, *_args: object) -> None:
        self._wake.set()

    async def _deliver_loop(self, http: httpx.AsyncClient) -> None:
        while True:
            try:
                worked = await deliver_one(self.pool, http, self.cfg)
            except Exception as exc:
                _log_loop_error("notification delivery loop error", exc)
                worked = False
            if not worked:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.cfg.poll_interval)

    async def _retention_loop(self) -> None:
        while True:
            try:
                purged = await purge_once(self.pool, self.cfg)
                if any(purged.values()):
                    log.info("retention purge", **purged)
            except Exception as exc:
                _log_loop_error("retention purge failed", exc)
            await asyncio.sleep(self.cfg.retention_interval)

    async def _listen_loop(self) -> None:
        """Hold one connection that LISTENs for new notifications, and take another
        when it is lost: without it the worker still delivers, but only every
        ``poll_interval`` seconds."""
        while True:
            try:
                listener = await self.pool.acquire()
            except Exception as exc:
                _log_loop_error("notification listener unavailable", exc)
                await asyncio.sleep(LISTEN_RETRY_SECONDS)
                continue
            try:
                await self._listen_on(listener)
                log.warning("notification listener connection lost; listening again")
            except Exception as exc:
                _log_loop_error("notification listener unavailable", exc)
            finally:
                # Closed before it goes back, whatever ended the loop (lost, cancelled at
                # shutdown, add_listener failed): pooled connections carry no session
                # state (runtime/database.py), and the pool skips UNLISTEN on release.
                # Terminating hands its slot back to the pool, which opens a fresh
                # connection in its place; a connection the server already ended was
                # handed back by asyncpg itself (its proxy then refuses every call).
                with contextlib.suppress(Exception):
                    listener.terminate()
                with contextlib.suppress(Exception):
                    await self.pool.release(listener)
            await asyncio.sleep(LISTEN_RETRY_SECONDS)

    async def _listen_on(self, listener: Conn) -> None:
        """LISTEN on ``listener`` until its connection closes."""
        lost = asyncio.Event()
        listener.add_termination_listener(lambda _conn: lost.set())
        await listener.add_listener(store.WAKE_CHANNEL, self._on_notify)
        self._wake.set()  # what was queued while nobody listened
        await lost.wait()

    async def run(self) -> None:
        """Run until cancelled."""
        async with httpx.AsyncClient(follow_redirects=False) as http, asyncio.TaskGroup() as tg:
            tg.create_task(self._listen_loop())
            for _ in range(self.cfg.concurrency):
                tg.create_task(self._deliver_loop(http))
            tg.create_task(self._retention_loop())


def _infrastructure_error(exc: Exception) -> bool:
    """A lost connection, the database's error, a timeout: nothing of one row's own."""
    return connection_lost(exc) or isinstance(exc, (OSError, asyncpg.PostgresError, TimeoutError))


def _log_loop_error(event: str, exc: Exception) -> None:
    if _infrastructure_error(exc):
        log.warning(event, error_type=type(exc).__name__)
    else:  # not foreseen: keep the traceback for whoever reads the log
        log.error(event, error_type=type(exc).__name__, exc_info=exc)


metrics.register_queue_depth("notifications", store.pending_count)
