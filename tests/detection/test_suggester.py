"""The suggester process: suggestions for new incidents, one active per database."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import psutil
import pytest
from pydantic import SecretStr

from firewatch.auth.principal import Principal
from firewatch.detection import similar_service, suggester
from firewatch.incidents import service
from firewatch.runtime.database import PgPool, create_pool
from firewatch.settings import Settings
from tests import servers

ACTOR = Principal("suggester-test", "system", "admin")


@pytest.fixture
def suggester_settings(fresh_database: str, redis_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=SecretStr(fresh_database),
        redis_url=SecretStr(redis_url),
        data_dir=tmp_path,
        similar_suggest_interval=0.2,
    )


@pytest.fixture
async def db(fresh_database: str) -> AsyncIterator[PgPool]:
    pool = await create_pool(fresh_database, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def _open(pool: PgPool, title: str) -> int:
    new = service.NewIncident(title=title, severity=2, category="latency", service="ranker")
    row = await service.CreateBatcher(pool).create(ACTOR, new)
    return int(row["id"])


async def _suggested(pool: PgPool, incident_id: int, seconds: float = 30.0) -> bool:
    """Whether the incident's suggestions were stored within ``seconds``."""
    for _ in range(int(seconds * 10)):
        found = await pool.fetchval(
            "SELECT count(*) FROM incident_similar WHERE incident_id = $1", incident_id
        )
        if found:
            return True
        await asyncio.sleep(0.1)
    return False


async def _lock_holders(pool: PgPool) -> list[int]:
    """Backend pids holding the suggester's advisory lock in this database."""
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND ((classid::bigint << 32) | objid::bigint) = $1",
        suggester.LOCK_KEY & 0xFFFFFFFFFFFFFFFF,
    )
    return [r["pid"] for r in rows]


async def test_one_suggester_at_a_time_and_another_takes_over(
    suggester_settings: Settings, db: PgPool
) -> None:
    first_id = await _open(db, "ranker p99 latency above SLO after deploy")
    first = asyncio.create_task(suggester.run(suggester_settings))
    assert await _suggested(db, first_id)
    second = asyncio.create_task(suggester.run(suggester_settings))
    await asyncio.sleep(1.0)  # several intervals: the second never gets the lock
    holders = await _lock_holders(db)
    assert len(holders) == 1

    first.cancel()  # the active one stops: its session ends, the lock is free
    with pytest.raises(asyncio.CancelledError):
        await first
    later = await _open(db, "ranker p99 latency above SLO again")
    assert await _suggested(db, later)  # suggested by the second one
    assert len(await _lock_holders(db)) == 1
    assert await _lock_holders(db) != holders
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second


async def test_a_killed_lock_session_is_noticed_and_suggesting_goes_on(
    suggester_settings: Settings, db: PgPool
) -> None:
    """PostgreSQL ends the suggester's session (a restart, an idle-session kill): the
    lock goes with it, the suggester notices, takes it again and keeps suggesting."""
    task = asyncio.create_task(suggester.run(suggester_settings))
    try:
        assert await _suggested(db, await _open(db, "ranker latency above SLO"))
        (holder,) = await _lock_holders(db)
        assert await db.fetchval("SELECT pg_terminate_backend($1)", holder)
        later = await _open(db, "ranker latency above SLO once more")
        assert await _suggested(db, later)
        holders = await _lock_holders(db)
        assert len(holders) == 1
        assert holders != [holder]
        assert not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_run_suggests_for_every_pending_incident_not_one_batch(
    suggester_settings: Settings, db: PgPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(suggester, "SUGGEST_BATCH", 2)
    opened = [await _open(db, f"ranker latency above SLO, wave {n}") for n in range(5)]
    # one run, then an hour's sleep: everything suggested must come from that one run
    once = suggester_settings.model_copy(update={"similar_suggest_interval": 3600})
    task = asyncio.create_task(suggester.run(once))
    try:
        for incident in opened:
            assert await _suggested(db, incident)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_run_stops_between_batches_once_told_to(db: PgPool) -> None:
    """A suggester whose `serve` is gone (keep_going false) stops within a batch."""
    for n in range(5):
        await _open(db, f"feature store lag, wave {n}")
    answers = iter([True, False])
    state = similar_service.SimilarState()
    stopped = await similar_service.suggest_all(
        state, db, 5, 300.0, batch=2, keep_going=lambda: next(answers)
    )
    assert stopped == 2  # one batch, then asked again and told no
    assert await similar_service.suggest_all(state, db, 5, 300.0, batch=2) == 3


async def test_serve_starts_a_suggester_process_and_stops_it(
    suggester_settings: Settings, db: PgPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the spawned child reads its settings from the environment, as under `serve`
    assert suggester_settings.database_url is not None
    assert suggester_settings.redis_url is not None
    monkeypatch.setenv("FIREWATCH_DATABASE_URL", suggester_settings.database_url.get_secret_value())
    monkeypatch.setenv("FIREWATCH_REDIS_URL", suggester_settings.redis_url.get_secret_value())
    monkeypatch.setenv("FIREWATCH_DATA_DIR", str(suggester_settings.data_dir))
    monkeypatch.setenv("FIREWATCH_SIMILAR_SUGGEST_INTERVAL", "0.2")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    incident = await _open(db, "feature store lag on user features")
    process = suggester.start(suggester_settings)
    assert process is not None
    try:
        assert process.pid != os.getpid()
        assert await _suggested(db, incident, seconds=60)
        assert await _lock_holders(db)
    finally:
        suggester.stop(process)
    assert not process.is_alive()
    for _ in range(100):  # its session is gone, and the lock with it
        if not await _lock_holders(db):
            break
        await asyncio.sleep(0.1)
    assert await _lock_holders(db) == []


def test_no_process_when_suggestions_are_off(suggester_settings: Settings) -> None:
    off = suggester_settings.model_copy(update={"similar_suggest_interval": 0})
    assert suggester.start(off) is None


def _serve_env(database_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "FIREWATCH_DATABASE_URL": database_url,
        "FIREWATCH_REDIS_URL": redis_url,
        "FIREWATCH_DATA_DIR": str(tmp_path / "data"),
        "FIREWATCH_SIMILAR_SUGGEST_INTERVAL": "0.2",
    }


def _suggesters(serve_pid: int) -> list[psutil.Process]:
    """The live child processes of `serve` that are not multiprocessing's tracker:
    with one worker serving in-process, the suggester."""
    return [
        p
        for p in psutil.Process(serve_pid).children()
        if "resource_tracker" not in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE
    ]


async def test_serve_runs_one_suggester_and_takes_it_down_with_it(
    fresh_database: str, redis_url: str, tmp_path: Path, db: PgPool
) -> None:
    env = _serve_env(fresh_database, redis_url, tmp_path)
    with servers.live_server(env, tmp_path / "serve.log") as server:
        children = _suggesters(server.process.pid)
        assert len(children) == 1  # one worker serves in-process; this is the suggester
        incident = await _open(db, "checkout ranker AUC dropped after retrain")
        assert await _suggested(db, incident, seconds=60)
    assert not children[0].is_running() or children[0].status() == psutil.STATUS_ZOMBIE


async def test_the_suggester_yields_the_cpu_and_builds_its_index_before_any_incident(
    fresh_database: str, redis_url: str, tmp_path: Path, db: PgPool
) -> None:
    await _open(db, "an incident from before this start")
    env = {**_serve_env(fresh_database, redis_url, tmp_path), "FIREWATCH_SIMILAR_SUGGEST_NICE": "7"}
    with servers.live_server(env, tmp_path / "serve.log") as server:
        [child] = _suggesters(server.process.pid)
        base = psutil.Process(server.process.pid).nice()
        for _ in range(100):  # set once the child has read its settings
            if child.nice() != base:
                break
            await asyncio.sleep(0.1)
        assert child.nice() == min(19, base + 7)  # nice saturates at 19
        assert psutil.Process(server.process.pid).nice() == base  # the API keeps its own
        for _ in range(300):  # built at start, with no new incident to suggest for
            if "similar-incident index built" in server.log():
                break
            await asyncio.sleep(0.1)
        indexed = await db.fetchval("SELECT count(*) FROM incidents")
        assert indexed >= 1
        assert re.search(rf"similar-incident index built\s+incidents={indexed}\b", server.log())


async def test_serve_starts_a_killed_suggester_again(
    fresh_database: str, redis_url: str, tmp_path: Path, db: PgPool
) -> None:
    env = _serve_env(fresh_database, redis_url, tmp_path)
    with servers.live_server(env, tmp_path / "serve.log") as server:
        [first] = _suggesters(server.process.pid)
        first.kill()  # as the OOM killer would
        first.wait(10)
        for _ in range(100):
            if _suggesters(server.process.pid):
                break
            await asyncio.sleep(0.1)
        [second] = _suggesters(server.process.pid)
        assert second.pid != first.pid
        assert "similar-incident suggester exited; starting it again" in server.log()
        incident = await _open(db, "feature store lag after the suggester was killed")
        assert await _suggested(db, incident, seconds=20), server.log()[-3000:]
    assert not second.is_running() or second.status() == psutil.STATUS_ZOMBIE
