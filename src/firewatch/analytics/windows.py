"""Windows, scopes and dimensions: the analytics vocabulary without pandas, so the
HTTP layer imports it without paying for pandas at worker start."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

DIMENSIONS = ("severity", "category", "service", "team")


@dataclass(frozen=True, slots=True)
class Window:
    """Incidents whose ``opened_at`` is in ``[start, end)``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware (UTC)")
        if self.end <= self.start:
            raise ValueError("window end must be after its start")


@dataclass(frozen=True, slots=True)
class Scope:
    """Optional filters on top of the time range."""

    service: str | None = None
    team: str | None = None
    category: str | None = None
    severity: int | None = None


def parse_window(text: str, now: datetime) -> Window:
    """``7d``, ``30d``, ``12h`` or ``90m``: the span that ends at ``now``."""
    text = text.strip().lower()
    units = {"d": 86400, "h": 3600, "m": 60}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise ValueError("window must look like 7d, 30d, 12h or 90m")
    amount = int(text[:-1])
    seconds = amount * units[text[-1]]
    if amount < 1 or seconds > 3660 * 86400:
        raise ValueError("window must be between 1 minute and 10 years")
    return Window(now - timedelta(seconds=seconds), now)
