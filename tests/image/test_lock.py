"""requirements.lock stays in step with pyproject.toml (checked offline by `make test`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import lockfile

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def copies(tmp_path: Path) -> tuple[Path, Path]:
    pyproject = tmp_path / "pyproject.toml"
    lock = tmp_path / "requirements.lock"
    shutil.copy(ROOT / "pyproject.toml", pyproject)
    shutil.copy(ROOT / "requirements.lock", lock)
    return pyproject, lock


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_the_committed_lock_matches_pyproject() -> None:
    lockfile.check(ROOT / "pyproject.toml", ROOT / "requirements.lock")


def test_every_locked_package_is_pinned_with_hashes() -> None:
    pins = lockfile.parse_lock((ROOT / "requirements.lock").read_text())
    assert "fastapi" in pins
    assert all(p.hashes for group in pins.values() for p in group)


def test_a_new_runtime_dependency_without_make_lock_fails(copies: tuple[Path, Path]) -> None:
    pyproject, lock = copies
    _edit(pyproject, "dependencies = [\n", 'dependencies = [\n  "humanize>=4",\n')
    with pytest.raises(lockfile.LockError) as info:
        lockfile.check(pyproject, lock)
    assert "make lock" in str(info.value)
    assert "humanize is not in requirements.lock" in str(info.value)


def test_a_changed_specifier_or_extra_is_drift(copies: tuple[Path, Path]) -> None:
    pyproject, lock = copies
    _edit(pyproject, '"redis[hiredis]>=5.2"', '"redis>=5.2"')
    with pytest.raises(lockfile.LockError, match=r"changed since requirements\.lock"):
        lockfile.check(pyproject, lock)


def test_order_spacing_and_name_spelling_are_not_drift(copies: tuple[Path, Path]) -> None:
    pyproject, lock = copies
    _edit(pyproject, '  "fastapi>=0.165",\n', "")
    _edit(pyproject, '  "rich>=13.9",\n', '  "rich>=13.9",\n  "FastAPI >= 0.165",\n')
    lockfile.check(pyproject, lock)


def test_a_hand_edited_pin_outside_the_specifier_fails(copies: tuple[Path, Path]) -> None:
    pyproject, lock = copies
    pin = lockfile.parse_lock(lock.read_text())["asyncpg"][0]
    _edit(lock, f"asyncpg=={pin.version}", "asyncpg==0.29.0")
    with pytest.raises(lockfile.LockError, match=r"asyncpg==0.29.0 does not satisfy"):
        lockfile.check(pyproject, lock)


def test_stamp_records_the_digest_once(copies: tuple[Path, Path]) -> None:
    pyproject, lock = copies
    _edit(pyproject, "dependencies = [\n", 'dependencies = [\n  "humanize>=4",\n')
    lockfile.stamp(pyproject, lock)
    lockfile.stamp(pyproject, lock)
    text = lock.read_text()
    assert text.count(lockfile.DIGEST_PREFIX) == 1
    assert lockfile.recorded_digest(text) == lockfile.inputs_digest(pyproject)


def test_the_command_tells_the_developer_to_run_make_lock(copies: tuple[Path, Path]) -> None:
    pyproject, lock = copies
    _edit(pyproject, "dependencies = [\n", 'dependencies = [\n  "humanize>=4",\n')
    command = [sys.executable, "-m", "scripts.lockfile", "check"]
    result = subprocess.run(
        [*command, "--pyproject", str(pyproject), "--lock", str(lock)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "run `make lock`" in result.stderr


def test_image_pins_resolve_the_universal_lock_for_the_image() -> None:
    text = lockfile.image_pins(ROOT / "requirements.lock")
    names = [line.split("==")[0] for line in text.splitlines()]
    assert len(names) == len(set(names)), "one pin per package"
    assert "colorama" not in names  # sys_platform == 'win32'
    numpy = next(line for line in text.splitlines() if line.startswith("numpy=="))
    runtime = lockfile.parse_lock((ROOT / "requirements.lock").read_text())["numpy"]
    # Where the lock forks numpy by Python version, the image (3.12) takes the newer one.
    assert numpy.startswith(f"numpy=={max(p.version for p in runtime)} --hash=sha256:")
