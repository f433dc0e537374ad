"""The real servers the tests talk to: from the environment, else embedded ones.

``FIREWATCH_TEST_DATABASE_URL`` names a PostgreSQL where the tests may create and
drop databases; ``FIREWATCH_TEST_REDIS_URL`` a Redis whose numbered databases the
tests may flush. Without them, an embedded PostgreSQL and Redis are started in a
temporary directory for the run.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
import httpx
import redis as redis_sync

from firewatch.runtime.embedded import EmbeddedPostgres, EmbeddedRedis


def worker_index() -> int:
    """0 for the main process, n+1 for pytest-xdist worker gwN."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(name[2:]) + 1 if name.startswith("gw") else 0


@contextmanager
def admin_database_url(tmp: Path) -> Iterator[str]:
    url = os.environ.get("FIREWATCH_TEST_DATABASE_URL")
    if url:
        yield url
        return
    pg = EmbeddedPostgres(tmp / "embedded")
    try:
        yield pg.start()
    finally:
        pg.stop()


@contextmanager
def redis_base_url(tmp: Path) -> Iterator[str]:
    url = os.environ.get("FIREWATCH_TEST_REDIS_URL")
    if url:
        yield url
        return
    rd = EmbeddedRedis(tmp / "embedded")
    try:
        yield rd.start()
    finally:
        rd.stop()


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database (unix-socket URLs included)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def redis_db(url: str) -> int:
    """The database number of a Redis URL (``redis://h:p/N`` or ``unix://...?db=N``)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        values = parse_qs(parts.query).get("db", ["0"])
        return int(values[0])
    return int(parts.path.lstrip("/") or 0)


def with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        # not urlunsplit: "unix" is not a netloc scheme to it, so it would drop the "//"
        # and give "unix:/path", which redis-py's synchronous client refuses
        return f"unix://{parts.path}?db={db}"
    return urlunsplit(parts._replace(path=f"/{db}"))


async def create_database(admin_url: str) -> tuple[str, str]:
    name = f"fw_test_{worker_index()}_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, with_database(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# The first admin of every live server (bootstrap from FIREWATCH_ADMIN_PASSWORD), unless
# a test passes its own; log in with ``bearer(server.base_url)``.
LIVE_ADMIN_PASSWORD = "live-Serv3r-operator-pw"


def bearer(
    base_url: str, username: str = "admin", password: str = LIVE_ADMIN_PASSWORD
) -> dict[str, str]:
    """``Authorization`` header of a fresh login on a live server."""
    r = httpx.post(
        f"{base_url}/api/v1/auth/login",
        json={"username": username, "password": password},
        timeout=10,
    )
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@dataclass
class LiveServer:
    """A ``firewatch serve`` process on 127.0.0.1, for tests that need real HTTP."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_ready(base_url: str, process: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    # Generous: on a shared 2-core machine under parallel test runs, importing the
    # app (pandas, scikit-learn, OpenTelemetry) alone has taken over 25 s.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"firewatch exited early with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"firewatch at {base_url} not ready in {timeout}s")


@contextmanager
def live_server(
    env: Mapping[str, str],
    log_path: Path,
    *,
    args: tuple[str, ...] = (),
    ready_timeout: float = 60.0,
) -> Iterator[LiveServer]:
    port = free_port()
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FIREWATCH_") or k.startswith("FIREWATCH_TEST_")
    }
    full_env.update(
        {
            "FIREWATCH_HOST": "127.0.0.1",
            "FIREWATCH_PORT": str(port),
            "FIREWATCH_ADMIN_PASSWORD": LIVE_ADMIN_PASSWORD,
        }
    )
    full_env.update(env)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "firewatch", "serve", *args],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_ready(base_url, process, ready_timeout)
            except (RuntimeError, TimeoutError) as exc:  # say why, from its own output
                log.flush()
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{exc}; its output ends:\n{tail}") from None
            yield LiveServer(process, base_url, log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class OwnRedis:
    """A redis-server child process on 127.0.0.1 that the test may stop and restart."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.args = args  # more redis-server options (--requirepass, --unixsocket, ...)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def password(self) -> str | None:
        if "--requirepass" in self.args:
            return self.args[self.args.index("--requirepass") + 1]
        return None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is installed by scripts/test-deps.sh"
        self.process = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis_sync.Redis(
                    port=self.port, socket_timeout=0.5, password=self.password
                ).ping():
                    return
            except redis_sync.ConnectionError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
