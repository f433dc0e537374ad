"""Every locked runtime requirement installs on the image (CPython 3.12, Alpine/musl).

For each architecture of the image (x86_64, aarch64) pip resolves the pins of
requirements.lock, binary only, for ``musllinux_1_2``, ``musllinux_1_1`` and
``musllinux_1_0`` together: pydantic-core and watchfiles ship musllinux_1_1 wheels
only, and a single ``--platform musllinux_1_2_*`` makes pip miss them. Markers are
evaluated for the image, not for this machine. The check fails when

- a package has no musl (or pure-Python) wheel and is not in BUILT_FROM_SOURCE;
- the wheel pip picks is not among the lock's hashes (``--require-hashes`` would
  then fail in the Docker build);
- a BUILT_FROM_SOURCE package has no sdist hash in the lock, or has gained a musl
  wheel (then it should leave the list and the builder's ``--no-binary``).

pip runs isolated from this machine's pip configuration, against PyPI, with its
HTTP cache in ``.cache/pip-musl`` (wheel metadata is cached; only the index pages
are revalidated). Usage: python -m scripts.musl_check
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

from scripts.lockfile import IMAGE_ARCHES, IMAGE_PYTHON, ROOT, Pin, parse_lock, pins_for

INDEX_URL = "https://pypi.org/simple"
PYTHON = IMAGE_PYTHON
ARCHES = IMAGE_ARCHES
MUSL_TAGS = ("musllinux_1_2", "musllinux_1_1", "musllinux_1_0")
CACHE_DIR = ROOT / ".cache" / "pip-musl"

# Packages the Dockerfile builder compiles from their (hashed) sdist, each with why.
# The Dockerfile's `--no-binary=` list must name exactly these (tests/image checks it).
BUILT_FROM_SOURCE: Mapping[str, str] = {
    "scikit-learn": (
        "publishes no musllinux wheel in any release; built with meson-python and Cython, "
        "then auditwheel-repaired so libstdc++ and libgomp travel inside the venv"
    ),
}


@dataclass(frozen=True)
class Finding:
    arch: str
    package: str
    problem: str

    def __str__(self) -> str:
        return f"[{self.arch}] {self.package}: {self.problem}"


def image_tags(arch: str) -> set[Tag]:
    platforms = [f"{tag}_{arch}" for tag in MUSL_TAGS]
    return set(cpython_tags(PYTHON, [f"cp{PYTHON[0]}{PYTHON[1]}"], platforms)) | set(
        compatible_tags(PYTHON, f"cp{PYTHON[0]}{PYTHON[1]}", platforms)
    )


def pip_resolve(pins: list[Pin], arch: str) -> tuple[int, str, list[dict[str, object]]]:
    """Run pip's resolver, binary only, for the image; return (code, stderr, installs)."""
    with tempfile.TemporaryDirectory(prefix="musl-check-") as tmp:
        requirements = Path(tmp, "requirements.txt")
        requirements.write_text("".join(f"{p.name}=={p.version}\n" for p in pins))
        report = Path(tmp, "report.json")
        platforms = [arg for tag in MUSL_TAGS for arg in ("--platform", f"{tag}_{arch}")]
        command = [
            sys.executable,
            "-m",
            "pip",
            "--isolated",  # not this machine's pip.conf, find-links or constraints
            "--disable-pip-version-check",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--no-deps",  # the lock is complete; every pin is checked on its own
            "--only-binary=:all:",
            *platforms,
            "--python-version",
            f"{PYTHON[0]}.{PYTHON[1]}",
            "--implementation",
            "cp",
            "--abi",
            f"cp{PYTHON[0]}{PYTHON[1]}",
            "--target",
            str(Path(tmp, "target")),
            "--index-url",
            INDEX_URL,
            "--cache-dir",
            str(CACHE_DIR),
            "--quiet",
            "--report",
            str(report),
            "-r",
            str(requirements),
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        installs = json.loads(report.read_text())["install"] if result.returncode == 0 else []
        return result.returncode, result.stderr, installs


def check_wheels(pins: list[Pin], arch: str) -> list[Finding]:
    """Resolve all pins at once; on failure, one by one to name every offender."""
    code, stderr, installs = pip_resolve(pins, arch)
    if code != 0:
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda p: (p, pip_resolve([p], arch)), pins))
        failed = [
            Finding(arch, p.name, f"=={p.version} has no musllinux/pure wheel for cp312")
            for p, (c, _, _) in results
            if c != 0
        ]
        return failed or [Finding(arch, "pip", stderr.strip() or f"exit code {code}")]
    by_name = {p.name: p for p in pins}
    findings = []
    for item in installs:
        metadata = item["metadata"]
        info = item["download_info"]
        assert isinstance(metadata, dict)
        assert isinstance(info, dict)
        name = canonicalize_name(str(metadata["name"]))
        filename = str(info["url"]).rsplit("/", 1)[-1]
        digest = "sha256:" + str(info["archive_info"]["hashes"]["sha256"])
        if digest not in by_name[name].hashes:
            findings.append(
                Finding(arch, name, f"{filename} is not among the lock's hashes (run `make lock`)")
            )
        if not parse_wheel_filename(filename)[3] & image_tags(arch):
            findings.append(Finding(arch, name, f"pip chose {filename}, not a musl wheel"))
    return findings


def index_files(name: str) -> list[tuple[str, str]]:
    """(filename, sha256) of every file of ``name``, from PyPI's JSON simple API (PEP 691)."""
    request = urllib.request.Request(
        f"{INDEX_URL}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    return [(str(f["filename"]), str(f["hashes"].get("sha256", ""))) for f in files]


def _version_of(filename: str) -> Version | None:
    if filename.endswith(".whl"):
        return parse_wheel_filename(filename)[1]
    if filename.endswith(".tar.gz"):
        return parse_sdist_filename(filename)[1]
    return None


def check_built_from_source(pin: Pin) -> list[Finding]:
    """The sdist the builder compiles is hash-locked, and still no musl wheel exists."""
    files = [(f, h) for f, h in index_files(pin.name) if _version_of(f) == pin.version]
    locked = {h.removeprefix("sha256:") for h in pin.hashes}
    findings = []
    if not any(f.endswith(".tar.gz") and h in locked for f, h in files):
        findings.append(Finding("any", pin.name, "the lock holds no hash of its sdist"))
    for arch in ARCHES:
        musl = [
            f
            for f, _ in files
            if f.endswith(".whl") and parse_wheel_filename(f)[3] & image_tags(arch)
        ]
        if musl:
            findings.append(
                Finding(
                    arch,
                    pin.name,
                    f"now ships {musl[0]}: remove it from BUILT_FROM_SOURCE and the "
                    "Dockerfile's --no-binary",
                )
            )
    return findings


def run(lock_text: str, *, exempt: Mapping[str, str] = BUILT_FROM_SOURCE) -> list[Finding]:
    """Findings for one lock; ``exempt`` names the packages the builder compiles."""
    findings: list[Finding] = []
    per_arch = {arch: pins_for(arch, lock_text) for arch in ARCHES}
    with ThreadPoolExecutor(max_workers=len(ARCHES)) as pool:
        futures = [
            pool.submit(check_wheels, [p for p in pins if p.name not in exempt], arch)
            for arch, pins in per_arch.items()
        ]
        for future in futures:
            findings.extend(future.result())
    built = {p.name: p for pins in per_arch.values() for p in pins if p.name in exempt}
    for pin in built.values():
        findings.extend(check_built_from_source(pin))
    return findings


def main() -> int:
    ok = True
    # The builder installs its own tools binary-only too: nothing there is exempt.
    locks: dict[str, Mapping[str, str]] = {
        "requirements.lock": BUILT_FROM_SOURCE,
        "requirements-build.lock": {},
    }
    texts = {name: (ROOT / name).read_text(encoding="utf-8") for name in locks}
    with ThreadPoolExecutor(max_workers=len(locks)) as pool:
        results = {name: pool.submit(run, texts[name], exempt=locks[name]) for name in locks}
    for name, exempt in locks.items():
        lock_text = texts[name]
        findings = results[name].result()
        if findings:
            ok = False
            print(f"musl-check: {name} does not install on the image:", file=sys.stderr)
            for finding in findings:
                print(f"  - {finding}", file=sys.stderr)
            continue
        counts = ", ".join(f"{arch} {len(pins_for(arch, lock_text))}" for arch in ARCHES)
        built = sorted(set(exempt) & set(parse_lock(lock_text)))
        print(
            f"musl-check: {name}: every pin installs on cp312 musllinux (pins: {counts}; "
            f"built from source: {', '.join(built) or 'none'})"
        )
    if not ok:
        print(
            "A dependency without a musllinux wheel needs a justified entry in "
            "scripts/musl_check.py BUILT_FROM_SOURCE and in the Dockerfile builder "
            "(see docs/adr/ADR-003-container-base-image.md), or a different dependency.",
            file=sys.stderr,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
