"""Every .trivyignore entry is justified and expires within 90 days (ADR-003).

An entry is a finding ID with ``exp:YYYY-MM-DD`` (Trivy honours it in the plain file:
once expired, the finding is reported again), directly below comment lines
``# package:``, ``# reason:``, ``# no-fix:`` and ``# risk:``, each non-empty.

Usage: python -m scripts.trivyignore [PATH]
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path

from scripts.lockfile import ROOT

FIELDS = ("package", "reason", "no-fix", "risk")
MAX_DAYS = 90
_ENTRY = re.compile(r"^(?P<id>\S+)(?:\s+exp:(?P<exp>\S+))?\s*$")
_FIELD = re.compile(r"^#\s*(?P<key>[a-z-]+):\s*(?P<value>.*)$")


def problems(text: str, today: dt.date) -> list[str]:
    """One message per problem, naming the line; empty when every entry is sound."""
    found: list[str] = []
    fields: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            fields = {}
            continue
        if line.startswith("#"):
            match = _FIELD.match(line)
            if match and match["key"] in FIELDS:
                fields[match["key"]] = match["value"].strip()
            continue
        entry = _ENTRY.match(line)
        where = f"line {number} ({line.split()[0]})"
        if entry is None:
            found.append(f"{where}: not `ID exp:YYYY-MM-DD`")
        else:
            missing = [f for f in FIELDS if not fields.get(f)]
            if missing:
                found.append(f"{where}: missing {', '.join(f'# {m}:' for m in missing)}")
            found.extend(f"{where}: {p}" for p in _expiry_problems(entry["exp"], today))
        fields = {}
    return found


def _expiry_problems(exp: str | None, today: dt.date) -> list[str]:
    if exp is None:
        return ["no exp:YYYY-MM-DD"]
    try:
        date = dt.date.fromisoformat(exp)
    except ValueError:
        return [f"exp:{exp} is not a YYYY-MM-DD date"]
    if date < today:
        return [f"expired on {date}: fix, renew with a fresh review, or remove it"]
    if (date - today).days > MAX_DAYS:
        return [f"exp:{date} is more than {MAX_DAYS} days ahead"]
    return []


def main(argv: list[str] | None = None) -> int:
    path = Path(argv[0]) if argv else ROOT / ".trivyignore"
    found = problems(path.read_text(encoding="utf-8"), dt.datetime.now(dt.UTC).date())
    for problem in found:
        print(f"{path.name}: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
