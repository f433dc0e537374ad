"""The pipelined Redis connection of the per-request auth script (runtime/redis_mux.py),
against real redis-server processes of its own (stopped, paused and killed here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as redis_sync
import uvloop
from redis import exceptions
from redis.asyncio import Redis

from firewatch.runtime.redis import create_redis
from firewatch.runtime.redis_mux import RedisMux
from tests.servers import OwnRedis, free_port

ECHO = "redis.call('SET', KEYS[1], ARGV[1]) return {ARGV[1], redis.call('GET', KEYS[1])}"
FAIL = "return redis.error_reply('ERR refused by the script')"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path, "--requirepass", "a-test-password-of-redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def admin(server: OwnRedis, db: int = 0) -> redis_sync.Redis:
    return redis_sync.Redis(port=server.port, password=server.password, db=db)


@pytest.fixture
async def client(own_redis: OwnRedis) -> AsyncIterator[Redis]:
    # db 3 and a password: the mux must AUTH and SELECT as the client does
    url = f"redis://:{own_redis.password}@127.0.0.1:{own_redis.port}/3"
    redis = create_redis(url)
    try:
        yield redis
    finally:
        await redis.aclose()


@pytest.fixture
async def mux(client: Redis) -> AsyncIterator[RedisMux]:
    """The mux of ``client`` (its settings), closed after the test."""
    connection = RedisMux(client)
    try:
        yield connection
    finally:
        await connection.aclose()


async def test_concurrent_calls_each_get_their_own_answer_in_the_clients_database(
    client: Redis, mux: RedisMux, own_redis: OwnRedis
) -> None:
    script = client.register_script(ECHO)
    answers = await asyncio.gather(
        *(mux.eval_script(script, (f"k{i}",), (f"v{i}",)) for i in range(500))
    )
    assert answers == [[f"v{i}".encode()] * 2 for i in range(500)]
    assert admin(own_redis, db=3).get("k499") == b"v499"  # AUTH and SELECT 3 applied
    assert admin(own_redis, db=0).get("k499") is None


async def test_a_flushed_script_cache_loads_the_script_again(
    client: Redis, mux: RedisMux, own_redis: OwnRedis
) -> None:
    script = client.register_script(ECHO)
    assert await mux.eval_script(script, ("k",), ("1",)) == [b"1", b"1"]
    admin(own_redis).script_flush()
    assert admin(own_redis).script_exists(script.sha) == [False]
    assert await mux.eval_script(script, ("k",), ("2",)) == [b"2", b"2"]
    assert admin(own_redis).script_exists(script.sha) == [True]  # EVAL cached it


async def test_an_error_reply_is_a_response_error_and_the_connection_stays_usable(
    client: Redis,
    mux: RedisMux,
) -> None:
    failing = client.register_script(FAIL)
    echo = client.register_script(ECHO)
    results = await asyncio.gather(
        mux.eval_script(echo, ("a",), ("1",)),
        mux.eval_script(failing, (), ()),
        mux.eval_script(echo, ("b",), ("2",)),
        return_exceptions=True,
    )
    assert results[0] == [b"1", b"1"]
    assert isinstance(results[1], exceptions.ResponseError)
    assert "refused by the script" in str(results[1])
    assert results[2] == [b"2", b"2"]  # the answers after the error stay in step


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("wrong password", exceptions.AuthenticationError),
        ("nothing listening", exceptions.ConnectionError),
    ],
)
async def test_a_refused_connection_raises_what_redis_py_raises(
    own_redis: OwnRedis, case: str, error: type[Exception]
) -> None:
    if case == "wrong password":
        url = f"redis://:not-the-password@127.0.0.1:{own_redis.port}/0"
    else:
        url = f"redis://127.0.0.1:{free_port()}/0"
    redis = create_redis(url)
    mux = RedisMux(redis)
    try:
        with pytest.raises(error):
            await mux.eval_script(redis.register_script(ECHO), ("k",), ("v",))
    finally:
        await mux.aclose()
        await redis.aclose()


async def test_a_killed_connection_fails_its_calls_and_the_next_call_reconnects(
    client: Redis, mux: RedisMux, own_redis: OwnRedis
) -> None:
    script = client.register_script(ECHO)
    assert await mux.eval_script(script, ("k",), ("1",)) == [b"1", b"1"]
    assert admin(own_redis).client_kill_filter(_type="normal", skipme=True) >= 1
    outcomes: list[object] = []
    for i in range(5):  # the first call may still be written before the close is seen
        try:
            outcomes.append(await mux.eval_script(script, ("k",), (str(i),)))
        except exceptions.ConnectionError:
            outcomes.append("lost")
    assert outcomes[-1] == [b"4", b"4"]
    assert outcomes.count("lost") <= 1


async def test_a_stalled_redis_times_out_and_service_resumes_after(
    own_redis: OwnRedis,
) -> None:
    redis = Redis(port=own_redis.port, password=own_redis.password, socket_timeout=0.5)
    mux = RedisMux(redis)
    script = redis.register_script(ECHO)
    try:
        assert await mux.eval_script(script, ("k",), ("1",)) == [b"1", b"1"]
        admin(own_redis).client_pause(1500, all=True)
        loop = asyncio.get_running_loop()
        started = loop.time()
        stalled = await asyncio.gather(
            *(mux.eval_script(script, ("k",), ("2",)) for _ in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(r, exceptions.TimeoutError) for r in stalled), stalled
        assert loop.time() - started < 1.4  # socket_timeout, not the pause
        await asyncio.sleep(1.5)
        assert await mux.eval_script(script, ("k",), ("3",)) == [b"3", b"3"]
    finally:
        await mux.aclose()
        await redis.aclose()


async def test_a_unix_socket_url(tmp_path: Path) -> None:
    socket = tmp_path / "redis.sock"
    server = OwnRedis(tmp_path, "--unixsocket", str(socket), "--unixsocketperm", "700")
    server.start()
    redis = create_redis(f"unix://{socket}?db=2")
    mux = RedisMux(redis)
    try:
        assert await mux.eval_script(redis.register_script(ECHO), ("k",), ("u",)) == [b"u", b"u"]
        assert admin(server, db=2).get("k") == b"u"
    finally:
        await mux.aclose()
        await redis.aclose()
        server.stop()


def test_under_uvloop_as_uvicorn_runs_it(own_redis: OwnRedis) -> None:
    """uvicorn serves on uvloop, whose transports are not asyncio's (and which calls
    ``connection_made`` a turn later): the same calls, a kill and a reconnect there."""

    async def scenario() -> list[object]:
        url = f"redis://:{own_redis.password}@127.0.0.1:{own_redis.port}/3"
        redis = create_redis(url)
        mux = RedisMux(redis)
        script = redis.register_script(ECHO)
        try:
            first = await asyncio.gather(
                *(mux.eval_script(script, (f"k{i}",), (str(i),)) for i in range(100))
            )
            admin(own_redis).client_kill_filter(_type="normal", skipme=True)
            after: list[object] = []
            for i in range(3):
                try:
                    after.append(await mux.eval_script(script, ("k",), (str(i),)))
                except exceptions.ConnectionError:
                    after.append("lost")
            return [first, after]
        finally:
            await mux.aclose()
            await redis.aclose()

    first, after = uvloop.run(scenario())
    assert first == [[str(i).encode()] * 2 for i in range(100)]
    assert isinstance(after, list)
    assert after[-1] == [b"2", b"2"]


async def test_a_reply_that_is_not_resp_is_a_connection_error() -> None:
    """A peer that is not Redis (or a stream that went out of step): the call fails with
    ConnectionError and the connection is dropped, not read on from the middle."""

    async def not_redis(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"?this is not RESP\r\n")
        await writer.drain()
        await reader.read(1024)  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(not_redis, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    redis = create_redis(f"redis://127.0.0.1:{port}/0")
    mux = RedisMux(redis)
    try:
        with pytest.raises(exceptions.ConnectionError, match="malformed"):
            await mux.eval_script(redis.register_script(ECHO), ("k",), ("v",))
    finally:
        await mux.aclose()
        await redis.aclose()
        server.close()
        await server.wait_closed()
