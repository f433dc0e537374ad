"""Password hashing (argon2id, RFC 9106) off the event loop, and the password policy.

One hash costs 64 MiB and a lot of CPU with the default parameters (``python -m
bench.password_hash`` measures it on the machine at hand), so hashes run
in worker threads behind a semaphore: at most ``concurrency`` hashes (and that much
memory) at a time, and at most ``8 x concurrency`` callers waiting; beyond that the
caller gets 503 rather than a queue that grows without bound.
"""

from __future__ import annotations

import asyncio
import secrets
from importlib import resources

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from firewatch.errors import UnavailableError, UnprocessableError

MIN_LENGTH = 12
MAX_LENGTH = 1024


def _common_passwords() -> frozenset[str]:
    text = resources.files("firewatch.auth").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and line[0] != "#"
    )


COMMON_PASSWORDS = _common_passwords()


def check_policy(
    password: str, *, username: str | None = None, field: str = "body.password"
) -> None:
    """Refuse weak passwords with a 422 that says why (never echoing the password)
    and names ``field``."""
    if len(password) < MIN_LENGTH:
        raise UnprocessableError(
            f"the password must be at least {MIN_LENGTH} characters long", field=field
        )
    if len(password) > MAX_LENGTH:
        raise UnprocessableError(
            f"the password must be at most {MAX_LENGTH} characters long", field=field
        )
    if "\x00" in password:
        raise UnprocessableError("the password must not contain NUL characters", field=field)
    folded = password.lower()
    if folded in COMMON_PASSWORDS or len(set(folded)) < 4:
        raise UnprocessableError("this password is too common; choose another", field=field)
    if username is not None and username.lower() in folded:
        raise UnprocessableError("the password must not contain the username", field=field)


def generate_password(username: str | None = None) -> str:
    """A random password for bootstrap, new users and resets: 24 URL-safe characters
    (144 bits) that pass :func:`check_policy` for ``username``.

    Drawn again when a draw breaks the policy: a short username is often in a random
    string (a one-character one in about half of all draws), and the generated
    password used to be refused by the very policy it is checked against, at random.
    """
    while True:
        password = secrets.token_urlsafe(18)
        try:
            check_policy(password, username=username)
        except UnprocessableError:
            continue
        return password


class Hasher:
    """argon2id with bounded concurrency; one per process."""

    def __init__(
        self, *, time_cost: int, memory_kib: int, parallelism: int, concurrency: int
    ) -> None:
        self._ph = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=argon2.Type.ID,
        )
        self._slots = asyncio.Semaphore(concurrency)
        self._max_waiting = concurrency * 8
        self._waiting = 0
        # Unknown users are verified against this, so a login costs the same whether
        # or not the account exists.
        self._dummy = self._ph.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        async with self._slot():
            return await asyncio.to_thread(self._ph.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True if ``password`` matches; ``None`` (unknown user) runs a dummy verify."""
        target = stored_hash if stored_hash is not None else self._dummy
        async with self._slot():
            ok = await asyncio.to_thread(self._verify_sync, target, password)
        return ok and stored_hash is not None

    def _verify_sync(self, stored_hash: str, password: str) -> bool:
        try:
            return self._ph.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        try:
            return self._ph.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True

    def _slot(self) -> _Slot:
        return _Slot(self)


class _Slot:
    def __init__(self, hasher: Hasher) -> None:
        self._h = hasher

    async def __aenter__(self) -> None:
        h = self._h
        if h._waiting >= h._max_waiting:
            raise UnavailableError(
                "too many password checks in progress; retry shortly", retry_after=2
            )
        h._waiting += 1
        try:
            await h._slots.acquire()
        finally:
            h._waiting -= 1

    async def __aexit__(self, *exc: object) -> None:
        self._h._slots.release()
