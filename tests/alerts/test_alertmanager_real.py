"""A real Alertmanager (Debian's prometheus-alertmanager) delivering to a running firewatch.

Alertmanager runs on 127.0.0.1 free ports with clustering disabled and short group
timers, routes to a ``firewatch serve`` subprocess, and is fed through its own
``/api/v2/alerts`` API; the test then reads what firewatch made of it.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from firewatch.runtime.database import PgPool
from firewatch.settings import Settings
from tests import servers

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"

CONFIG = """
route:
  receiver: firewatch
  group_by: [alertname, service]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: firewatch
    webhook_configs:
      - url: {url}/api/v1/integrations/alertmanager
        send_resolved: true
        max_alerts: 1000
        http_config:
          authorization:
            type: Bearer
            credentials: {token}
"""


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"alertmanager exited: {log.read_text(errors='replace')}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"alertmanager not ready: {log.read_text(errors='replace')}")


def alertmanager(tmp: Path, firewatch_url: str, token: str) -> Iterator[str]:
    port = servers.free_port()
    config = tmp / "alertmanager.yml"
    config.write_text(CONFIG.format(url=firewatch_url, token=token))
    log = tmp / "alertmanager.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                ALERTMANAGER,
                f"--config.file={config}",
                f"--storage.path={tmp / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                "--log.level=debug",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{base}/-/ready", process, log)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def am_alert(labels: dict[str, str], *, ends: datetime | None = None) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "labels": labels,
        "annotations": {"summary": f"{labels['alertname']} on {labels.get('model', '-')}"},
        "startsAt": (now - timedelta(minutes=1)).isoformat(),
        "generatorURL": "http://prometheus.example/graph",
    }
    if ends is not None:
        body["endsAt"] = ends.isoformat()
    return body


async def until(check: Any, seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError("Alertmanager's notification did not arrive in time")


@pytest.fixture
def stack(
    tmp_path: Path, settings: Settings, database_url: str, redis_url: str, ingest_token: str
) -> Iterator[tuple[str, str]]:
    env = {
        "FIREWATCH_DATABASE_URL": database_url,
        "FIREWATCH_REDIS_URL": redis_url,
        "FIREWATCH_DATA_DIR": str(settings.data_dir),  # the test app's keys
        "FIREWATCH_MIGRATE_ON_START": "false",
    }
    with servers.live_server(env, tmp_path / "firewatch.log") as fw:
        for am in alertmanager(tmp_path, fw.base_url, ingest_token):
            yield fw.base_url, am


async def test_real_alertmanager_groups_maps_and_resolves(
    stack: tuple[str, str], pool: PgPool
) -> None:
    _, am = stack
    svc = f"fraud-{uuid.uuid4().hex[:8]}"
    other = f"store-{uuid.uuid4().hex[:8]}"
    crit = [
        {
            "alertname": "ModelAccuracyDrop",
            "service": svc,
            "severity": "critical",
            "team": "ml",
            "model": m,
        }
        for m in ("fraud-v7", "fraud-v8")
    ]
    warn = {"alertname": "FeatureNullRateHigh", "service": other, "severity": "warning"}
    async with httpx.AsyncClient(base_url=am, timeout=5) as http:
        r = await http.post("/api/v2/alerts", json=[am_alert(x) for x in [*crit, warn]])
        assert r.status_code == 200, r.text

        async def incidents() -> list[Any] | None:
            async with pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT i.id, i.severity, i.status, i.service, i.team, i.group_key, "
                    "       (SELECT count(*) FROM alerts a WHERE a.incident_id = i.id) AS n "
                    "  FROM incidents i WHERE i.service = ANY($1::text[]) ORDER BY i.id",
                    [svc, other],
                )
            done = len(rows) == 2 and all(r["n"] > 0 for r in rows)
            big = [r for r in rows if r["service"] == svc]
            return list(rows) if done and big and big[0]["n"] == 2 else None

        rows = await until(incidents)
        by_service = {r["service"]: r for r in rows}
        assert by_service[svc]["severity"] == 1
        assert by_service[svc]["team"] == "ml"
        assert by_service[svc]["n"] == 2
        assert by_service[svc]["group_key"].endswith(
            f'{{alertname="ModelAccuracyDrop", service="{svc}"}}'
        )
        assert by_service[other]["severity"] == 3
        assert by_service[other]["n"] == 1

        # Resolve the critical group: Alertmanager sends it resolved; firewatch mitigates.
        past = datetime.now(UTC) - timedelta(seconds=1)
        r = await http.post("/api/v2/alerts", json=[am_alert(x, ends=past) for x in crit])
        assert r.status_code == 200, r.text
        incident_id = by_service[svc]["id"]

        async def mitigated() -> bool:
            async with pool.acquire() as conn:
                status = await conn.fetchval(
                    "SELECT status FROM incidents WHERE id = $1", incident_id
                )
            return bool(status == "mitigated")

        await until(mitigated)
    async with pool.acquire() as conn:
        kinds = [
            r["kind"]
            for r in await conn.fetch(
                "SELECT kind FROM incident_timeline WHERE incident_id = $1 ORDER BY id",
                incident_id,
            )
        ]
        still = await conn.fetchval(
            "SELECT status FROM incidents WHERE id = $1", by_service[other]["id"]
        )
    assert kinds[0] == "created"
    assert "alerts_resolved" in kinds
    assert kinds[-1] == "status_changed"
    assert still == "open"
