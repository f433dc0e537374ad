"""Invalid configuration stops start-up with a message naming the variable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from firewatch.settings import ENV_PREFIX, Settings, SettingsError, load_settings


def test_invalid_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREWATCH_PORT", "eighty")
    monkeypatch.setenv("FIREWATCH_LOG_LEVEL", "loud")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "FIREWATCH_PORT" in message
    assert "FIREWATCH_LOG_LEVEL" in message


def test_secret_urls_are_not_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREWATCH_DATABASE_URL", "postgresql://u:hunter2-secret@db/x")
    settings = load_settings()
    assert "hunter2-secret" not in repr(settings)
    assert "hunter2-secret" not in str(settings.model_dump())


def _serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FIREWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "firewatch", "serve"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_exits_2_naming_the_variable() -> None:
    result = _serve({"FIREWATCH_WORKERS": "zero"})
    assert result.returncode == 2
    assert "FIREWATCH_WORKERS" in result.stderr
    assert "Traceback" not in result.stderr


def _readme_settings() -> dict[str, str | None]:
    """``FIREWATCH_*`` rows of the README's configuration tables: name → the default
    shown as a literal (one backticked value per name), or None when the default is
    described (``unset → embedded``) or a path under the data dir."""
    readme = Path(__file__).resolve().parents[2] / "README.md"
    table: dict[str, str | None] = {}
    for line in readme.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `FIREWATCH_"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        names = re.findall(r"`(FIREWATCH_[A-Z0-9_]+)`", cells[0])
        literals = re.findall(r"`([^`]*)`", cells[1])
        for i, name in enumerate(names):
            literal = literals[i] if len(literals) == len(names) else None
            table[name] = None if literal is None or literal.startswith("$") else literal
    return table


def _field_env_names() -> set[str]:
    return {ENV_PREFIX + name.upper() for name in Settings.model_fields}


def test_readme_configuration_table_lists_exactly_the_settings() -> None:
    """A setting missing from the README is one an operator cannot find; a README row
    with no setting behind it is a knob that does nothing."""
    documented = set(_readme_settings())
    assert documented, "no FIREWATCH_* rows found in the README's configuration table"
    assert sorted(_field_env_names() - documented) == [], "settings missing from README"
    assert sorted(documented - _field_env_names()) == [], "README rows with no setting"


def test_readme_defaults_are_the_real_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each default the README shows as a literal, given explicitly, loads to the
    same value as leaving the variable unset."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.chdir(Path(__file__).resolve().parent)  # no stray .env file
    defaults = load_settings().model_dump()
    literals = {name: value for name, value in _readme_settings().items() if value is not None}
    assert len(literals) > 40
    for name, value in literals.items():
        monkeypatch.setenv(name, value)
    explicit = load_settings().model_dump()
    differing = {
        name: (value, defaults[name.removeprefix(ENV_PREFIX).lower()])
        for name, value in literals.items()
        if explicit[name.removeprefix(ENV_PREFIX).lower()]
        != defaults[name.removeprefix(ENV_PREFIX).lower()]
    }
    assert differing == {}, "README default differs from the code (README, code)"


def test_unparseable_json_exits_2_without_echoing_the_value() -> None:
    """Malformed JSON used to end start-up with a traceback (exit 1) instead of the
    documented exit 2 naming the variable; the value, a secret here, is never shown."""
    result = _serve({"FIREWATCH_WEBHOOK_SECRETS": '{"ci": "whsec-do-not-print-me", }'})
    assert result.returncode == 2, result.stderr
    assert "FIREWATCH_WEBHOOK_SECRETS" in result.stderr
    assert "Traceback" not in result.stderr
    assert "do-not-print-me" not in result.stderr + result.stdout
