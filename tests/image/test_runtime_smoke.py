"""firewatch runs the way the image runs it: locked requirements, non-root, read-only.

No Docker engine here, so this stands in for `docker run --read-only --user 1000`:
a venv holding exactly requirements.lock (hash-checked, no dev or embedded extras),
a read-only copy of the source tree, no HOME, every write under one data dir, as
UID 1000 (when the tests run as root; otherwise as the current non-root user),
against the real PostgreSQL and Redis; it logs in as the bootstrap admin and makes
authenticated requests.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests import servers

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
APP_UID = APP_GID = 1000
METRICS_TOKEN = "smoke-test-metrics-token-0123456789"
ADMIN_PASSWORD = "smoke-Bootstrap-passphrase-7f3c9d2e"
STALE_VENV_SECONDS = 3600


def _world_usable(path: Path) -> bool:
    """Every directory on the way is searchable, and the file runnable, by others."""
    real = path.resolve()
    if not real.exists() or not real.stat().st_mode & stat.S_IXOTH:
        return False
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in real.parents)


def _interpreter() -> Path:
    """A Python of this version that UID 1000 may run (pyenv's may sit under /root)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        Path(getattr(sys, "_base_executable", sys.executable)),  # beneath this venv
        Path("/usr/local/bin") / version,
        Path("/usr/bin") / version,
    ]
    for candidate in candidates:
        if _world_usable(candidate):
            return candidate.resolve()
    raise RuntimeError(f"no {version} runnable by UID {APP_UID} among {candidates}")


def _private_dir(path: Path) -> None:
    """Create ``path`` for this user only if absent; refuse one someone else planted."""
    path.mkdir(mode=0o755, exist_ok=True)
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise RuntimeError(f"{path} is not a directory owned and writable by us only")


def locked_venv() -> Path:
    """The venv of requirements.lock, one per lock content and reused while it exists.

    It lives in /tmp so UID 1000 can reach it wherever the checkout is, is named by
    the lock's digest so checkouts with different locks never share one, and is
    built aside and renamed into place so a concurrent run never sees half of it.
    """
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]
    parent = Path(tempfile.gettempdir())
    prefix = f"firewatch-smoke-venv-{os.geteuid()}-"
    venv = parent / f"{prefix}{digest}"
    # Venvs of other locks (~400 MB each) go once unused for an hour; a run touches
    # its own venv, so one in use is never that old.
    for other in parent.glob(f"{prefix}*"):
        if other != venv and time.time() - other.stat().st_mtime > STALE_VENV_SECONDS:
            shutil.rmtree(other, ignore_errors=True)
    if (venv / "bin" / "python").exists():
        _private_dir(venv)
        os.utime(venv)
        return venv
    building = Path(tempfile.mkdtemp(prefix=f"{venv.name}.", dir=parent))
    try:
        uv = str(Path(sys.executable).parent / "uv")
        python = str(building / "bin" / "python")
        interpreter = str(_interpreter())
        subprocess.run([uv, "venv", "--quiet", "--python", interpreter, str(building)], check=True)
        install = [uv, "pip", "install", "--quiet", "--python", python, "--require-hashes"]
        subprocess.run([*install, "-r", str(LOCK)], check=True)
        building.chmod(0o755)
        building.rename(venv)
    except OSError:
        if not (venv / "bin" / "python").exists():  # not a concurrent run that won
            raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    _private_dir(venv)
    return venv


@pytest.fixture
def sandbox() -> Iterator[tuple[Path, Path]]:
    """(read-only source tree, writable data dir) for the app user."""
    top = Path(tempfile.mkdtemp(prefix="firewatch-smoke-"))
    try:
        top.chmod(0o755)
        source = top / "src"
        shutil.copytree(ROOT / "src", source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for path in [source, *source.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        data = top / "data"
        data.mkdir(mode=0o700)
        if os.geteuid() == 0:
            os.chown(data, APP_UID, APP_GID)
        yield source, data
    finally:
        for path in top.rglob("*"):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(top)


@pytest.fixture
async def database(admin_database_url: str) -> AsyncIterator[str]:
    name, url = await servers.create_database(admin_database_url)
    try:
        yield url
    finally:
        await servers.drop_database(admin_database_url, name)


def _process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def test_serves_as_non_root_from_the_lock_on_a_read_only_tree(
    sandbox: tuple[Path, Path], database: str, redis_url: str
) -> None:
    source, data = sandbox
    venv = locked_venv()
    port = servers.free_port()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",  # no HOME, nothing else inherited
        "PYTHONPATH": str(source),
        "PYTHONDONTWRITEBYTECODE": "1",
        "FIREWATCH_DATA_DIR": str(data),
        "FIREWATCH_DATABASE_URL": database,
        "FIREWATCH_REDIS_URL": redis_url,
        "FIREWATCH_HOST": "127.0.0.1",
        "FIREWATCH_PORT": str(port),
        "FIREWATCH_LOG_FORMAT": "json",
        "FIREWATCH_METRICS_TOKEN": METRICS_TOKEN,
        "FIREWATCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    command = [str(venv / "bin" / "python"), "-m", "firewatch", "serve"]
    if os.geteuid() == 0:
        command = [
            "setpriv",
            f"--reuid={APP_UID}",
            f"--regid={APP_GID}",
            "--clear-groups",
            "--inh-caps=-all",
            "--no-new-privs",
            *command,
        ]
    log_path = data.parent / "serve.log"
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, cwd=data, stdout=log, stderr=subprocess.STDOUT)
        try:
            try:
                servers.wait_ready(base, process)
            except (RuntimeError, TimeoutError) as exc:
                raise AssertionError(log_path.read_text(errors="replace")) from exc
            uid = _process_uid(process.pid)
            assert uid == (APP_UID if os.geteuid() == 0 else os.geteuid())
            assert uid != 0
            # The app's modules come from the read-only copy, its libraries from the lock.
            assert not list((venv / "lib").glob("python*/site-packages/firewatch"))
            with httpx.Client(base_url=base, timeout=10) as client:
                assert client.get("/healthz").json() == {"status": "ok"}
                ready = client.get("/readyz")
                assert ready.status_code == 200, ready.text
                assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}
                assert client.get("/metrics").status_code == 401
                scrape = client.get(
                    "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
                )
                assert scrape.status_code == 200, scrape.text
                assert "firewatch_" in scrape.text
                # A real login: the bootstrap admin, an ES256 access token signed with
                # a key the app generated in (and only in) the data dir.
                assert client.get("/api/v1/incidents").status_code == 401
                login = client.post(
                    "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
                )
                assert login.status_code == 200, login.text
                bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
                me = client.get("/api/v1/auth/me", headers=bearer)
                assert me.status_code == 200, me.text
                assert (me.json()["subject"], me.json()["role"]) == ("admin", "admin")
                incidents = client.get("/api/v1/incidents", headers=bearer)
                assert incidents.status_code == 200, incidents.text
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    output = log_path.read_text(errors="replace")
    # firewatch serve exits 128 + SIGTERM after uvicorn has shut down cleanly.
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "Application shutdown complete" in output
    assert "Traceback" not in output, output
    # Nothing was written into the source tree (no bytecode, no caches); the signing
    # keyring went to the data dir, private to the app user.
    assert [p for p in source.rglob("*") if p.name == "__pycache__"] == []
    keyrings = list(data.rglob("jwt-keys.json"))
    assert len(keyrings) == 1
    assert stat.S_IMODE(keyrings[0].stat().st_mode) == 0o600
    assert keyrings[0].stat().st_uid == (APP_UID if os.geteuid() == 0 else os.geteuid())
