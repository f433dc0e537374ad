"""Set up prometheus-client's multiprocess mode in the master process, before workers start.

Kept apart from ``metrics`` on purpose: prometheus-client picks its storage (in memory or
memory-mapped files) when it is first imported, from ``PROMETHEUS_MULTIPROC_DIR``. So the
master must export that variable before anything imports ``prometheus_client``; this
module imports nothing of it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Final

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


def prepare(data_dir: Path) -> Path:
    """Empty ``<data_dir>/prometheus`` and export it as ``PROMETHEUS_MULTIPROC_DIR``.

    Metric files left by a previous run are removed, so counters start at zero with
    each ``firewatch serve``, as Prometheus expects of a restarted target. Every uvicorn
    worker (and, with one worker, the master itself) inherits the variable.
    """
    path = (data_dir / "prometheus").resolve()
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(mode=0o700, parents=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path
