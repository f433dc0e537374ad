"""The CLI: bootstrap admin, user create/disable/reset-password, token issue, keys rotate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from firewatch.auth import cli as auth_cli
from firewatch.cli import cli
from firewatch.runtime import migrations
from firewatch.settings import Settings
from tests import servers


@pytest.fixture
def cli_env(admin_database_url: str, redis_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    name, url = asyncio.run(servers.create_database(admin_database_url))
    try:
        asyncio.run(migrations.upgrade(url))
        yield {
            "FIREWATCH_DATABASE_URL": url,
            "FIREWATCH_REDIS_URL": redis_url,
            "FIREWATCH_DATA_DIR": str(tmp_path / "data"),
            "FIREWATCH_PASSWORD_HASH_TIME_COST": "1",
            "FIREWATCH_PASSWORD_HASH_MEMORY_KIB": "8192",
            "FIREWATCH_PASSWORD_HASH_PARALLELISM": "1",
        }
    finally:
        asyncio.run(servers.drop_database(admin_database_url, name))


def _invoke(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def _shown_password(out: str) -> str:
    (line,) = [x for x in out.splitlines() if x.startswith("password (shown once): ")]
    return line.split(": ", 1)[1]


def test_bootstrap_creates_one_admin_once(cli_env: dict[str, str]) -> None:
    settings = Settings(
        database_url=SecretStr(cli_env["FIREWATCH_DATABASE_URL"]),
        password_hash_time_cost=1,
        password_hash_memory_kib=8192,
        password_hash_parallelism=1,
    )
    first = asyncio.run(auth_cli.bootstrap(settings))
    assert first is not None
    username, password = first
    assert username == "admin"
    assert password is not None
    assert len(password) >= 20
    assert asyncio.run(auth_cli.bootstrap(settings)) is None  # never a second time


def test_user_lifecycle_and_token_issue(cli_env: dict[str, str]) -> None:
    code, out, err = _invoke(cli_env, "user", "create", "alice", "--role", "responder")
    assert code == 0, err
    password = _shown_password(out)
    assert len(password) >= 20

    code, out, err = _invoke(cli_env, "token", "issue", "--user", "alice")
    assert code == 0, err
    token = out.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["role"]) == ("alice", "responder")

    code, out, err = _invoke(cli_env, "user", "reset-password", "alice")
    assert code == 0, err
    assert _shown_password(out) != password

    code, _out, err = _invoke(cli_env, "user", "disable", "alice")
    assert code == 0, err
    code, _out, err = _invoke(cli_env, "token", "issue", "--user", "alice")
    assert code == 1
    assert "no enabled user" in err

    result = CliRunner().invoke(
        cli, ["user", "create", "bob", "--password-stdin"], env=cli_env, input="too-short\n"
    )
    assert result.exit_code == 1
    assert "at least 12 characters" in result.stderr
    assert "too-short" not in result.stderr


def test_keys_rotate_and_list(cli_env: dict[str, str]) -> None:
    code, out, err = _invoke(cli_env, "keys", "list")
    assert code == 0, err
    (first_kid,) = [line.split("\t")[0] for line in out.splitlines() if "(signing)" in line]
    code, out, err = _invoke(cli_env, "keys", "rotate")
    assert code == 0, err
    assert "new signing key" in out
    code, out, _err = _invoke(cli_env, "keys", "list")
    kids = [line.split("\t")[0] for line in out.splitlines()]
    assert first_kid in kids
    assert len(kids) == 2
    code, out, err = _invoke(cli_env, "audit", "verify")
    assert code == 0, err
    assert "audit chain OK" in out


def test_the_last_admin_cannot_be_demoted_or_disabled(cli_env: dict[str, str]) -> None:
    code, _out, err = _invoke(cli_env, "user", "create", "solo", "--role", "admin")
    assert code == 0, err
    for args in (("user", "set-role", "solo", "viewer"), ("user", "disable", "solo")):
        code, _out, err = _invoke(cli_env, *args)
        assert code == 1
        assert "last enabled admin" in err
    code, _out, err = _invoke(cli_env, "user", "create", "duo", "--role", "admin")
    assert code == 0, err
    code, _out, err = _invoke(cli_env, "user", "set-role", "solo", "viewer")
    assert code == 0, err
