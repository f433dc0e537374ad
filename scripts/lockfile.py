"""Keeps the hashed lock files of the image in step with their inputs.

- requirements.lock: the runtime requirements, from pyproject.toml's
  ``requires-python`` and ``[project.dependencies]``;
- requirements-build.lock: the builder stage's tools, from requirements-build.in.

``make lock`` compiles both with uv, then runs ``stamp``, which records a digest of
each lock's inputs (normalised) in its header. ``check`` (run by ``make test``)
recomputes the digests offline and fails, telling the developer to run ``make lock``,
when an input changed without it; it also fails when a direct requirement is missing
from its lock, pinned to a version its specifier rejects, pinned without hashes (the
image installs with --require-hashes), or when a package pinned in both locks (numpy,
scipy: scikit-learn is compiled against the build ones) has two versions.

``image-pins LOCK`` prints the pins of LOCK that the image installs (markers evaluated
for CPython 3.12 on Linux), with their hashes, for tools that cannot evaluate a
universal lock's markers themselves (pip-audit in CI).

Usage: python -m scripts.lockfile {stamp|check} [--pyproject PATH --lock PATH]
       python -m scripts.lockfile image-pins LOCK
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

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
DIGEST_PREFIX = "# runtime-dependencies-sha256: "
FIX = "run `make lock` and commit requirements.lock"

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")
_MARKER = re.compile(r";(?P<marker>[^\\]*?)\s*(?:--hash|$)")


# The image's interpreter (python:3.12-alpine) and architectures.
IMAGE_PYTHON = (3, 12)
IMAGE_ARCHES = ("x86_64", "aarch64")


class LockError(Exception):
    """The lock does not match pyproject.toml; the message says what and how to fix it."""


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    hashes: tuple[str, ...]
    marker: str | None = None


PAIRS = (
    (ROOT / "pyproject.toml", ROOT / "requirements.lock"),
    (ROOT / "requirements-build.in", ROOT / "requirements-build.lock"),
)


def input_requirements(source: Path) -> tuple[str, list[Requirement]]:
    """(requires-python, requirements) of pyproject.toml or of a requirements .in file."""
    text = source.read_text(encoding="utf-8")
    if source.suffix == ".toml":
        project = tomllib.loads(text)["project"]
        return project.get("requires-python", ""), [
            Requirement(r) for r in project.get("dependencies", [])
        ]
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return "", [Requirement(line) for line in lines if line and not line.startswith("-")]


def inputs_digest(source: Path) -> str:
    """SHA-256 of a lock's inputs, insensitive to order, spacing and name spelling."""
    requires_python, requirements = input_requirements(source)
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
        marker = _MARKER.search(line)
        pin = Pin(
            canonicalize_name(match["name"]),
            Version(match["version"]),
            tuple(re.findall(r"--hash=(\S+)", line)),
            marker["marker"].strip() if marker else None,
        )
        pins.setdefault(pin.name, []).append(pin)
    return pins


def image_environment(arch: str) -> dict[str, str]:
    """PEP 508 marker values of the image's interpreter on ``arch``."""
    version = f"{IMAGE_PYTHON[0]}.{IMAGE_PYTHON[1]}"
    return {
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "python_version": version,
        "python_full_version": f"{version}.0",
        "implementation_version": f"{version}.0",
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": arch,
    }


def pins_for(arch: str, lock_text: str) -> list[Pin]:
    """The lock's pins whose markers hold in the image on ``arch``."""
    env = image_environment(arch)
    return [
        pin
        for group in parse_lock(lock_text).values()
        for pin in group
        if pin.marker is None or Marker(pin.marker).evaluate(env)
    ]


def image_pins(lock: Path) -> str:
    """requirements.txt text of the pins the image installs (identical on both arches
    today; x86_64 is the reference), one name each, with every hash."""
    pins = pins_for(IMAGE_ARCHES[0], lock.read_text(encoding="utf-8"))
    return "".join(
        f"{p.name}=={p.version} " + " ".join(f"--hash={h}" for h in p.hashes) + "\n" for p in pins
    )


def recorded_digest(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(DIGEST_PREFIX):
            return line.removeprefix(DIGEST_PREFIX).strip()
    return None


def stamp(source: Path, lock: Path) -> None:
    """Write the digest line into the lock header (after uv's comment lines)."""
    lines = [
        line
        for line in lock.read_text(encoding="utf-8").splitlines()
        if not line.startswith(DIGEST_PREFIX)
    ]
    header_end = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    lines.insert(header_end, DIGEST_PREFIX + inputs_digest(source))
    lock.write_text("\n".join(lines) + "\n", encoding="utf-8")


def check(source: Path, lock: Path) -> None:
    """Raise LockError naming every mismatch between the inputs and the lock."""
    if not lock.exists():
        raise LockError(f"{lock.name} is missing: {FIX}")
    text = lock.read_text(encoding="utf-8")
    problems: list[str] = []
    if recorded_digest(text) != inputs_digest(source):
        what = "runtime dependencies (or requires-python)" if source.suffix == ".toml" else "lines"
        problems.append(f"the {what} in {source.name} changed since {lock.name} was generated")
    pins = parse_lock(text)
    for pin in (p for group in pins.values() for p in group):
        if not pin.hashes:
            problems.append(f"{pin.name}=={pin.version} has no --hash (needed by --require-hashes)")
    for requirement in input_requirements(source)[1]:
        locked = pins.get(canonicalize_name(requirement.name))
        if not locked:
            problems.append(f"{requirement.name} is not in {lock.name}")
            continue
        for pin in locked:
            if not requirement.specifier.contains(pin.version, prereleases=True):
                problems.append(f"{pin.name}=={pin.version} does not satisfy {requirement}")
    if problems:
        raise LockError(
            f"{lock.name} is out of date with {source.name}:\n  - "
            + "\n  - ".join(problems)
            + f"\nFix: {FIX}."
        )


def check_shared_pins(runtime_lock: Path, build_lock: Path) -> None:
    """A package in both locks has one version in the image (scikit-learn is compiled
    against the build venv's numpy and scipy, and runs with the runtime ones)."""
    problems = []
    for arch in IMAGE_ARCHES:
        runtime = {p.name: p.version for p in pins_for(arch, runtime_lock.read_text("utf-8"))}
        build = {p.name: p.version for p in pins_for(arch, build_lock.read_text("utf-8"))}
        problems += [
            f"{name} ({arch}): {runtime_lock.name} pins {runtime[name]}, "
            f"{build_lock.name} pins {build[name]}"
            for name in sorted(runtime.keys() & build.keys())
            if runtime[name] != build[name]
        ]
    if problems:
        raise LockError("the locks disagree:\n  - " + "\n  - ".join(problems) + f"\nFix: {FIX}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=["stamp", "check", "image-pins"])
    parser.add_argument("path", nargs="?", type=Path, help="the lock, for image-pins")
    parser.add_argument("--pyproject", type=Path, help="with --lock: this pair only")
    parser.add_argument("--lock", type=Path)
    args = parser.parse_args(argv)
    pairs = [(args.pyproject, args.lock)] if args.pyproject and args.lock else list(PAIRS)
    if args.command == "image-pins":
        print(image_pins(args.path or PAIRS[0][1]), end="")
        return 0
    if args.command == "stamp":
        for source, lock in pairs:
            stamp(source, lock)
        return 0
    try:
        for source, lock in pairs:
            check(source, lock)
        if len(pairs) == len(PAIRS):
            check_shared_pins(PAIRS[0][1], PAIRS[1][1])
    except LockError as exc:
        print(f"lock-check: {exc}", file=sys.stderr)
        return 1
    print("lock-check: " + ", ".join(lock.name for _, lock in pairs) + " match their inputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
