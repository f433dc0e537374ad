"""Login throttling in Redis, shared by every worker and replica.

Two moving-window limits from the ``limits`` library (per account name and per
client), and a progressive lockout: after ``threshold`` consecutive failures for a
name the name is locked for ``base`` seconds, doubling with every further lockout
up to ``max``. Names are counted whether or not the account exists, so a locked
answer does not reveal which accounts exist. Redis errors propagate: login fails
closed (503) when Redis is down, since its brute-force protection lives there.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis

FAILURE_WINDOW = 15 * 60

# INCR with an expiry set by the first failure (EXPIRE NX needs Redis 7; this is atomic
# on any version, including the embedded one).
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""
LEVEL_MEMORY = 24 * 3600


def _name_key(username: str) -> str:
    return hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Lockout:
    seconds: int
    level: int


class LoginThrottle:
    def __init__(
        self,
        redis: Redis,
        *,
        per_account: str,
        per_client: str,
        threshold: int,
        base_seconds: int,
        max_seconds: int,
    ) -> None:
        # Share the application's connection pool; limits adds its Lua scripts.
        shared: dict[str, Any] = {"connection_pool": redis.connection_pool}
        storage = RedisStorage(
            "async+redis://localhost:6379",  # unused: the shared pool is the connection
            implementation="redispy",
            key_prefix="fw:limits",
            **shared,
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._per_account: RateLimitItem = parse(per_account)
        self._per_client: RateLimitItem = parse(per_client)
        self._redis = redis
        self._count = redis.register_script(_COUNT)
        self.threshold = threshold
        self.base = base_seconds
        self.max = max_seconds

    async def _hit(self, item: RateLimitItem, *ids: str) -> int | None:
        """None if allowed, else seconds until the window frees a slot."""
        if await self._limiter.hit(item, *ids):
            return None
        stats = await self._limiter.get_window_stats(item, *ids)
        return max(int(stats.reset_time - time.time()) + 1, 1)

    async def attempt(self, username: str, client: str | None) -> int | None:
        """Count a login attempt; seconds to wait if it must be refused, else None."""
        if client is not None:
            wait = await self._hit(self._per_client, "login-client", client)
            if wait is not None:
                return wait
        name = _name_key(username)
        wait = await self._hit(self._per_account, "login-account", name)
        if wait is not None:
            return wait
        ttl = int(await self._redis.ttl(f"fw:lock:{name}"))
        return ttl if ttl > 0 else None

    async def failed(self, username: str) -> Lockout | None:
        """Record a failure; the lockout it triggered, if any."""
        name = _name_key(username)
        failures = await self._count(keys=[f"fw:fail:{name}"], args=[FAILURE_WINDOW])
        if int(failures) < self.threshold:
            return None
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(f"fw:lockn:{name}")
            pipe.expire(f"fw:lockn:{name}", LEVEL_MEMORY)
            pipe.delete(f"fw:fail:{name}")
            level, _, _ = await pipe.execute()
        seconds = min(self.base * 2 ** (int(level) - 1), self.max)
        await self._redis.set(f"fw:lock:{name}", b"1", ex=seconds)
        return Lockout(seconds, int(level))

    async def succeeded(self, username: str) -> None:
        name = _name_key(username)
        await self._redis.delete(f"fw:fail:{name}", f"fw:lockn:{name}")

    async def unlock(self, username: str) -> None:
        """Administrative unlock (password reset, enable)."""
        name = _name_key(username)
        await self._redis.delete(f"fw:fail:{name}", f"fw:lockn:{name}", f"fw:lock:{name}")
