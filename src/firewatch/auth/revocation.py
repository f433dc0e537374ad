"""Revocation and per-principal request limits in Redis, in one round trip.

Each authenticated request runs :data:`_CHECK` (EVALSHA, over the pipelined connection
of runtime/redis_mux.py): whether the token's jti
or its login (sid) is denylisted, the lowest token version the user's tokens must
carry (raised by a role change, disable or password reset), and the fixed-window
request count of the principal. A library limiter would cost a second round trip
on every request, so this one limit lives here; login limits use the ``limits``
library (throttle.py).

Redis errors propagate: requests that need the denylist fail closed (503).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from firewatch.auth.tokens import MAX_ACCESS_TOKEN_TTL
from firewatch.runtime.redis_mux import RedisMux

_CHECK = """
local denied = redis.call('EXISTS', KEYS[1], KEYS[2])
local floor = redis.call('GET', KEYS[3]) or '0'
local count, ttl = 0, 0
if tonumber(ARGV[1]) > 0 then
  count = redis.call('INCR', KEYS[4])
  if count == 1 then redis.call('EXPIRE', KEYS[4], ARGV[2]) end
  ttl = redis.call('TTL', KEYS[4])
end
return {denied, floor, count, ttl}
"""

_COUNT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('TTL', KEYS[1])}
"""

WINDOW = 60


def _jti_key(jti: str) -> str:
    return f"fw:deny:jti:{jti}"


def _sid_key(sid: str) -> str:
    return f"fw:deny:sid:{sid}"


def _user_key(subject: str) -> str:
    return f"fw:deny:user:{subject}"


def _rate_key(kind: str, subject: str) -> str:
    return f"fw:rl:{kind}:{subject}"


@dataclass(frozen=True, slots=True)
class CheckResult:
    revoked: bool
    over_limit: bool
    retry_after: int


class Revocations:
    def __init__(self, redis: Redis, *, access_ttl: int, leeway: int) -> None:
        self._redis = redis
        self._mux = RedisMux(redis)  # the per-request scripts; connects on first use
        self._check = redis.register_script(_CHECK)
        self._count = redis.register_script(_COUNT)
        # Long enough to outlive any token: not only this server's access_ttl, since
        # `token issue --ttl` mints longer ones (up to the maximum) and a token issued
        # before the TTL setting was lowered keeps its lifetime. A version floor that
        # expired before such a token would make a disabled user's token valid again.
        self._hold = max(access_ttl, MAX_ACCESS_TOKEN_TTL) + leeway

    async def check_token(
        self, *, jti: str, sid: str | None, subject: str, version: int, limit: int
    ) -> CheckResult:
        keys = [
            _jti_key(jti),
            _sid_key(sid or jti),
            _user_key(subject),
            _rate_key("api", subject),
        ]
        denied, floor, count, ttl = await self._mux.eval_script(self._check, keys, (limit, WINDOW))
        revoked = int(denied) > 0 or version < int(floor)
        over = limit > 0 and int(count) > limit
        return CheckResult(revoked, over, max(int(ttl), 1))

    async def count_integration(self, subject: str, limit: int) -> CheckResult:
        keys = (_rate_key("ingest", subject),)
        count, ttl = await self._mux.eval_script(self._count, keys, (WINDOW,))
        return CheckResult(False, int(count) > limit, max(int(ttl), 1))

    async def aclose(self) -> None:
        await self._mux.aclose()

    async def deny_token(self, jti: str, exp: int) -> None:
        remaining = max(int(exp - time.time()) + 1, 1)
        await self._redis.set(_jti_key(jti), b"1", ex=remaining)

    async def deny_session(self, sid: str) -> None:
        await self._redis.set(_sid_key(sid), b"1", ex=self._hold)

    async def cut_user(self, subject: str, version: int) -> None:
        """Refuse every access token of ``subject`` older than token ``version``."""
        await self._redis.set(_user_key(subject), str(version).encode(), ex=self._hold)
