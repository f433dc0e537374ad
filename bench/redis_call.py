"""CPU per call of authentication's Redis script: redis-py against runtime/redis_mux.py.

``python -m bench.redis_call [--calls N] [--rounds R]`` runs the script of
``Revocations.check_token`` (auth/revocation.py) N times in a row per round on
uvloop, through redis-py's ``AsyncScript`` and through ``RedisMux``, alternating, and
prints the best round of each in microseconds of this process's CPU (Redis's own
CPU is not in it). Redis: ``FIREWATCH_BENCH_REDIS_URL``, else
``FIREWATCH_TEST_REDIS_URL``, else redis://127.0.0.1:6379/0; the keys it touches are
under ``fw:bench:``. See ADR-008.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Awaitable, Callable

import uvloop

from firewatch.auth.revocation import _CHECK
from firewatch.runtime.redis import create_redis
from firewatch.runtime.redis_mux import RedisMux

KEYS = ("fw:bench:jti", "fw:bench:sid", "fw:bench:user", "fw:bench:rl")
ARGS = (1_000_000_000, 60)  # a budget the bench never exhausts, the 60 s window


async def _run(url: str, calls: int, rounds: int) -> dict[str, float]:
    redis = create_redis(url)
    mux = RedisMux(redis)
    script = redis.register_script(_CHECK)

    async def through_redis_py() -> object:
        return await script(keys=list(KEYS), args=list(ARGS))

    async def through_mux() -> object:
        return await mux.eval_script(script, KEYS, ARGS)

    ways: dict[str, Callable[[], Awaitable[object]]] = {
        "redis-py": through_redis_py,
        "redis_mux": through_mux,
    }
    best = dict.fromkeys(ways, float("inf"))
    try:
        for _ in range(rounds):
            for name, call in ways.items():
                for _ in range(min(calls, 300)):  # warm: connections, script cache
                    await call()
                start = time.process_time()
                for _ in range(calls):
                    await call()
                best[name] = min(best[name], (time.process_time() - start) / calls * 1e6)
    finally:
        await mux.aclose()
        await redis.delete(*KEYS)
        await redis.aclose()
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_call", description=__doc__)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    url = os.environ.get("FIREWATCH_BENCH_REDIS_URL") or os.environ.get(
        "FIREWATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"
    )
    best = uvloop.run(_run(url, args.calls, args.rounds))
    print(f"CPU us per EVALSHA of the auth script, best of {args.rounds} rounds of {args.calls}")
    for name, us in best.items():
        print(f"  {name:<10} {us:6.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
