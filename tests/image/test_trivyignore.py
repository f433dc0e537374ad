"""Accepted Trivy findings carry their reasons and expire within 90 days."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from scripts import trivyignore

ROOT = Path(__file__).resolve().parents[2]
TODAY = dt.date(2026, 11, 27)
JUSTIFIED = """\
# package: busybox 1.37.0-r19
# reason: wget applet only, removed from the runtime image
# no-fix: Alpine lists no fixed version
# risk: low, needs a local shell
CVE-2026-0001 exp:{exp}
"""


def test_the_committed_file_is_sound() -> None:
    text = (ROOT / ".trivyignore").read_text()
    assert trivyignore.problems(text, dt.datetime.now(dt.UTC).date()) == []


def test_a_justified_entry_within_90_days_passes() -> None:
    assert trivyignore.problems(JUSTIFIED.format(exp="2027-02-25"), TODAY) == []


def test_an_entry_without_a_reason_fails() -> None:
    text = JUSTIFIED.format(exp="2027-01-01").replace("# reason: wget", "# note: wget")
    assert trivyignore.problems(text, TODAY) == ["line 5 (CVE-2026-0001): missing # reason:"]


def test_an_empty_field_counts_as_missing() -> None:
    text = JUSTIFIED.format(exp="2027-01-01").replace("low, needs a local shell", "")
    assert trivyignore.problems(text, TODAY) == ["line 5 (CVE-2026-0001): missing # risk:"]


def test_a_bare_id_fails_on_reasons_and_expiry() -> None:
    assert trivyignore.problems("CVE-2026-0002\n", TODAY) == [
        "line 1 (CVE-2026-0002): missing # package:, # reason:, # no-fix:, # risk:",
        "line 1 (CVE-2026-0002): no exp:YYYY-MM-DD",
    ]


def test_expiry_more_than_90_days_ahead_fails() -> None:
    (problem,) = trivyignore.problems(JUSTIFIED.format(exp="2027-02-26"), TODAY)
    assert "more than 90 days ahead" in problem


def test_an_expired_entry_fails() -> None:
    (problem,) = trivyignore.problems(JUSTIFIED.format(exp="2026-11-26"), TODAY)
    assert "expired on 2026-11-26" in problem


def test_a_malformed_date_fails() -> None:
    (problem,) = trivyignore.problems(JUSTIFIED.format(exp="27/02/2027"), TODAY)
    assert "not a YYYY-MM-DD date" in problem


def test_reasons_do_not_carry_over_a_blank_line() -> None:
    text = JUSTIFIED.format(exp="2027-01-01") + "\nCVE-2026-0003 exp:2027-01-01\n"
    assert trivyignore.problems(text, TODAY) == [
        "line 7 (CVE-2026-0003): missing # package:, # reason:, # no-fix:, # risk:"
    ]
