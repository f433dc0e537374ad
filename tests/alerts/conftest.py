"""Fixtures of the alert ingestion tests: the captured Alertmanager payloads."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IntegrationKey

REPO = Path(__file__).resolve().parents[2]


def fixtures_dir() -> Path:
    """../shared/fixtures/alertmanager beside the clone (read-only in CI)."""
    for base in (REPO.parent / "shared", REPO.parent.parent / "shared", Path("/work/shared")):
        candidate = base / "fixtures" / "alertmanager"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("shared/fixtures/alertmanager not found beside the repository")


def load_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((fixtures_dir() / name).read_text())
    return data


def raw_fixture(name: str) -> bytes:
    return (fixtures_dir() / name).read_bytes()


@pytest.fixture
def group_key(request: pytest.FixtureRequest) -> str:
    """A group key unique to the test, so tests sharing a database never collide."""
    return f'{{}}:{{alertname="T", test="{request.node.name}"}}'


def with_group(payload: dict[str, Any], group_key: str) -> dict[str, Any]:
    out = copy.deepcopy(payload)
    out["groupKey"] = group_key
    return out


@pytest.fixture
async def ingest_token(integration_key: IntegrationKey) -> str:
    """An integration API key with alerts:write: what Alertmanager sends as its bearer."""
    return await integration_key(["alerts:write"])
