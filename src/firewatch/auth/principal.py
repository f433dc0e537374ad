"""The caller of a request, as every service sees it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``subject`` is what timelines and audit records name."""

    subject: str
    kind: str  # "user", "integration" or "local"
    role: str
