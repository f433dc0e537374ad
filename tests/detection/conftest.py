"""Fixtures for the detection tests that run a live ``firewatch serve``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from firewatch.runtime import migrations
from tests import servers


@pytest.fixture(scope="module")
async def own_database(admin_database_url: str) -> AsyncIterator[str]:
    """A migrated database of its own for a live server (gauges read it exactly)."""
    name, url = await servers.create_database(admin_database_url)
    await migrations.upgrade(url)
    try:
        yield url
    finally:
        await servers.drop_database(admin_database_url, name)
