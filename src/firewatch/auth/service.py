"""Identity use cases: login, refresh, logout, users, API keys, bootstrap.

Each use case is one transaction, and its audit entry is written in that same
transaction (``audit.record``). Failures that must not reveal anything (unknown
user, wrong password, disabled account) share one answer and one code path.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from firewatch.audit import service as audit
from firewatch.auth import apikeys, store
from firewatch.auth.passwords import Hasher, check_policy, generate_password
from firewatch.auth.principal import SYSTEM, Principal
from firewatch.auth.rbac import INTEGRATION_SCOPES, Role
from firewatch.auth.runtime import AuthState
from firewatch.auth.tokens import MAX_ACCESS_TOKEN_TTL, TokenService
from firewatch.errors import (
    ConflictError,
    NotFoundError,
    RateLimitedError,
    UnauthorizedError,
    UnprocessableError,
)
from firewatch.runtime.database import PgPool

log = structlog.get_logger(__name__)

REFRESH_PREFIX = "fwr_"
BEARER = "Bearer"  # the OAuth 2.0 token_type of our access tokens
BOOTSTRAP_LOCK_KEY = 0x66772D626F6F74  # "fw-boot"
LOGIN_FAILED = "invalid username or password"


@dataclass(frozen=True, slots=True)
class Session:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int

    def as_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": BEARER,
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "refresh_expires_in": self.refresh_expires_in,
        }


def _now() -> datetime:
    return datetime.now(UTC)


def _refresh_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _user_target(username: str) -> str:
    return f"user:{username}"


def user_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "username": row["username"],
        "role": row["role"],
        "disabled": row["disabled"],
        "locked_until": row["locked_until"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "password_changed_at": row["password_changed_at"],
        "last_login_at": row["last_login_at"],
    }


def _snapshot(row: asyncpg.Record) -> dict[str, Any]:
    """What audit digests of a user cover (never the password hash)."""
    return {"username": row["username"], "role": row["role"], "disabled": row["disabled"]}


async def _new_session(
    conn: Any, auth: AuthState, user: asyncpg.Record, family: uuid.UUID
) -> Session:
    refresh = REFRESH_PREFIX + secrets.token_urlsafe(32)
    ttl = auth.settings.refresh_token_ttl
    await store.insert_refresh(
        conn, _refresh_hash(refresh), family, user["id"], _now() + timedelta(seconds=ttl)
    )
    issued = auth.tokens.issue(
        user["username"], user["role"], version=user["token_version"], sid=str(family)
    )
    return Session(issued.token, auth.tokens.ttl, refresh, ttl)


# --- login / refresh / logout ---------------------------------------------------------


async def login(
    pool: PgPool, auth: AuthState, username: str, password: str, client: str | None
) -> Session:
    name = username.strip().lower()
    wait = await auth.throttle.attempt(name, client)
    if wait is not None:
        raise RateLimitedError(
            "too many login attempts for this account or client; retry later", retry_after=wait
        )
    async with pool.acquire() as conn:
        user = await store.get_user(conn, name)
    if user is not None and user["locked_until"] is not None and user["locked_until"] > _now():
        wait = int((user["locked_until"] - _now()).total_seconds()) + 1
        raise RateLimitedError(
            "too many login attempts for this account or client; retry later", retry_after=wait
        )
    ok = await auth.hasher.verify(user["password_hash"] if user else None, password)
    actor = Principal(subject=name if user else "unknown", kind="user", role="", client=client)
    if not ok or user is None or user["disabled"]:
        lockout = await auth.throttle.failed(name)
        async with pool.acquire() as conn, conn.transaction():
            reason = "unknown user" if user is None else "disabled" if ok else "bad password"
            target = _user_target(name) if user is not None else None
            if user is not None:
                until = _now() + timedelta(seconds=lockout.seconds) if lockout else None
                await store.record_login_failure(conn, user["id"], until)
            await audit.record(
                conn,
                actor,
                "auth.login",
                target=target,
                outcome="denied",
                details={"reason": reason},
            )
            if lockout is not None:
                await audit.record(
                    conn,
                    actor,
                    "auth.lockout",
                    target=target,
                    outcome="locked",
                    details={"seconds": lockout.seconds, "level": lockout.level},
                )
        raise UnauthorizedError(LOGIN_FAILED)
    await auth.throttle.succeeded(name)
    new_hash = None
    if auth.hasher.needs_rehash(user["password_hash"]):
        new_hash = await auth.hasher.hash(password)
    async with pool.acquire() as conn, conn.transaction():
        if new_hash is not None:
            await store.rehash_password(conn, user["id"], new_hash)
        await store.record_login_ok(conn, user["id"])
        session = await _new_session(conn, auth, user, uuid.uuid4())
        await audit.record(conn, actor, "auth.login", target=_user_target(name))
    return session


async def refresh(pool: PgPool, auth: AuthState, token: str, client: str | None) -> Session:
    """Rotate a refresh token; reusing a rotated one revokes its whole family."""
    invalid = UnauthorizedError("the refresh token is invalid or expired")
    if not token.startswith(REFRESH_PREFIX) or len(token) > 200:
        raise invalid
    async with pool.acquire() as conn, conn.transaction():
        row = await store.get_refresh_for_update(conn, _refresh_hash(token))
        if row is None or row["revoked_at"] is not None:
            raise invalid
        actor = Principal(subject=row["username"], kind="user", role=row["role"], client=client)
        if row["rotated_at"] is not None:
            # Someone presents a token that was already exchanged: it was stolen (or
            # the client misbehaves). End the whole login on every device.
            revoked = await store.revoke_family(conn, row["family"])
            await audit.record(
                conn,
                actor,
                "auth.refresh_reuse",
                target=_user_target(row["username"]),
                outcome="revoked",
                details={"family": str(row["family"]), "revoked": revoked},
            )
            reuse = True
        else:
            reuse = False
            if row["expires_at"] <= _now() or row["disabled"]:
                raise invalid
            await store.mark_rotated(conn, row["id"])
            user = await store.get_user_by_id(conn, row["user_id"])
            assert user is not None
            session = await _new_session(conn, auth, user, row["family"])
            await audit.record(conn, actor, "auth.refresh", target=_user_target(row["username"]))
    if reuse:
        # After the commit, so the revocation in PostgreSQL sticks even when Redis
        # is down; the login's access tokens are then refused via their sid.
        try:
            await auth.revocations.deny_session(str(row["family"]))
        except Exception as exc:  # Redis down: refresh is revoked; access expires soon
            log.warning("could not denylist a reused session", error_type=type(exc).__name__)
        raise invalid
    return session


async def logout(
    pool: PgPool, auth: AuthState, principal: Principal, refresh_token: str | None
) -> None:
    """End the login: denylist this access token and revoke its refresh family."""
    if principal.kind != "user" or principal.token_id is None or principal.expires_at is None:
        raise UnprocessableError(
            "only a user's access token can log out", field="header.authorization"
        )
    await auth.revocations.deny_token(principal.token_id, principal.expires_at)
    async with pool.acquire() as conn, conn.transaction():
        if principal.session_id is not None:
            await auth.revocations.deny_session(principal.session_id)
            await store.revoke_family(conn, uuid.UUID(principal.session_id))
        if refresh_token is not None and refresh_token.startswith(REFRESH_PREFIX):
            row = await store.get_refresh_for_update(conn, _refresh_hash(refresh_token))
            if row is not None and row["username"] == principal.subject:
                await store.revoke_family(conn, row["family"])
        await audit.record(conn, principal, "auth.logout", target=_user_target(principal.subject))


# --- users ------------------------------------------------------------------------------


def _check_username(username: str) -> str:
    import re

    name = username.strip().lower()
    if not re.fullmatch(r"[a-z0-9][a-z0-9._@-]{0,63}", name):
        raise UnprocessableError(
            "a username is 1-64 characters: lower-case letters, digits, '.', '_', '@', '-'",
            field="body.username",
        )
    return name


async def create_user(
    pool: PgPool, hasher: Hasher, actor: Principal, username: str, role: Role, password: str
) -> asyncpg.Record:
    name = _check_username(username)
    check_policy(password, username=name)
    hashed = await hasher.hash(password)
    async with pool.acquire() as conn, conn.transaction():
        row = await store.create_user(conn, name, role.value, hashed)
        if row is None:
            raise ConflictError(f"a user named {name!r} already exists")
        await audit.record(
            conn, actor, "user.create", target=_user_target(name), after=_snapshot(row)
        )
    return row


async def list_users(pool: PgPool, *, after_id: int, limit: int) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await store.list_users(conn, after_id=after_id, limit=limit)


async def get_user(pool: PgPool, username: str) -> asyncpg.Record:
    async with pool.acquire() as conn:
        row = await store.get_user(conn, username.strip().lower())
    if row is None:
        raise NotFoundError(f"no user named {username!r}")
    return row


async def update_user(
    pool: PgPool,
    auth: AuthState,
    actor: Principal,
    username: str,
    *,
    role: Role | None = None,
    disabled: bool | None = None,
) -> asyncpg.Record:
    """Change role and/or disable; the user's existing tokens stop working at once."""
    name = username.strip().lower()
    async with pool.acquire() as conn, conn.transaction():
        row = await store.get_user(conn, name, for_update=True)
        if row is None:
            raise NotFoundError(f"no user named {username!r}")
        before = _snapshot(row)
        demoted = role is not None and role is not Role.ADMIN
        if row["role"] == Role.ADMIN.value and not row["disabled"] and (demoted or disabled):
            # Serialise concurrent demotions, then make sure one enabled admin remains.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", BOOTSTRAP_LOCK_KEY)
            if await store.other_enabled_admins(conn, row["id"]) == 0:
                raise ConflictError("this is the last enabled admin: make another admin first")
        updated = row
        if role is not None and role.value != row["role"]:
            updated = await store.set_role(conn, row["id"], role.value)
            await audit.record(
                conn,
                actor,
                "user.role_change",
                target=_user_target(name),
                before=before,
                after=_snapshot(updated),
                details={"from": row["role"], "to": role.value},
            )
        if disabled is not None and disabled != row["disabled"]:
            updated = await store.set_disabled(conn, row["id"], disabled)
            await store.revoke_user_tokens(conn, row["id"])
            await audit.record(
                conn,
                actor,
                "user.disable" if disabled else "user.enable",
                target=_user_target(name),
                before=before,
                after=_snapshot(updated),
            )
        if updated is not row:
            # Inside the transaction: if Redis is down the change rolls back (503).
            await auth.revocations.cut_user(name, updated["token_version"])
            await auth.throttle.unlock(name)
    return updated


async def reset_password(
    pool: PgPool,
    auth: AuthState,
    actor: Principal,
    username: str,
    new_password: str | None = None,
) -> tuple[asyncpg.Record, str]:
    """Set a new password (random if not given); ends every session of the user."""
    name = username.strip().lower()
    password = new_password if new_password is not None else generate_password(name)
    check_policy(password, username=name)
    hashed = await auth.hasher.hash(password)
    async with pool.acquire() as conn, conn.transaction():
        row = await store.get_user(conn, name, for_update=True)
        if row is None:
            raise NotFoundError(f"no user named {username!r}")
        updated = await store.set_password(conn, row["id"], hashed)
        await store.revoke_user_tokens(conn, row["id"])
        await audit.record(conn, actor, "user.password_reset", target=_user_target(name))
        await auth.revocations.cut_user(name, updated["token_version"])
        await auth.throttle.unlock(name)
    return updated, password


async def bootstrap_admin(
    pool: PgPool, hasher: Hasher, username: str, password: str | None
) -> tuple[str, str | None] | None:
    """Create the first admin if there is no user at all; None if users exist.

    Returns (username, generated password or None when ``password`` was given).
    """
    async with pool.acquire() as conn:
        if await store.count_users(conn) > 0:
            return None
    generated = password is None
    secret = generate_password(username) if password is None else password
    check_policy(secret, username=username)
    hashed = await hasher.hash(secret)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", BOOTSTRAP_LOCK_KEY)
        row = await store.create_first_user(conn, username, Role.ADMIN.value, hashed)
        if row is None:
            return None
        await audit.record(
            conn, SYSTEM, "user.bootstrap", target=_user_target(username), after=_snapshot(row)
        )
    return username, secret if generated else None


async def issue_token(
    pool: PgPool, tokens: TokenService, username: str, *, ttl: int | None = None
) -> str:
    """An access token for an existing, enabled user (CLI ``token issue``, benchmarks).

    ``ttl`` may not exceed :data:`MAX_ACCESS_TOKEN_TTL`: revocations (disable, role
    change, password reset) are remembered in Redis only that long.
    """
    if ttl is not None and not 0 < ttl <= MAX_ACCESS_TOKEN_TTL:
        raise UnprocessableError(f"--ttl must be 1 to {MAX_ACCESS_TOKEN_TTL} seconds", field="ttl")
    async with pool.acquire() as conn:
        user = await store.get_user(conn, username.strip().lower())
    if user is None or user["disabled"]:
        raise NotFoundError(f"no enabled user named {username!r}")
    return tokens.issue(
        user["username"], user["role"], version=user["token_version"], sid=None, ttl=ttl
    ).token


# --- API keys -----------------------------------------------------------------------------


async def create_api_key(
    pool: PgPool, actor: Principal, name: str, scopes: list[str]
) -> tuple[asyncpg.Record, str]:
    """A new integration key; the full key is returned once and never stored."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise UnprocessableError(
            "a key name is 1-64 characters: letters, digits, '.', '_', '-'", field="body.name"
        )
    wanted = sorted(set(scopes))
    allowed = {p.value for p in INTEGRATION_SCOPES}
    if not wanted or not set(wanted) <= allowed:
        raise UnprocessableError(
            f"scopes must be a non-empty subset of {', '.join(sorted(allowed))}",
            field="body.scopes",
        )
    key_id, key, secret_hash = apikeys.new_key()
    async with pool.acquire() as conn, conn.transaction():
        row = await store.create_api_key(conn, key_id, name, wanted, secret_hash, actor.subject)
        if row is None:
            raise ConflictError(f"an active API key named {name!r} already exists")
        await audit.record(
            conn,
            actor,
            "apikey.create",
            target=f"apikey:{key_id}",
            details={"name": name, "scopes": wanted},
        )
    return row, key


async def revoke_api_key(pool: PgPool, actor: Principal, key_id: str) -> asyncpg.Record:
    async with pool.acquire() as conn, conn.transaction():
        row = await store.revoke_api_key(conn, key_id)
        if row is None:
            raise NotFoundError(f"no active API key {key_id!r}")
        await audit.record(
            conn, actor, "apikey.revoke", target=f"apikey:{key_id}", details={"name": row["name"]}
        )
    return row


async def list_api_keys(pool: PgPool) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await store.list_api_keys(conn)
