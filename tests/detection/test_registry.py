"""The model registry: integrity, activation, rollback, quarantine, across processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import skops.io as sio
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from firewatch.auth.principal import Principal
from firewatch.detection import artifacts, registry
from firewatch.runtime.database import PgPool
from firewatch.settings import Settings
from tests import servers
from tests.conftest import IntegrationKey
from tests.detection.helpers import (
    API,
    points,
    post,
    recent_stream,
    register,
    seed_and_train,
    unique_stream,
)

ADMIN = Principal(subject="test-admin", kind="local", role="admin")


async def _model_file(pool: PgPool, settings: Settings, name: str, version: int) -> Path:
    async with pool.acquire() as conn:
        rel = await conn.fetchval(
            "SELECT m.path FROM detection_models m JOIN signal_streams s ON s.id = m.stream_id "
            "WHERE s.name = $1 AND m.version = $2",
            name,
            version,
        )
    return settings.resolved_model_dir / str(rel)


async def test_tampered_model_file_is_refused(
    client: httpx.AsyncClient, pool: PgPool, settings: Settings
) -> None:
    name = unique_stream("tamper")
    stream = recent_stream(seed=3)
    model = await seed_and_train(client, name, stream)
    path = await _model_file(pool, settings, name, 1)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(artifacts.ArtifactError, match="SHA-256"):
        artifacts.load(
            settings.resolved_model_dir,
            str(path.relative_to(settings.resolved_model_dir)),
            model["sha256"],
        )
    registry.clear_cache()  # as a fresh worker would start
    result = (await post(client, points(name, stream.test_values[:20], stream.test_epochs[:20])))[
        "streams"
    ][0]
    assert result["scored"] == 0
    assert result["accepted"] == 20  # the points are kept, just not scored
    assert result["model_error"] == "the active model failed its integrity check; not scored"


def test_files_with_untrusted_types_are_refused(tmp_path: Path) -> None:
    evil = make_pipeline(FunctionTransformer(len))
    data = sio.dumps(evil)
    (tmp_path / "evil.skops").write_bytes(data)
    with pytest.raises(artifacts.ArtifactError, match="does not load"):
        artifacts.load(tmp_path, "evil.skops", artifacts.sha256(data))
    with pytest.raises(artifacts.ArtifactError, match="escapes"):
        artifacts.load(tmp_path, "../x.skops", "0" * 64)
    (tmp_path / "junk.skops").write_bytes(b"not a zip")
    with pytest.raises(artifacts.ArtifactError, match="not a skops archive"):
        artifacts.load(tmp_path, "junk.skops", artifacts.sha256(b"not a zip"))


async def test_activate_rollback_quarantine_over_http(client: httpx.AsyncClient) -> None:
    name = unique_stream("reg")
    stream = recent_stream(seed=5)
    await seed_and_train(client, name, stream)
    r = await client.post(f"{API}/streams/{name}/models", json={"seed": 1})
    assert r.status_code == 201, r.text
    assert (r.json()["version"], r.json()["status"]) == (2, "candidate")
    assert "path" not in r.json()
    url = f"{API}/streams/{name}/models"
    assert (await client.post(f"{url}/2/activate")).json()["status"] == "active"
    listed = (await client.get(url)).json()["items"]
    assert [(m["version"], m["status"]) for m in listed] == [(2, "active"), (1, "retired")]
    assert (await client.post(f"{url}/rollback")).json()["version"] == 1
    assert (await client.post(f"{url}/2/activate")).json()["version"] == 2
    q = await client.post(f"{url}/2/quarantine", json={"reason": "false alarms on Mondays"})
    assert q.status_code == 200, q.text
    assert q.json()["quarantined"]["status"] == "quarantined"
    assert q.json()["active"]["version"] == 1  # the previous model took over
    again = await client.post(f"{url}/2/activate")
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert (await client.post(f"{url}/9/activate")).status_code == 404
    q1 = await client.post(f"{url}/1/quarantine", json={"reason": "retired"})
    assert q1.json()["active"] is None  # nothing left to score with
    assert (await client.post(f"{url}/rollback")).status_code == 409
    assert (await client.post(f"{url}/1/quarantine", json={"reason": ""})).status_code == 422
    tiny = unique_stream("tiny")
    await register(client, tiny)
    r = await client.post(f"{API}/streams/{tiny}/models", json={})
    assert r.status_code == 422
    r = await client.post(f"{API}/streams/{tiny}/models", json={"k": 9, "n": 3})
    assert r.status_code == 422


async def test_activation_switches_scoring_in_another_process(
    client: httpx.AsyncClient,
    pool: PgPool,
    settings: Settings,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    integration_key: IntegrationKey,
) -> None:
    name = unique_stream("xproc")
    stream = recent_stream(seed=11, test_points=300)
    await seed_and_train(client, name, stream)  # v1, active
    await registry.train(pool, settings, ADMIN, name, params=None)  # v2, candidate
    env = {
        "FIREWATCH_DATABASE_URL": database_url,
        "FIREWATCH_REDIS_URL": redis_url,
        "FIREWATCH_DATA_DIR": str(tmp_path / "data"),
        "FIREWATCH_MODEL_DIR": str(settings.resolved_model_dir),
        "FIREWATCH_WORKERS": "2",
    }
    key = await integration_key(["signals:write"])
    with servers.live_server(env, tmp_path / "server.log") as server:
        async with httpx.AsyncClient(
            base_url=server.base_url, timeout=180, headers={"Authorization": f"Bearer {key}"}
        ) as remote:

            async def version_scoring(lo: int, hi: int) -> int | None:
                batch = points(name, stream.test_values[lo:hi], stream.test_epochs[lo:hi])
                versions = set()
                # Several batches so that both uvicorn workers answer some of them.
                for part in range(0, len(batch), 10):
                    r = await remote.post(API, json={"points": batch[part : part + 10]})
                    assert r.status_code == 200, server.log()
                    versions.add(r.json()["streams"][0]["model_version"])
                assert len(versions) == 1, versions
                version: int | None = versions.pop()
                return version

            assert await version_scoring(0, 60) == 1
            await registry.activate(pool, ADMIN, name, 2)
            assert await version_scoring(60, 120) == 2
            await registry.rollback(pool, ADMIN, name)
            assert await version_scoring(120, 180) == 1
            await registry.quarantine(pool, ADMIN, name, 1, "bad")
            # v1 was active and v2 was active before it: v2 takes over.
            assert await version_scoring(180, 240) == 2
            await registry.quarantine(pool, ADMIN, name, 2, "bad too")
            assert await version_scoring(240, 300) is None
    await asyncio.sleep(0)


def _firewatch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firewatch", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


async def test_model_commands(
    client: httpx.AsyncClient,
    pool: PgPool,
    settings: Settings,
    database_url: str,
    redis_url: str,
) -> None:
    name = unique_stream("cli")
    stream = recent_stream(seed=13)
    await register(client, name)
    await post(client, points(name, stream.train_values, stream.train_epochs))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIREWATCH_")}
    env.update(
        {
            "FIREWATCH_DATABASE_URL": database_url,
            "FIREWATCH_REDIS_URL": redis_url,
            "FIREWATCH_MODEL_DIR": str(settings.resolved_model_dir),
            "COLUMNS": "200",
        }
    )
    trained = await asyncio.to_thread(_firewatch, env, "model", "train", name, "--activate")
    assert trained.returncode == 0, trained.stderr
    assert "active" in trained.stdout
    # (each command imports scikit-learn: the registry itself is tested over HTTP above)
    await registry.train(settings=settings, pool=pool, actor=ADMIN, stream_name=name)
    await registry.quarantine(pool, ADMIN, name, 2, "noisy")
    listed = await asyncio.to_thread(_firewatch, env, "model", "list", name)
    assert listed.returncode == 0, listed.stderr
    lines = [ln for ln in listed.stdout.splitlines() if "quarantined" in ln or "active" in ln]
    assert any("quarantined" in ln for ln in lines)
    assert any(" active" in ln for ln in lines)  # v1, trained and activated by the CLI
    missing = await asyncio.to_thread(_firewatch, env, "model", "activate", name, "9")
    assert missing.returncode == 1
    assert "no model v9" in missing.stderr
