"""The pool skips asyncpg's reset query but never hands out a connection mid-transaction."""

from __future__ import annotations

import asyncpg

from firewatch.runtime.database import create_pool


async def test_unfinished_transaction_is_rolled_back_on_release(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS pool_reset_probe (n int)")
            await conn.execute("TRUNCATE pool_reset_probe")
        async with pool.acquire() as conn:
            # A handler that began a transaction by hand and never finished it.
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO pool_reset_probe VALUES (1)")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM pool_reset_probe") == 0
            await conn.execute("DROP TABLE pool_reset_probe")
    finally:
        await pool.close()


async def test_transaction_scoped_settings_do_not_leak(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            default = await conn.fetchval("SHOW statement_timeout")
            async with conn.transaction():
                await conn.execute("SET LOCAL statement_timeout = '1234ms'")
                assert await conn.fetchval("SHOW statement_timeout") == "1234ms"
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW statement_timeout") == default
            assert isinstance(conn, asyncpg.pool.PoolConnectionProxy)
    finally:
        await pool.close()


async def test_a_pool_without_jit_keeps_it_off_in_every_session(database_url: str) -> None:
    default = await create_pool(database_url, min_size=1, max_size=1)
    without = await create_pool(database_url, min_size=1, max_size=2, jit=False)
    try:
        server_default = await default.fetchval(
            "SELECT reset_val FROM pg_settings WHERE name = 'jit'"
        )
        assert await default.fetchval("SHOW jit") == server_default
        async with without.acquire() as a, without.acquire() as b:
            assert [await a.fetchval("SHOW jit"), await b.fetchval("SHOW jit")] == ["off", "off"]
        # and still after a release (the pool's reset) and a reconnection
        assert await without.fetchval("SHOW jit") == "off"
        await without.expire_connections()
        assert await without.fetchval("SHOW jit") == "off"
    finally:
        await default.close()
        await without.close()
