"""Fixtures for the observability tests: a throwaway database per test module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from firewatch.runtime import migrations
from tests import servers


@pytest.fixture(scope="module")
async def fresh_database(admin_database_url: str) -> AsyncIterator[str]:
    """A migrated database of its own, so database-backed gauges are exact."""
    name, url = await servers.create_database(admin_database_url)
    await migrations.upgrade(url)
    try:
        yield url
    finally:
        await servers.drop_database(admin_database_url, name)
