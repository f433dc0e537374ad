"""CLI commands for identity and audit: ``firewatch user|apikey|keys|token|audit ...``.

They talk to the same PostgreSQL and Redis as the server (embedded ones included)
and write the same audit entries, with the acting principal ``cli:<os user>``.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, TypeVar

import typer

from firewatch.audit import service as audit_service
from firewatch.auth import keys, service
from firewatch.auth.principal import Principal
from firewatch.auth.rbac import Role
from firewatch.auth.runtime import AuthState, keyring_path, make_hasher, make_tokens, open_keystore
from firewatch.errors import FirewatchError
from firewatch.runtime.database import PgPool, create_pool
from firewatch.runtime.redis import create_redis
from firewatch.settings import Settings

T = TypeVar("T")

user_app = typer.Typer(no_args_is_help=True, help="Manage users")
apikey_app = typer.Typer(no_args_is_help=True, help="Manage integration API keys")
keys_app = typer.Typer(no_args_is_help=True, help="Manage the JWT signing keys")
token_app = typer.Typer(no_args_is_help=True, help="Mint access tokens (benchmarks, scripts)")
audit_app = typer.Typer(no_args_is_help=True, help="Inspect the audit log")


def _operator() -> Principal:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Principal(subject=f"cli:{who}", kind="system", role="admin")


@dataclass
class _Env:
    settings: Settings
    pool: PgPool
    auth: AuthState


@asynccontextmanager
async def _env(settings: Settings) -> AsyncIterator[_Env]:
    assert settings.database_url is not None
    assert settings.redis_url is not None
    pool = await create_pool(settings.database_url.get_secret_value(), min_size=1, max_size=2)
    redis = create_redis(settings.redis_url.get_secret_value())
    try:
        yield _Env(settings, pool, AuthState.build(settings, redis))
    finally:
        await redis.aclose()
        await pool.close()


def _run(fn: Callable[[_Env], Awaitable[T]]) -> T:
    """Resolve servers (embedded if unset), migrate, run ``fn``; errors exit 1."""
    from firewatch.cli import _settings, resolved_servers
    from firewatch.runtime import migrations

    with resolved_servers(_settings()) as resolved:
        assert resolved.database_url is not None
        database_url = resolved.database_url.get_secret_value()

        async def main() -> T:
            await migrations.upgrade(database_url)
            async with _env(resolved) as env:
                return await fn(env)

        try:
            return asyncio.run(main())
        except FirewatchError as exc:
            typer.echo(f"firewatch: {exc.detail}", err=True)
            raise typer.Exit(1) from None


def _read_password(from_stdin: bool) -> str | None:
    if not from_stdin:
        return None
    return sys.stdin.readline().rstrip("\n")


# --- users -------------------------------------------------------------------------


@user_app.command("create")
def user_create(
    username: str,
    role: Annotated[Role, typer.Option(help="admin, responder or viewer")] = Role.VIEWER,
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from stdin instead of generating one")
    ] = False,
) -> None:
    """Create a user; without --password-stdin a random password is printed once."""
    given = _read_password(password_stdin)

    async def go(env: _Env) -> str:
        from firewatch.auth.passwords import generate_password

        password = given if given is not None else generate_password(username.strip().lower())
        await service.create_user(env.pool, env.auth.hasher, _operator(), username, role, password)
        return password

    password = _run(go)
    typer.echo(f"created {role.value} {username!r}")
    if given is None:
        typer.echo(f"password (shown once): {password}")


@user_app.command("disable")
def user_disable(username: str) -> None:
    """Disable a user: no login, and existing tokens stop working at once."""
    _run(lambda env: service.update_user(env.pool, env.auth, _operator(), username, disabled=True))
    typer.echo(f"disabled {username!r}")


@user_app.command("enable")
def user_enable(username: str) -> None:
    _run(lambda env: service.update_user(env.pool, env.auth, _operator(), username, disabled=False))
    typer.echo(f"enabled {username!r}")


@user_app.command("set-role")
def user_set_role(username: str, role: Role) -> None:
    _run(lambda env: service.update_user(env.pool, env.auth, _operator(), username, role=role))
    typer.echo(f"{username!r} is now {role.value}")


@user_app.command("reset-password")
def user_reset_password(
    username: str,
    password_stdin: Annotated[bool, typer.Option(help="Read the new password from stdin")] = False,
) -> None:
    """Set a new password (random unless --password-stdin) and end the user's sessions."""
    given = _read_password(password_stdin)

    async def go(env: _Env) -> str:
        _row, password = await service.reset_password(
            env.pool, env.auth, _operator(), username, given
        )
        return password

    password = _run(go)
    typer.echo(f"password of {username!r} reset; sessions ended")
    if given is None:
        typer.echo(f"password (shown once): {password}")


@user_app.command("list")
def user_list() -> None:
    rows = _run(lambda env: service.list_users(env.pool, after_id=0, limit=10_000))
    for r in rows:
        state = "disabled" if r["disabled"] else "active"
        typer.echo(f"{r['username']}\t{r['role']}\t{state}")


# --- API keys ------------------------------------------------------------------------


@apikey_app.command("create")
def apikey_create(
    name: str,
    scope: Annotated[list[str], typer.Option(help="alerts:write and/or signals:write")],
) -> None:
    """Create an integration key; the key is printed once."""
    _row, key = _run(lambda env: service.create_api_key(env.pool, _operator(), name, scope))
    typer.echo(key)


@apikey_app.command("revoke")
def apikey_revoke(key_id: str) -> None:
    _run(lambda env: service.revoke_api_key(env.pool, _operator(), key_id))
    typer.echo(f"revoked {key_id}")


# --- signing keys ------------------------------------------------------------------------


@keys_app.command("rotate")
def keys_rotate(
    retire_now: Annotated[
        bool,
        typer.Option(help="Drop every older key at once (suspected compromise): logs all out"),
    ] = False,
) -> None:
    """Add a new signing key; older keys verify until their tokens have expired."""
    from firewatch.cli import _settings

    settings = _settings()
    if settings.jwt_keys_file is not None:
        typer.echo(
            "firewatch: the keyring is a mounted secret (FIREWATCH_JWT_KEYS_FILE); rotate it "
            "where it is managed (see README, key rotation)",
            err=True,
        )
        raise typer.Exit(2)
    path = keyring_path(settings)
    fresh, dropped = keys.rotate(
        path,
        settings.jwt_algorithm.value,
        access_ttl=settings.access_token_ttl,
        leeway=settings.token_leeway,
        retire_now=retire_now,
    )

    async def record(env: _Env) -> None:
        async with env.pool.acquire() as conn, conn.transaction():
            await audit_service.record(
                conn,
                _operator(),
                "keys.rotate",
                target=f"jwk:{fresh.kid}",
                details={"alg": fresh.alg, "dropped": dropped, "retire_now": retire_now},
            )

    _run(record)
    typer.echo(f"new signing key {fresh.kid} ({fresh.alg}); dropped: {', '.join(dropped) or '-'}")


@keys_app.command("list")
def keys_list() -> None:
    from firewatch.cli import _settings

    store = open_keystore(_settings())
    for jwk in store.jwks()["keys"]:
        active = " (signing)" if jwk["kid"] == store.signing_key.kid else ""
        typer.echo(f"{jwk['kid']}\t{jwk['alg']}{active}")


# --- tokens ----------------------------------------------------------------------------


@token_app.command("issue")
def token_issue(
    user: Annotated[str, typer.Option(help="An existing, enabled user")],
    ttl: Annotated[
        int | None, typer.Option(help="Lifetime in seconds (1-3600; default: the access TTL)")
    ] = None,
) -> None:
    """Print an access token for USER (for benchmarks and scripts; audited)."""

    async def go(env: _Env) -> str:
        tokens = make_tokens(env.settings, open_keystore(env.settings))
        token = await service.issue_token(env.pool, tokens, user, ttl=ttl)
        async with env.pool.acquire() as conn, conn.transaction():
            await audit_service.record(conn, _operator(), "token.issue", target=f"user:{user}")
        return token

    typer.echo(_run(go))


# --- audit -----------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify() -> None:
    """Seal pending entries, walk the hash chain, name the first broken link (exit 1)."""

    async def go(env: _Env) -> audit_service.VerifyResult:
        await audit_service.seal_pending(env.pool, wait=True)
        return await audit_service.verify(env.pool)

    result = _run(go)
    if result.broken is not None:
        typer.echo(f"audit chain BROKEN: {result.broken}", err=True)
        raise typer.Exit(1)
    if result.unsealed:
        ids = ", ".join(str(i) for i in result.unsealed)
        typer.echo(f"audit chain BROKEN: entries without a seal: {ids}", err=True)
        raise typer.Exit(1)
    typer.echo(
        f"audit chain OK: {result.checked} entries, head {result.head_seq} {result.head_hash}"
    )


def register(cli: typer.Typer) -> None:
    cli.add_typer(user_app, name="user")
    cli.add_typer(apikey_app, name="apikey")
    cli.add_typer(keys_app, name="keys")
    cli.add_typer(token_app, name="token")
    cli.add_typer(audit_app, name="audit")


async def bootstrap(settings: Settings) -> tuple[str, str | None] | None:
    """First start: create the admin (random password unless configured)."""
    password: str | None = None
    if settings.admin_password is not None:
        password = settings.admin_password.get_secret_value()
    elif settings.admin_password_file is not None:
        password = settings.admin_password_file.read_text("utf-8").rstrip("\r\n")
    assert settings.database_url is not None
    pool = await create_pool(settings.database_url.get_secret_value(), min_size=1, max_size=2)
    try:
        return await service.bootstrap_admin(
            pool, make_hasher(settings), settings.admin_username, password
        )
    finally:
        await pool.close()
