"""One pipelined Redis connection for the script every authenticated request runs.

Every /api/v1 request runs one ``EVALSHA`` (auth/revocation.py: denylist, token
version floor and request budget). Through redis-py that call cost ~100 us of the
API process's CPU (a ~500 us GET incident): the client's retry wrapper, a pooled
connection taken and given back with its health check, an ``asyncio.StreamReader``
read and the parser around hiredis, per call. ``RedisMux`` sends the same command
over one connection that every request of the process shares: the commands of one turn
of the event loop are written together at its end (under load, the requests that
arrived together: one system call for all of them), Redis answers them in order, and
each answer resolves the oldest waiting future (what Redis clients call
auto-pipelining). hiredis,
which redis-py already uses, packs the commands and parses the answers; the call
costs ~40 us (``python -m bench.inprocess``, bench/README.md).

It is deliberately small: one command shape (a script by its SHA1, loaded again
with ``EVAL`` after a ``NOSCRIPT``), the connection settings of the app's redis-py
client (host and port or unix socket, TLS context, username/password or credential
provider, database, timeouts, all read from the client's own connection class, so
the two cannot disagree), and the same errors redis-py raises, so that callers and
the 503 mapping (http/problems.py) see no difference: ``ConnectionError`` when the
connection fails or is lost, ``TimeoutError`` after ``socket_timeout`` without an
answer, ``ResponseError`` for an error reply. A timeout drops the connection, as
redis-py does, since a stalled server may answer late; the next call reconnects.
Everything else keeps using redis-py.

When the request is traced, each call gets a CLIENT span as the redis
instrumentation would give it (``db.system`` redis, the command name, no values).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis import exceptions
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, SSLConnection, UnixDomainSocketConnection
from redis.commands.core import AsyncScript

from firewatch.observability import tracing

Arg = bytes | str | int | memoryview


def _pack(command: tuple[Arg, ...]) -> bytes:
    # hiredis's stub declares a 1-tuple where it takes a command of any length.
    packed: bytes = hiredis.pack_command(cast(Any, command))
    return packed


class _Protocol(asyncio.Protocol):
    """The connection's reading side: hiredis parses, answers resolve futures in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float | None) -> None:
        self.loop = loop  # the connection's (and every future of it belongs to it)
        self.timeout = timeout
        self.reader = hiredis.Reader(replyError=exceptions.ResponseError)
        # callers' futures with the time by which their answer must have come, in the
        # order the commands were sent (Redis answers in that order)
        self.waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.outgoing: list[bytes] = []  # commands of this turn of the loop, not yet written
        self._watchdog: asyncio.TimerHandle | None = None

    def request(self, command: tuple[Arg, ...]) -> asyncio.Future[Any]:
        """Send ``command``; the future gets its answer."""
        future: asyncio.Future[Any] = self.loop.create_future()
        self.send(_pack(command))
        self._expect(future)
        return future

    def _expect(self, future: asyncio.Future[Any]) -> None:
        """``future`` gets the answer to the command sent last.

        One timer per connection, not one per call (a timer handle created and
        cancelled on every request): it fires at the deadline of the oldest unanswered
        command, which is the earliest, and is armed again for the next oldest."""
        timeout = self.timeout
        if timeout is None:
            self.waiting.append((future, 0.0))
            return
        self.waiting.append((future, self.loop.time() + timeout))
        if self._watchdog is None:
            self._watchdog = self.loop.call_later(timeout, self._check_deadline)

    def _check_deadline(self) -> None:
        """No answer by its deadline: drop the connection (a stalled Redis may answer
        later, out of step with the next caller), as redis-py does on its timeout."""
        self._watchdog = None
        if self.closed or not self.waiting:
            return
        late = self.waiting[0][1] - self.loop.time()
        if late <= 0:
            self.abort(exceptions.TimeoutError("Timeout reading from Redis"))
        else:
            self._watchdog = self.loop.call_later(late, self._check_deadline)

    def send(self, command: bytes) -> None:
        """Queue ``command``; what the requests of one turn of the loop send is written
        together at its end, one system call for all of them."""
        if not self.outgoing:
            self.loop.call_soon(self.flush)
        self.outgoing.append(command)

    def flush(self) -> None:
        outgoing, self.outgoing = self.outgoing, []
        if outgoing and not self.closed and self.transport is not None:
            self.transport.write(outgoing[0] if len(outgoing) == 1 else b"".join(outgoing))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError:  # not RESP: nothing after it can be trusted
                self.abort(exceptions.ConnectionError("Redis sent a malformed reply"))
                return
            if reply is False:  # the rest of an answer is still on its way
                return
            if not waiting:  # an answer nobody asked for: the stream is out of step
                self.abort(exceptions.ConnectionError("unexpected reply from Redis"))
                return
            future, _ = waiting.popleft()
            if not future.done():
                if isinstance(reply, exceptions.ResponseError):
                    future.set_exception(_response_error(reply))
                else:
                    future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exceptions.ConnectionError("connection to Redis lost"))

    def abort(self, error: Exception) -> None:
        """Close the connection now; every waiting call fails with ``error``."""
        self.closed = True
        self._fail(error)
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: Exception) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():  # one exception each: an exception object keeps its traceback
                future.set_exception(type(error)(*error.args))


def _response_error(reply: exceptions.ResponseError) -> exceptions.ResponseError:
    text = str(reply)
    if text.startswith("NOSCRIPT"):
        return exceptions.NoScriptError(text)
    return reply


class RedisMux:
    """Pipelined ``EVALSHA`` calls over one connection (see the module docstring)."""

    def __init__(self, client: Redis) -> None:
        pool = client.connection_pool
        # The client's own connection object, never connected: its parsed settings.
        self._settings: AbstractConnection = pool.connection_class(**pool.connection_kwargs)
        self._timeout = self._settings.socket_timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None
        self._span_attributes: dict[str, str | int] = {
            "db.system": "redis",
            "db.redis.database_index": int(self._settings.db),
        }

    async def eval_script(
        self, script: AsyncScript, keys: Sequence[Arg], args: Sequence[Arg]
    ) -> Any:
        """``script`` (registered on the redis-py client) with ``keys`` and ``args``,
        in a CLIENT span where one is made (:func:`tracing.client_scope`; try/finally
        rather than ``with``: the usual no-span case then costs no no-op context
        manager's two calls, on every authenticated request)."""
        span = tracing.client_scope("EVALSHA", self._span_attributes)
        head: tuple[Arg, ...] = (script.sha, len(keys), *keys, *args)
        try:
            try:
                return await self._call(b"EVALSHA", head)
            except exceptions.NoScriptError:  # a restarted or flushed Redis: load it again
                return await self._call(b"EVAL", (script.script, *head[1:]))
        except Exception as error:  # not a cancellation: as tracing.client_span
            if span is not None:
                tracing.set_error(span, type(error).__qualname__)
            raise
        finally:
            if span is not None:
                span.end()

    async def _call(self, command: bytes, args: tuple[Arg, ...]) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        # futures of the loop the connection was opened on, not of
        # asyncio.get_running_loop(): on CPython 3.11 and 3.12 that asks getpid() of the
        # kernel on every call
        return await protocol.request((command, *args))

    async def _connect(self) -> _Protocol:
        # Concurrent callers share one attempt; a failed attempt is not remembered.
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.get_running_loop().create_task(self._open())
        try:
            protocol = await asyncio.shield(self._connecting)
        except OSError as exc:
            raise exceptions.ConnectionError(f"cannot connect to Redis: {exc}") from None
        except TimeoutError:
            raise exceptions.TimeoutError("timed out connecting to Redis") from None
        self._protocol = protocol
        return protocol

    async def _open(self) -> _Protocol:
        settings = self._settings
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(settings.socket_connect_timeout):
            if isinstance(settings, UnixDomainSocketConnection):
                transport, protocol = await loop.create_unix_connection(
                    lambda: _Protocol(loop, self._timeout), settings.path
                )
            else:
                host = getattr(settings, "host", "localhost")
                port = int(getattr(settings, "port", 6379))
                tls = settings.ssl_context.get() if isinstance(settings, SSLConnection) else None
                transport, protocol = await loop.create_connection(
                    lambda: _Protocol(loop, self._timeout), host, port, ssl=tls
                )
            # uvloop calls connection_made only on a later turn of the loop
            protocol.transport = transport
            try:
                await self._handshake(protocol)
            except BaseException:
                protocol.abort(exceptions.ConnectionError("Redis handshake failed"))
                raise
        return protocol

    async def _handshake(self, protocol: _Protocol) -> None:
        """AUTH and SELECT, as redis-py's ``on_connect`` sends them (RESP2)."""
        settings = self._settings
        credentials: tuple[str, ...] | None = None
        if settings.credential_provider is not None:
            credentials = tuple(await settings.credential_provider.get_credentials_async())
        elif settings.username or settings.password:
            credentials = tuple(x for x in (settings.username, settings.password) if x)
        commands: list[tuple[Arg, ...]] = []
        if credentials:
            commands.append((b"AUTH", *credentials))
        if int(settings.db):
            commands.append((b"SELECT", int(settings.db)))
        for command in commands:
            try:
                await protocol.request(command)
            except exceptions.ResponseError as exc:
                if command[0] == b"AUTH":
                    raise exceptions.AuthenticationError("Redis refused the credentials") from None
                raise exceptions.ConnectionError(f"Redis refused {command[0]!r}: {exc}") from None

    async def aclose(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            with contextlib.suppress(BaseException):
                await self._connecting
        if self._protocol is not None:
            self._protocol.abort(exceptions.ConnectionError("closed"))
            self._protocol = None
