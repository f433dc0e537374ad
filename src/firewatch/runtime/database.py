"""The asyncpg pool: the only way the stores reach PostgreSQL.

Pooled connections carry no session state: never ``SET`` (use ``SET LOCAL`` inside a
transaction), ``LISTEN``, session advisory locks (use ``pg_advisory_xact_lock``) or
``WITH HOLD`` cursors on them; a dedicated ``asyncpg.connect`` is the place for those.
That is what lets the pool skip asyncpg's default reset query (``RESET ALL``,
``UNLISTEN *``, ...), a round trip on every release that halved the throughput of
small queries in `make bench`. An unfinished transaction is still rolled back.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Coroutine
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import asyncpg
import orjson

from firewatch.observability import tracing

if TYPE_CHECKING:
    PgPool: TypeAlias = asyncpg.Pool[asyncpg.Record]
    Conn: TypeAlias = (
        asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
    )
    _Connection: TypeAlias = asyncpg.Connection[asyncpg.Record]
else:  # asyncpg's classes are generic only in its stubs
    PgPool = asyncpg.Pool
    Conn = asyncpg.Connection
    _Connection = asyncpg.Connection

T = TypeVar("T")


#: What a statement raises when its connection is gone or being shut down (the backend
#: was terminated, the server restarts or fails over): the same work on another pooled
#: connection can succeed, so callers answer 503 or try again later, never 500.
#: ``InternalClientError`` is here because a pooled connection whose backend was
#: terminated while it sat idle has already read the server's FATAL message but not
#: yet the close of the socket: the pool still hands it out, and its first statement
#: fails with "cannot switch to state N; another operation (2) is in progress".
CONNECTION_LOST_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin/crash shutdown, cannot connect now
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.InterfaceError,
)

# InterfaceError and InternalClientError are also what asyncpg raises for mistakes in
# our own code ("the server expects 2 arguments for this query, 1 was passed", "Bind:
# expected a sequence", a connection used by two tasks at once): those are bugs, a 500
# with a traceback, not a 503 that says "retry shortly". Of these two classes only
# what says the connection or the pool is gone counts as lost.
_LOST_MARKERS = (
    "connection is closed",
    "connection was closed",
    "pool is closing",
    "pool is closed",
    "cannot switch to state",  # a backend terminated while idle (see above)
)


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection is gone (see :data:`CONNECTION_LOST_ERRORS`),
    rather than that our code used it wrongly."""
    if isinstance(exc, (asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError)):
        return True
    if type(exc) in (asyncpg.exceptions.InterfaceError, asyncpg.exceptions.InternalClientError):
        text = str(exc)
        return any(marker in text for marker in _LOST_MARKERS)
    return False


def _encode_json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    # jsonb travels as Python objects; orjson is both faster and stricter than json.
    await conn.set_type_codec(
        "jsonb", encoder=_encode_json, decoder=orjson.loads, schema="pg_catalog"
    )
    await conn.set_type_codec("json", encoder=_encode_json, decoder=json.loads, schema="pg_catalog")


async def _reset_connection(conn: asyncpg.Connection[Any]) -> None:
    """Nothing to reset (see the module docstring).

    asyncpg rolls back any transaction left open and drops listeners before it
    calls this, so a handler that failed mid-transaction cannot leak it.
    """


async def _in_span(scope: AbstractContextManager[object], statement: Awaitable[T]) -> T:
    """``statement`` awaited inside its span (``tracing.sql_span``), which it ends."""
    with scope:
        return await statement


#: asyncpg's own statement methods, called by TracedConnection's as plain functions: a
#: ``super()`` per statement built a proxy object on every statement of every request.
_base_execute = asyncpg.Connection.execute
_base_executemany = asyncpg.Connection.executemany
_base_fetch = asyncpg.Connection.fetch
_base_fetchval = asyncpg.Connection.fetchval
_base_fetchrow = asyncpg.Connection.fetchrow


class TracedConnection(_Connection):
    """A pooled connection whose statements get CLIENT spans in sampled requests
    (:func:`firewatch.observability.tracing.sql_span`): the pool's connection class
    while tracing is on, so that every statement of every store is seen without
    wrapping asyncpg's methods. Elsewhere (tracing off, an unsampled request) a
    statement costs one call that answers None. The methods are plain functions that
    return asyncpg's own coroutine (or it wrapped in its span): an ``async def`` here
    would add a coroutine and a frame to every statement."""

    _span_attributes: dict[str, str | int] | None = None

    def _attributes(self) -> dict[str, str | int]:
        """The span attributes of this connection, built at its first span."""
        attributes = self._span_attributes
        if attributes is None:
            params = getattr(self, "_params", None)
            attributes = {"db.system": "postgresql"}
            for key, name in (("db.name", "database"), ("db.user", "user")):
                value = getattr(params, name, None)
                if value:
                    attributes[key] = str(value)
            addr = getattr(self, "_addr", None)
            if isinstance(addr, tuple):
                attributes["net.peer.name"] = str(addr[0])
                attributes["net.peer.port"] = int(addr[1])
                attributes["net.transport"] = "ip_tcp"
            elif isinstance(addr, str):  # a unix socket's path
                attributes["net.peer.name"] = addr
                attributes["net.transport"] = "other"
            self._span_attributes = attributes
        return attributes

    def execute(self, query: str, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, str]:
        scope = tracing.sql_span(query, self._attributes)
        statement = _base_execute(self, query, *args, **kwargs)
        return statement if scope is None else _in_span(scope, statement)

    def executemany(self, command: str, args: Any, **kwargs: Any) -> Coroutine[Any, Any, None]:
        scope = tracing.sql_span(command, self._attributes)
        statement = _base_executemany(self, command, args, **kwargs)
        return statement if scope is None else _in_span(scope, statement)

    def fetch(self, query: str, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        scope = tracing.sql_span(query, self._attributes)
        statement = _base_fetch(self, query, *args, **kwargs)
        return statement if scope is None else _in_span(scope, statement)

    def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        scope = tracing.sql_span(query, self._attributes)
        statement = _base_fetchval(self, query, *args, **kwargs)
        return statement if scope is None else _in_span(scope, statement)

    def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        scope = tracing.sql_span(query, self._attributes)
        statement = _base_fetchrow(self, query, *args, **kwargs)
        return statement if scope is None else _in_span(scope, statement)


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    command_timeout: float = 30.0,
    jit: bool = True,
) -> PgPool:
    """Open a pool whose connections decode json/jsonb to Python values.

    ``jit=False`` turns PostgreSQL's JIT compilation off for the pool's sessions. The
    suggester's batch queries (a correlated subquery per row) can be estimated far
    above ``jit_above_cost``: in a database of ~440,000 incidents, ``EXPLAIN
    ANALYZE`` of its pending-incidents query showed ~180 ms of JIT compilation for
    ~2 ms of execution (2026-11-28), and it runs once per batch of 100.
    """
    settings = {"application_name": "firewatch", "timezone": "UTC"}
    if not jit:
        settings["jit"] = "off"
    pool: PgPool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        init=_init_connection,
        reset=_reset_connection,
        server_settings=settings,
        connection_class=TracedConnection if tracing.enabled() else asyncpg.Connection,
    )
    return pool
