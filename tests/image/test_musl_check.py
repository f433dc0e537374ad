"""The musl resolution check finds what would break the Alpine image build (uses PyPI)."""

from __future__ import annotations

from packaging.tags import Tag
from packaging.version import Version

from scripts import lockfile, musl_check
from scripts.lockfile import Pin

SKLEARN_SDIST = "sha256:20e9e49ecd130598f1ca38a1d85090e1a600147b9c02fa6f15d69cb53d968fda"


def test_markers_are_evaluated_for_the_image_not_this_machine() -> None:
    lock = (
        "uvloop==0.23.0 ; sys_platform != 'win32' --hash=sha256:aa\n"
        "colorama==0.4.6 ; sys_platform == 'win32' --hash=sha256:bb\n"
        "arm-only==1.0 ; platform_machine == 'aarch64' --hash=sha256:cc\n"
        "tomli==2.0 ; python_version < '3.12' --hash=sha256:dd\n"
    )
    assert [p.name for p in lockfile.pins_for("x86_64", lock)] == ["uvloop"]
    assert [p.name for p in lockfile.pins_for("aarch64", lock)] == ["uvloop", "arm-only"]


def test_all_three_musllinux_tags_are_accepted() -> None:
    tags = musl_check.image_tags("x86_64")
    # pydantic-core ships musllinux_1_1 only; watchfiles an abi3 musllinux_1_1 wheel.
    assert Tag("cp312", "cp312", "musllinux_1_1_x86_64") in tags
    assert Tag("cp310", "abi3", "musllinux_1_1_x86_64") in tags
    assert Tag("cp312", "cp312", "musllinux_1_0_x86_64") in tags
    assert Tag("py3", "none", "any") in tags
    assert Tag("cp312", "cp312", "manylinux_2_17_x86_64") not in tags


def test_a_package_without_a_musl_wheel_is_reported() -> None:
    pin = Pin("scikit-learn", Version("1.7.2"), (SKLEARN_SDIST,))
    findings = musl_check.check_wheels([pin], "x86_64")
    assert [(f.package, f.arch) for f in findings] == [("scikit-learn", "x86_64")]
    assert "no musllinux/pure wheel" in findings[0].problem


def test_a_musl_wheel_missing_from_the_lock_hashes_is_reported() -> None:
    pin = Pin("pydantic-core", Version("2.41.5"), ("sha256:" + "0" * 64,))
    findings = musl_check.check_wheels([pin], "aarch64")
    assert len(findings) == 1
    assert "musllinux_1_1_aarch64" in findings[0].problem
    assert "not among the lock's hashes" in findings[0].problem


def test_a_built_from_source_package_needs_its_sdist_hash() -> None:
    good = Pin("scikit-learn", Version("1.7.2"), (SKLEARN_SDIST,))
    assert musl_check.check_built_from_source(good) == []
    bad = Pin("scikit-learn", Version("1.7.2"), ("sha256:" + "1" * 64,))
    assert [f.problem for f in musl_check.check_built_from_source(bad)] == [
        "the lock holds no hash of its sdist"
    ]


def test_the_build_list_is_short_and_justified() -> None:
    assert set(musl_check.BUILT_FROM_SOURCE) == {"scikit-learn"}
    assert all(len(reason) > 40 for reason in musl_check.BUILT_FROM_SOURCE.values())
