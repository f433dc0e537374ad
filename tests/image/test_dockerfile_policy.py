"""The Dockerfile keeps every rule of ADR-003 (parsed with dockerfile-parse).

No Docker engine here: the image is built in CI; these rules hold before it is.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from scripts.musl_check import BUILT_FROM_SOURCE

ROOT = Path(__file__).resolve().parents[2]
ADR = ROOT / "docs" / "adr" / "ADR-003-container-base-image.md"
BASE = re.compile(r"^python:3\.12-alpine@sha256:(?P<digest>[0-9a-f]{64})$")
SECRETISH = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|PRIVATE", re.IGNORECASE)


@dataclass(frozen=True)
class Instruction:
    name: str
    value: str


@dataclass(frozen=True)
class Stage:
    image: str
    alias: str | None
    instructions: list[Instruction]

    def values(self, name: str) -> list[str]:
        return [i.value for i in self.instructions if i.name == name]

    def run_words(self) -> list[str]:
        return [w for v in self.values("RUN") for w in shlex.split(v, posix=True)]


def _stages() -> list[Stage]:
    stages: list[Stage] = []
    for item in DockerfileParser(path=str(ROOT / "Dockerfile")).structure:
        name = item["instruction"]
        if name == "COMMENT":
            continue
        if name == "FROM":
            words = item["value"].split()
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], alias, []))
            continue
        assert stages, f"{name} before the first FROM"
        stages[-1].instructions.append(Instruction(name, item["value"]))
    return stages


STAGES = _stages()
BUILDER, RUNTIME = STAGES if len(STAGES) == 2 else (STAGES[0], STAGES[-1])


def _digest() -> str:
    match = BASE.match(RUNTIME.image)
    assert match, f"runtime base {RUNTIME.image!r} is not python:3.12-alpine@sha256:<digest>"
    return match["digest"]


def test_two_stages_builder_then_runtime() -> None:
    assert len(STAGES) == 2
    assert BUILDER.alias == "builder"
    assert RUNTIME.alias == "runtime"


def test_both_stages_use_the_same_tag_and_digest() -> None:
    for stage in STAGES:
        assert BASE.match(stage.image), stage.image
    assert BUILDER.image == RUNTIME.image


def test_the_digest_is_the_one_recorded_in_adr_003() -> None:
    assert _digest() in ADR.read_text(encoding="utf-8")


def test_the_base_digest_label_matches() -> None:
    labels = " ".join(RUNTIME.values("LABEL"))
    assert f'org.opencontainers.image.base.digest="sha256:{_digest()}"' in labels
    for key in ("title", "description", "licenses", "version", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_every_copy_chowns_to_appuser() -> None:
    copies = [v for stage in STAGES for v in stage.values("COPY")]
    assert copies
    for value in copies:
        assert "--chown=appuser:appgroup" in value.split(), value
    assert not [v for s in STAGES for v in s.values("ADD")], "use COPY, not ADD"


def test_runtime_user_is_appuser_1000_without_home_or_shell() -> None:
    words = RUNTIME.run_words()
    adduser = words[words.index("adduser") :]
    assert adduser[adduser.index("-u") + 1] == "1000"
    assert adduser[adduser.index("-G") + 1] == "appgroup"
    assert adduser[adduser.index("-s") + 1] == "/sbin/nologin"
    assert "-H" in adduser  # no home directory is created
    assert adduser[adduser.index("-h") + 1] == "/nonexistent"
    assert "appuser" in adduser[: adduser.index("&&") if "&&" in adduser else None]
    addgroup = words[words.index("addgroup") :]
    assert addgroup[:4] == ["addgroup", "-g", "1000", "appgroup"]


def test_user_is_set_non_root_before_cmd() -> None:
    names = [i.name for i in RUNTIME.instructions]
    assert names.count("CMD") == 1
    users = [i for i, name in enumerate(names) if name == "USER"]
    assert users, "runtime stage sets no USER"
    assert users[-1] < names.index("CMD")
    assert RUNTIME.values("USER")[-1] in {"1000:1000", "appuser:appgroup", "1000", "appuser"}


def test_cmd_is_exec_form() -> None:
    (cmd,) = RUNTIME.values("CMD")
    assert json.loads(cmd) == ["/opt/venv/bin/firewatch", "serve"]


def test_healthcheck_uses_the_venv_python_against_healthz() -> None:
    (check,) = RUNTIME.values("HEALTHCHECK")
    exec_form = json.loads(check[check.index("CMD") + 3 :])
    assert exec_form[0] == "/opt/venv/bin/python"
    assert "/healthz" in exec_form[-1]


def test_stopsignal_is_set() -> None:
    assert RUNTIME.values("STOPSIGNAL") == ["SIGTERM"]


def test_runtime_installs_nothing_and_carries_no_toolchain() -> None:
    text = " ".join(RUNTIME.values("RUN"))
    assert not re.search(r"\bapk\s+(add|upgrade|update|fix)\b", text)
    assert not re.search(r"\bpip3?(\.\d+)?\s+install\b", text)
    for tool in ("curl", "gcc", "g++", "build-base", "musl-dev", "make ", "-dev "):
        assert tool not in text, tool
    assert "/sbin/apk" in text  # the package manager binary is removed
    assert "pip uninstall" in text


def test_runtime_receives_only_the_built_venv() -> None:
    assert RUNTIME.values("COPY") == ["--from=builder --chown=appuser:appgroup /opt/venv /opt/venv"]


def test_builder_installs_from_the_locks_with_hashes() -> None:
    runs = BUILDER.values("RUN")
    pip = [r for r in runs if "pip install" in r or "pip wheel" in r]
    locked = [r for r in pip if "-r requirements" in r]
    assert len(locked) == 2
    for run in locked:
        assert "--require-hashes" in run.split()
        assert "--only-binary=:all:" in run.split()
    no_binary = {
        w.removeprefix("--no-binary=")
        for r in runs
        for w in r.split()
        if w.startswith("--no-binary=")
    }
    assert no_binary == set(BUILT_FROM_SOURCE)
    assert any("auditwheel repair" in r for r in runs)
    assert "PIP_NO_CACHE_DIR=1" in " ".join(BUILDER.values("ENV"))


def test_the_runtime_venv_has_no_pip() -> None:
    runs = " ".join(BUILDER.values("RUN"))
    assert "python3 -m venv --without-pip /opt/venv" in runs
    assert "pip --python /opt/venv/bin/python check" in runs


def test_writes_go_to_one_data_dir() -> None:
    env = " ".join(RUNTIME.values("ENV"))
    assert "FIREWATCH_DATA_DIR=/data" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert RUNTIME.values("WORKDIR") == ["/data"]
    assert json.loads(RUNTIME.values("VOLUME")[0]) == ["/data"]


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.alias or s.image)
def test_no_secrets_in_args_or_env(stage: Stage) -> None:
    for name in ("ARG", "ENV"):
        for value in stage.values(name):
            keys = re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", value) or [value.split()[0]]
            assert not [k for k in keys if SECRETISH.search(k)], value


def test_dockerignore_is_an_allow_list_covering_every_copy() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line.removeprefix("!").rstrip("/") for line in lines if line.startswith("!")}
    sources = {
        word
        for value in BUILDER.values("COPY")
        for word in value.split()[1:-1]
        if not word.startswith("--")
    }
    assert sources <= allowed, sources - allowed
    assert "**/__pycache__" in lines
