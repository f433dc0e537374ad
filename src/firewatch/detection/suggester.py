"""Similar-incident suggestions for new incidents, in a process of their own.

``firewatch serve`` starts one suggester process beside uvicorn (:func:`start`); it
stores the top-k similar past incidents of every new incident (``incident_similar``,
shown as ``suggested_at_open``) every ``FIREWATCH_SIMILAR_SUGGEST_INTERVAL`` seconds.

Why a process: keeping the index current means re-vectorising every changed incident
(tokenising in Python, sparse algebra), and during an alert storm that is seconds of
CPU per interval. In a thread of the API process it held the GIL against the event
loop: under a create load, GET p99 went from ~10 ms to 45-70 ms and create from
~1,500 to ~800 req/s, with ~0.5 ms of suggester CPU per created incident on the API's
core (``make bench BENCH=incidents``). Here it runs on another core and the API keeps
only the on-demand ``/similar`` index.

One suggester per database: each holds a PostgreSQL session advisory lock while it
works, so with several replicas one suggests and the others wait; if it dies, its
session ends, the lock is released and another takes over within an interval. The
process exits when ``serve`` does (it is a daemon child, and it also stops when it
finds itself orphaned, e.g. after a SIGKILL of ``serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from multiprocessing.process import BaseProcess

import asyncpg
import structlog

from firewatch import __version__
from firewatch.observability import tracing
from firewatch.observability.logging import configure_logging
from firewatch.runtime.database import create_pool
from firewatch.settings import Settings, load_settings

log = structlog.get_logger(__name__)

#: pg_advisory_lock key of the suggester ("fwsimila" as a big-endian int64).
LOCK_KEY = int.from_bytes(b"fwsimila", "big", signed=True)

#: Incidents read, scored and stored per statement; a run repeats batches until none is left.
SUGGEST_BATCH = 100


async def run(settings: Settings, *, parent: int | None = None) -> None:
    """Suggest every interval while holding the suggester lock; until cancelled, or
    until the process whose pid is ``parent`` is no longer this process's parent."""
    # Imported here: scikit-learn and SciPy load in the suggester, not in `serve`.
    from firewatch.detection.similar_service import SimilarState, suggest_all, warm

    assert settings.database_url is not None
    url = settings.database_url.get_secret_value()
    interval = settings.similar_suggest_interval
    state = SimilarState()
    pool = await create_pool(url, min_size=1, max_size=2, jit=False)
    lock: asyncpg.Connection | None = None

    def parent_alive() -> bool:
        return parent is None or os.getppid() == parent

    try:
        while parent_alive():
            try:
                if lock is None or lock.is_closed():
                    lock = await asyncpg.connect(url)
                    if not await lock.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
                        await lock.close()  # another replica suggests; try again later
                        lock = None
                    else:
                        log.info("similar-incident suggester active")
                        # built now, not when the first incident of a storm arrives
                        await warm(state, pool, settings.similar_rebuild_seconds)
                if lock is not None:
                    # a session that died silently would have lost the lock to another
                    # replica: find out before working as if it were still held
                    await lock.execute("SELECT 1")
                    await suggest_all(
                        state,
                        pool,
                        settings.similar_k,
                        settings.similar_rebuild_seconds,
                        batch=SUGGEST_BATCH,
                        keep_going=parent_alive,
                    )
            except asyncio.CancelledError:
                raise
            except Exception:  # keep going across database hiccups
                log.exception("similar-incident suggestions failed")
                if lock is not None:
                    with contextlib.suppress(Exception):
                        await lock.close()
                    lock = None
            await asyncio.sleep(interval)
    finally:
        if lock is not None:
            with contextlib.suppress(Exception):
                await lock.close()  # ends the session: releases the lock
        await pool.close()


def lower_priority(increment: int) -> None:
    """Make this process yield the CPU to the API: the suggester is background work.

    Under a create load it re-vectorises every new incident on the same cores as
    uvicorn and PostgreSQL (a 10 s wrk create load on the 2-core dev host: 94-180 us
    of suggester CPU per created incident beside the API's ~420 and PostgreSQL's
    ~410; see ADR-008). At a positive nice value it still gets the idle CPU and a
    small share under load, so suggestions come late under a storm, never not at all.
    """
    if increment > 0:
        os.nice(increment)


def _main(parent: int) -> None:
    """The child's entry point (spawned: settings, logging and tracing from the env)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    lower_priority(settings.similar_suggest_nice)
    tracing.configure(__version__)
    try:
        asyncio.run(run(settings, parent=parent))
    except KeyboardInterrupt:
        pass
    finally:
        tracing.shutdown()


def start(settings: Settings) -> BaseProcess | None:
    """Start the suggester process (None when suggestions are off: interval 0).

    Spawned, not forked: a fresh interpreter, which reads its settings from the
    environment ``serve`` prepared (resolved database URL included).
    """
    if settings.similar_suggest_interval <= 0:
        return None
    process = multiprocessing.get_context("spawn").Process(
        target=_main, args=(os.getpid(),), name="firewatch-suggester", daemon=True
    )
    process.start()
    return process


def stop(process: BaseProcess | None, timeout: float = 5.0) -> None:
    """Terminate the suggester (SIGTERM, then SIGKILL after ``timeout``)."""
    if process is None or not process.is_alive():
        return
    process.terminate()
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join(timeout)
