"""Invalid configuration stops start-up with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from firewatch.settings import SettingsError, load_settings


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
