"""scripts/check-base-digest.sh decides correctly on the registry's answers.

The registry (Docker Hub) is not reachable here, so a stand-in `docker` on PATH
answers `docker buildx imagetools inspect` with the JSON shapes buildx prints and
records each call; on GitHub the same script talks to the real registry.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check-base-digest.sh"
PINNED = "sha256:" + "a" * 64
NEWER = "sha256:" + "b" * 64
INDEX = "application/vnd.oci.image.index.v1+json"

FAKE_DOCKER = """#!/usr/bin/env bash
# docker buildx imagetools inspect REF --format FORMAT
set -euo pipefail
echo "$*" >> "$FAKE_LOG"
ref="$4"
format="$6"
case "$format" in
  *.Manifest*)
    if [[ "$ref" == *@* ]]; then cat "$FAKE_DIR/manifest.json"
    else cat "$FAKE_DIR/tag-manifest.json"; fi ;;
  *.Image*) cat "$FAKE_DIR/image.json" ;;
  *) echo "unexpected format $format" >&2; exit 2 ;;
esac
"""


def _manifest(media: str, arches: list[str], digest: str = PINNED) -> dict[str, object]:
    return {
        "mediaType": media,
        "digest": digest,
        "manifests": [{"platform": {"os": "linux", "architecture": a}} for a in arches],
    }


def _image(python: str, arches: list[str]) -> dict[str, object]:
    return {
        f"linux/{a}": {"config": {"Env": ["PATH=/usr/local/bin", f"PYTHON_VERSION={python}"]}}
        for a in arches
    }


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    (tmp_path / "Dockerfile").write_text(
        f"FROM python:3.12-alpine@{PINNED} AS builder\nRUN true\n"
        f"FROM python:3.12-alpine@{PINNED} AS runtime\nUSER 1000:1000\n"
    )
    _answer(tmp_path, _manifest(INDEX, ["amd64", "arm64"]), _image("3.12.13", ["amd64", "arm64"]))
    (tmp_path / "tag-manifest.json").write_text(json.dumps(_manifest(INDEX, [], PINNED)))
    return tmp_path


def _answer(registry: Path, manifest: dict[str, object], image: dict[str, object]) -> None:
    (registry / "manifest.json").write_text(json.dumps(manifest))
    (registry / "image.json").write_text(json.dumps(image))


def _run(registry: Path, mode: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{registry / 'bin'}:{os.environ['PATH']}",
        "FAKE_DIR": str(registry),
        "FAKE_LOG": str(registry / "calls.log"),
        "DOCKERFILE": str(registry / "Dockerfile"),
        "GITHUB_STEP_SUMMARY": str(registry / "summary.md"),
    }
    return subprocess.run(
        ["bash", str(SCRIPT), mode], env=env, capture_output=True, text=True, check=False
    )


def test_verify_accepts_a_multi_arch_python_312_index(registry: Path) -> None:
    result = _run(registry, "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "linux/arm64 (Python 3.12.13)" in result.stdout
    # The pinned digest itself is what gets resolved, not the moving tag.
    calls = (registry / "calls.log").read_text()
    assert f"python@{PINNED}" in calls
    assert "python:3.12-alpine " not in calls


def test_verify_fails_without_arm64(registry: Path) -> None:
    _answer(registry, _manifest(INDEX, ["amd64"]), _image("3.12.13", ["amd64"]))
    result = _run(registry, "verify")
    assert result.returncode == 1
    assert "has no linux/arm64 image" in result.stdout


def test_verify_fails_on_a_single_platform_manifest(registry: Path) -> None:
    media = "application/vnd.oci.image.manifest.v1+json"
    _answer(registry, _manifest(media, []), _image("3.12.13", ["amd64"]))
    result = _run(registry, "verify")
    assert result.returncode == 1
    assert "single-platform manifest" in result.stdout


def test_verify_fails_on_another_python(registry: Path) -> None:
    _answer(registry, _manifest(INDEX, ["amd64", "arm64"]), _image("3.13.1", ["amd64", "arm64"]))
    result = _run(registry, "verify")
    assert result.returncode == 1
    assert "runs Python '3.13.1', not 3.12" in result.stdout


def test_stale_passes_while_the_tag_points_to_the_pin(registry: Path) -> None:
    result = _run(registry, "stale")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "still points to the pinned" in result.stdout


def test_stale_reports_a_moved_tag(registry: Path) -> None:
    (registry / "tag-manifest.json").write_text(json.dumps(_manifest(INDEX, [], NEWER)))
    result = _run(registry, "stale")
    assert result.returncode == 1
    assert f"now points to {NEWER}" in result.stdout
    summary = (registry / "summary.md").read_text()
    assert "Stale base image digest" in summary
    assert "never type a digest in" in summary
    assert "python:3.12-alpine " in (registry / "calls.log").read_text()


def test_stages_with_different_bases_are_refused(registry: Path) -> None:
    dockerfile = registry / "Dockerfile"
    dockerfile.write_text(
        dockerfile.read_text().replace(f"{PINNED} AS runtime", f"{NEWER} AS runtime")
    )
    result = _run(registry, "verify")
    assert result.returncode == 1
    assert "expected one base reference" in result.stdout
