"""Login for an unknown user costs the same as for a known user with a wrong password.

A benchmark-style test with a generous bound: both paths run one argon2id verify
(unknown users against a dummy hash); the medians of many interleaved tries must
agree within 35 %. Without the dummy verify the unknown path would be several times
faster (no hash at all), far outside the bound.
"""

from __future__ import annotations

import secrets
import statistics
import time

import httpx
from fastapi import FastAPI

from firewatch.auth.principal import Role
from tests.conftest import make_user

TRIES = 30


async def _timed(c: httpx.AsyncClient, username: str) -> float:
    start = time.perf_counter()
    r = await c.post(
        "/api/v1/auth/login", json={"username": username, "password": "Wrong-guess-12"}
    )
    elapsed = time.perf_counter() - start
    assert r.status_code == 401
    return elapsed


async def test_unknown_and_known_users_take_the_same_time(app: FastAPI) -> None:
    known = []
    for _ in range(3):  # spread the failures so no name reaches the lockout threshold
        name, _pw = await make_user(app, Role.VIEWER)
        known.append(name)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.77", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://fw") as c:
        await _timed(c, known[0])  # warm-up
        known_times, unknown_times = [], []
        for i in range(TRIES):
            known_times.append(await _timed(c, known[i % 3]))
            unknown_times.append(await _timed(c, f"ghost-{secrets.token_hex(4)}"))
    k, u = statistics.median(known_times), statistics.median(unknown_times)
    assert 1 / 1.35 <= u / k <= 1.35, f"known {k * 1e3:.1f} ms vs unknown {u * 1e3:.1f} ms"
