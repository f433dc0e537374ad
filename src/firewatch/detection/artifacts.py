"""Model files: written with skops, checked against their SHA-256 before loading.

Never pickle: skops files are loaded type by type, and we trust only the types an
IsolationForest is made of (:data:`TRUSTED_TYPES`); a file naming anything else is
refused, as is a file whose SHA-256 differs from the one recorded in PostgreSQL.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

# skops and scikit-learn take seconds to import (skops enumerates every estimator),
# so they are imported on first use: workers start fast, the first load pays.
if TYPE_CHECKING:
    from sklearn.ensemble import IsolationForest

# What skops reports as untrusted for an IsolationForest (the sklearn estimators
# and numpy types it trusts by default); anything beyond this is refused.
TRUSTED_TYPES = frozenset({"sklearn.tree._tree.Tree"})


class ArtifactError(Exception):
    """A model file is missing, altered, or holds types we do not load."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save(model: IsolationForest, directory: Path, relative: str) -> str:
    """Write the model atomically at ``directory/relative``; return its SHA-256."""
    import skops.io as sio

    data = sio.dumps(model)
    target = directory / relative
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".skops")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha256(data)


def load(directory: Path, relative: str, expected_sha256: str) -> IsolationForest:
    import skops.io as sio
    from sklearn.ensemble import IsolationForest

    path = (directory / relative).resolve()
    if directory.resolve() not in path.parents:
        raise ArtifactError("model path escapes the model directory")
    try:
        data = path.read_bytes()
    except OSError:
        raise ArtifactError(f"model file {relative} cannot be read") from None
    actual = sha256(data)
    if actual != expected_sha256:
        raise ArtifactError(
            f"model file {relative} has SHA-256 {actual[:12]}..., the registry recorded "
            f"{expected_sha256[:12]}...: refusing to load a file that changed"
        )
    try:
        untrusted = set(sio.get_untrusted_types(data=data))
    except Exception:  # skops raises several types on a malformed archive
        raise ArtifactError(f"model file {relative} is not a skops archive") from None
    if not untrusted <= TRUSTED_TYPES:
        raise ArtifactError(
            f"model file {relative} holds types firewatch does not load: {sorted(untrusted)}"
        )
    model = sio.loads(data, trusted=sorted(untrusted))
    if not isinstance(model, IsolationForest):
        raise ArtifactError(f"model file {relative} is not an IsolationForest")
    return model
