"""The hash chain, as pure functions (no I/O): canonical form, link hash, verification.

``hash[n] = SHA-256(hash[n-1] || canonical(entry[n]))`` with ``hash[0]`` 32 zero
bytes. The canonical form is sorted-key JSON of every recorded field plus the
entry's position (``seq``), so editing, dropping, inserting or reordering an entry
changes a hash that every later link depends on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

GENESIS = bytes(32)

FIELDS = (
    "id",
    "at",
    "actor",
    "actor_kind",
    "action",
    "target",
    "before_digest",
    "after_digest",
    "client",
    "outcome",
    "details",
)


def _at(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def canonical(entry: Mapping[str, Any], seq: int) -> bytes:
    doc = {name: entry[name] for name in FIELDS}
    doc["at"] = _at(entry["at"])
    doc["seq"] = seq
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def link_hash(prev_hash: bytes, entry: Mapping[str, Any], seq: int) -> bytes:
    return hashlib.sha256(prev_hash + canonical(entry, seq)).digest()


def digest(value: Any) -> str | None:
    """SHA-256 of a state snapshot (before/after), so the log proves it without holding it."""
    if value is None:
        return None
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class Link:
    seq: int
    prev_hash: bytes
    hash: bytes
    entry: Mapping[str, Any] | None  # None: the entry row is gone


@dataclass(frozen=True, slots=True)
class BrokenLink:
    seq: int
    entry_id: int | None
    reason: str

    def __str__(self) -> str:
        where = f"seq {self.seq}" + (f" (audit entry {self.entry_id})" if self.entry_id else "")
        return f"chain broken at {where}: {self.reason}"


@dataclass
class ChainWalker:
    """Verifies links fed in seq order, in batches; remembers where it stands."""

    expected_seq: int = 1
    prev_hash: bytes = GENESIS
    checked: int = 0

    def feed(self, links: Iterable[Link]) -> BrokenLink | None:
        for link in links:
            entry_id = None if link.entry is None else int(link.entry["id"])
            if link.seq != self.expected_seq:
                return BrokenLink(
                    self.expected_seq,
                    None,
                    f"link {self.expected_seq} is missing (next is {link.seq})",
                )
            if link.prev_hash != self.prev_hash:
                return BrokenLink(link.seq, entry_id, "prev_hash does not match the previous link")
            if link.entry is None:
                return BrokenLink(link.seq, entry_id, "the sealed entry is missing")
            if link_hash(self.prev_hash, link.entry, link.seq) != link.hash:
                return BrokenLink(
                    link.seq, entry_id, "the entry does not match its hash (edited after sealing)"
                )
            self.prev_hash = link.hash
            self.expected_seq += 1
            self.checked += 1
        return None
