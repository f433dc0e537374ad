"""Instructions a command executes, counted by valgrind's callgrind.

On the shared 2-core VM a process's CPU per request moves by 10-30% between runs of
the same code, which hides differences of a few per cent (the observability target
is one). The number of instructions a thread executes does not depend on the host's
speed: callgrind's counts of the same run agree to within ~1-2% (an event loop's
turns still depend on timing, and a sampler draws at random). It
counts user space only: the kernel's side of system calls and the cost of cache
misses are not in it, so it ranks and sizes Python-level work, it does not replace
the wrk rounds. A command runs ~30x slower under callgrind; a thread that wakes on a
timer (an exporter's schedule) then runs ~30x more often per unit of work, which is
why the figures are given for the main thread apart.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.harness import debian_binary

_TOTALS = re.compile(rb"^(?:totals|summary):\s+(\d+)", re.MULTILINE)
_THREAD = re.compile(r"-(\d+)$")


def totals(path: Path) -> int:
    """The instruction count of one callgrind output file."""
    found = _TOTALS.search(path.read_bytes())
    if found is None:
        raise ValueError(f"{path}: no 'totals:' line (not a callgrind output file?)")
    return int(found.group(1))


def thread_files(out: Path) -> list[Path]:
    """The per-thread files of ``--separate-threads=yes`` (``out-01``, ``out-02``, ...),
    the main thread first; ``out`` itself when callgrind wrote one file."""
    numbered = [
        (int(m.group(1)), p)
        for p in out.parent.glob(f"{out.name}-*")
        if (m := _THREAD.search(p.name)) is not None
    ]
    if numbered:
        return [p for _, p in sorted(numbered)]
    if out.exists():
        return [out]
    raise FileNotFoundError(f"callgrind wrote no {out} nor {out}-NN")


def count(argv: Sequence[str], *, out: Path, env: Mapping[str, str] | None = None) -> list[int]:
    """Run ``argv`` under callgrind; the instructions each of its threads executed,
    the main thread first. Raises with callgrind's and the command's output when the
    command fails."""
    command = [
        debian_binary("valgrind"),
        "--tool=callgrind",
        "--separate-threads=yes",
        "--dump-instr=no",
        "--dump-line=no",
        f"--callgrind-out-file={out}",
        *argv,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} under callgrind exited {done.returncode}: "
            f"{done.stderr[-2000:]}{done.stdout[-1000:]}"
        )
    return [totals(p) for p in thread_files(out)]


def per_unit(small: Sequence[int], large: Sequence[int], units: int) -> tuple[float, float]:
    """Instructions per unit of work (main thread, all threads) from two runs that
    differ by ``units`` units of work and nothing else: what starting, importing and
    warming up cost is in both runs and cancels out."""
    if units <= 0:
        raise ValueError("units must be > 0")
    return (large[0] - small[0]) / units, (sum(large) - sum(small)) / units
