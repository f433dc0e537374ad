"""bench/instructions.py: instruction counts from a real callgrind run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench import instructions

# Loops ``n`` times on the main thread and, with a second argument, as many again
# on a thread of its own.
PROGRAM = """
import sys, threading
n = int(sys.argv[1])
def work():
    total = 0
    for i in range(n):
        total ^= i & 255  # the same work for every i (no growing integers)
work()
if len(sys.argv) > 2:
    t = threading.Thread(target=work)
    t.start()
    t.join()
"""


def _count(tmp_path: Path, *args: str) -> list[int]:
    out = tmp_path / ("run-" + "-".join(args) + ".out")
    return instructions.count([sys.executable, "-c", PROGRAM, *args], out=out)


def test_difference_of_two_runs_is_the_work_per_unit(tmp_path: Path) -> None:
    """Start-up is in both runs and cancels out; what is left grows with the work,
    the same per unit in two different spans of work."""
    small, middle, large = (_count(tmp_path, str(n)) for n in (10_000, 30_000, 90_000))
    assert len(small) == len(middle) == len(large) == 1  # one thread, one file
    first, _ = instructions.per_unit(small, middle, 20_000)
    second, _ = instructions.per_unit(middle, large, 60_000)
    assert first > 20  # a Python loop iteration is tens of instructions, not one
    assert second == pytest.approx(first, rel=0.05)


def test_threads_are_counted_apart_main_thread_first(tmp_path: Path) -> None:
    small = _count(tmp_path, "10000", "thread")
    large = _count(tmp_path, "50000", "thread")
    assert len(large) == 2
    main_thread, every_thread = instructions.per_unit(small, large, 40_000)
    # the other thread does the same loop again: about twice the main thread's count
    assert every_thread == pytest.approx(2 * main_thread, rel=0.1)


def test_a_failing_command_raises_with_its_output(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        instructions.count(
            [sys.executable, "-c", "raise SystemExit('boom')"], out=tmp_path / "fail.out"
        )


def test_not_a_callgrind_file_and_no_work(tmp_path: Path) -> None:
    other = tmp_path / "other.out"
    other.write_text("events: Ir\n")
    with pytest.raises(ValueError, match="totals"):
        instructions.totals(other)
    with pytest.raises(ValueError, match="units"):
        instructions.per_unit([1], [2], 0)
