"""Keeps requirements.lock (the image's hashed runtime requirements) in step with pyproject.

``make lock`` compiles the lock with uv, then runs ``stamp``, which records a digest of
the runtime inputs (``requires-python`` and ``[project.dependencies]``, normalised) in
the lock's header. ``check`` (run by ``make test``) recomputes the digest offline and
fails, telling the developer to run ``make lock``, when pyproject changed without it; it
also fails when a direct dependency is missing from the lock, pinned to a version its
specifier rejects, or pinned without hashes (the image installs with --require-hashes).

Usage: python -m scripts.lockfile {stamp|check} [--pyproject PATH] [--lock PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
DIGEST_PREFIX = "# runtime-dependencies-sha256: "
FIX = "run `make lock` and commit requirements.lock"

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")


class LockError(Exception):
    """The lock does not match pyproject.toml; the message says what and how to fix it."""


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    hashes: tuple[str, ...]


def runtime_requirements(pyproject: Path) -> tuple[str, list[Requirement]]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return project.get("requires-python", ""), [
        Requirement(r) for r in project.get("dependencies", [])
    ]


def inputs_digest(pyproject: Path) -> str:
    """SHA-256 of the runtime inputs, insensitive to order, spacing and name spelling."""
    requires_python, requirements = runtime_requirements(pyproject)
    canonical = sorted(
        json.dumps(
            [
                canonicalize_name(r.name),
                sorted(canonicalize_name(e) for e in r.extras),
                str(r.specifier),
                str(r.marker or ""),
                r.url or "",
            ]
        )
        for r in requirements
    )
    payload = json.dumps({"requires-python": requires_python, "dependencies": canonical})
    return hashlib.sha256(payload.encode()).hexdigest()


def parse_lock(text: str) -> dict[str, list[Pin]]:
    """Pins by canonical name (a universal lock may pin one name twice under markers)."""
    pins: dict[str, list[Pin]] = {}
    # Join backslash continuations so each requirement is one logical line.
    for line in text.replace("\\\n", " ").splitlines():
        match = _PIN.match(line)
        if match is None:
            continue
        pin = Pin(
            canonicalize_name(match["name"]),
            Version(match["version"]),
            tuple(re.findall(r"--hash=(\S+)", line)),
        )
        pins.setdefault(pin.name, []).append(pin)
    return pins


def recorded_digest(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(DIGEST_PREFIX):
            return line.removeprefix(DIGEST_PREFIX).strip()
    return None


def stamp(pyproject: Path, lock: Path) -> None:
    """Write the digest line into the lock header (after uv's comment lines)."""
    lines = [
        line
        for line in lock.read_text(encoding="utf-8").splitlines()
        if not line.startswith(DIGEST_PREFIX)
    ]
    header_end = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    lines.insert(header_end, DIGEST_PREFIX + inputs_digest(pyproject))
    lock.write_text("\n".join(lines) + "\n", encoding="utf-8")


def check(pyproject: Path, lock: Path) -> None:
    """Raise LockError naming every mismatch between pyproject.toml and the lock."""
    if not lock.exists():
        raise LockError(f"{lock.name} is missing: {FIX}")
    text = lock.read_text(encoding="utf-8")
    problems: list[str] = []
    if recorded_digest(text) != inputs_digest(pyproject):
        problems.append(
            "the runtime dependencies (or requires-python) in pyproject.toml changed "
            f"since {lock.name} was generated"
        )
    pins = parse_lock(text)
    for pin in (p for group in pins.values() for p in group):
        if not pin.hashes:
            problems.append(f"{pin.name}=={pin.version} has no --hash (needed by --require-hashes)")
    for requirement in runtime_requirements(pyproject)[1]:
        locked = pins.get(canonicalize_name(requirement.name))
        if not locked:
            problems.append(f"{requirement.name} is not in {lock.name}")
            continue
        for pin in locked:
            if not requirement.specifier.contains(pin.version, prereleases=True):
                problems.append(f"{pin.name}=={pin.version} does not satisfy {requirement}")
    if problems:
        raise LockError(
            f"{lock.name} is out of date with pyproject.toml:\n  - "
            + "\n  - ".join(problems)
            + f"\nFix: {FIX}."
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=["stamp", "check"])
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    parser.add_argument("--lock", type=Path, default=ROOT / "requirements.lock")
    args = parser.parse_args(argv)
    if args.command == "stamp":
        stamp(args.pyproject, args.lock)
        return 0
    try:
        check(args.pyproject, args.lock)
    except LockError as exc:
        print(f"lock-check: {exc}", file=sys.stderr)
        return 1
    print(f"lock-check: {args.lock.name} matches pyproject.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
