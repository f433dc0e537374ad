"""Migrations: up from empty, idempotent, and safe when replicas start together."""

from __future__ import annotations

import asyncio
import os

import asyncpg
import pytest
from pydantic import SecretStr

from firewatch import cli
from firewatch.runtime import migrations
from firewatch.settings import Settings
from tests import servers


async def test_up_from_empty_is_idempotent_and_concurrent(admin_database_url: str) -> None:
    name, url = await servers.create_database(admin_database_url)
    try:
        assert await migrations.current(url) == ()
        # five "replicas" start at once: the advisory lock lets exactly one migrate
        results = await asyncio.gather(*(migrations.upgrade(url) for _ in range(5)))
        assert all(r == migrations.head_revisions() for r in results)
        assert await migrations.upgrade(url) == migrations.head_revisions()
        conn = await asyncpg.connect(url)
        try:
            tables = {
                r["tablename"]
                for r in await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            }
            assert {"incidents", "incident_timeline", "alembic_version"} <= tables
            assert await conn.fetchval("SELECT count(*) FROM alembic_version") == 1
        finally:
            await conn.close()
    finally:
        await servers.drop_database(admin_database_url, name)


def test_single_head() -> None:
    assert len(migrations.head_revisions()) == 1


def test_serve_migrates_unless_migrate_on_start_is_false(
    admin_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``firewatch serve`` migrates once before its workers start; with
    FIREWATCH_MIGRATE_ON_START=false it leaves the schema alone (and so do the workers)."""
    name, url = asyncio.run(servers.create_database(admin_database_url))
    try:
        monkeypatch.setenv("FIREWATCH_MIGRATE_ON_START", "true")
        off = Settings(database_url=SecretStr(url), migrate_on_start=False)
        cli.migrate_before_workers(off)
        assert asyncio.run(migrations.current(url)) == ()
        assert os.environ["FIREWATCH_MIGRATE_ON_START"] == "false"  # the workers skip it

        monkeypatch.setenv("FIREWATCH_MIGRATE_ON_START", "true")
        on = Settings(database_url=SecretStr(url), migrate_on_start=True)
        cli.migrate_before_workers(on)
        assert asyncio.run(migrations.current(url)) == migrations.head_revisions()
        assert os.environ["FIREWATCH_MIGRATE_ON_START"] == "false"
    finally:
        asyncio.run(servers.drop_database(admin_database_url, name))
