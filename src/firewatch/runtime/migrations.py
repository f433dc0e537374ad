"""Schema migrations: Alembic revisions holding plain SQL, applied under an advisory lock.

Several replicas may start at once; each takes the same transaction-scoped advisory
lock before Alembic reads its version table, so exactly one applies a revision and
the others find it applied. The lock is released with the transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.util import await_only

# "firewatch" as a bigint, so the lock is recognisable in pg_locks.
MIGRATION_LOCK_KEY = 0x6669726577617463

_SCRIPT_LOCATION = Path(__file__).parent / "alembic"


def execute_script(sql: str) -> None:
    """Run a multi-statement SQL script inside a migration.

    SQLAlchemy's asyncpg adapter prepares every statement, and PostgreSQL refuses
    several commands in one prepared statement; asyncpg's plain ``execute`` uses the
    simple query protocol, which takes a whole script. Same transaction as Alembic.
    """
    from alembic import op

    driver = op.get_bind().connection.driver_connection
    assert driver is not None
    await_only(driver.execute(sql))


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPT_LOCATION))
    return cfg


def head_revisions() -> tuple[str, ...]:
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


def _upgrade(connection: Connection, target: str) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, target)


def _current(connection: Connection) -> tuple[str, ...]:
    return tuple(MigrationContext.configure(connection).get_current_heads())


def _engine(dsn: str) -> Any:
    # Alembic needs a SQLAlchemy connection; asyncpg makes it, so every DSN asyncpg
    # accepts (including unix sockets of the embedded server) works here too.
    return create_async_engine(
        "postgresql+asyncpg://",
        async_creator=lambda: asyncpg.connect(dsn),
        poolclass=NullPool,
    )


async def upgrade(dsn: str, target: str = "head") -> tuple[str, ...]:
    """Apply migrations up to ``target``; safe to run concurrently from many processes."""
    engine = _engine(dsn)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, target)
        async with engine.connect() as conn:
            heads: tuple[str, ...] = await conn.run_sync(_current)
            return heads
    finally:
        await engine.dispose()


async def current(dsn: str) -> tuple[str, ...]:
    engine = _engine(dsn)
    try:
        async with engine.connect() as conn:
            heads: tuple[str, ...] = await conn.run_sync(_current)
            return heads
    finally:
        await engine.dispose()
