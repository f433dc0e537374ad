"""Keeping secrets and personal data out of logs: scrubbing and address pseudonyms."""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, MutableMapping
from typing import Any, Final

REDACTED: Final = "[redacted]"

#: Keys whose values are always secret, whatever they look like (compared lower-cased,
#: with ``-`` read as ``_``; a key *containing* one of these words is secret too).
SECRET_KEY_WORDS: Final = (
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "api_key",
    "apikey",
    "cookie",
    "credential",
    "private_key",
    "signature",
    "dsn",
    "database_url",
    "redis_url",
)

# key names whose value is a secret in ``key=value`` text (the words of SECRET_KEY_WORDS
# that can name a value in prose; "dsn" and cookies included)
_SENSITIVE_NAMES: Final = (
    r"password|passwd|secret|token|api[_-]?key|authorization|signature|cookie|"
    r"credential|private[_-]?key|dsn"
)

_PATTERNS: Final = (
    # Authorization header values: "Bearer abc", "Basic dXNlcjpwYXNz", "Token ..."
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + REDACTED),
    # firewatch API keys (fw_...) and refresh tokens (fwr_...)
    (re.compile(r"\bfwr?_[A-Za-z0-9_-]{8,}"), REDACTED),
    # JSON Web Tokens (header.payload.signature, base64url)
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    # credentials inside URLs: scheme://user:password@host, up to the authority's last
    # "@" (a password may hold an unencoded "@": the host follows the last one)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]*:[^/\s]*@"), r"\1" + REDACTED + "@"),
    # key="quoted value" / 'key': 'value' pairs whose key names a secret: the whole
    # quoted value, spaces and the other quote character included (password="it's x")
    *(
        (
            re.compile(
                r"(?i)([\"']?\b[a-z0-9_-]*(?:" + _SENSITIVE_NAMES + r")[a-z0-9_-]*[\"']?"
                r"\s*[=:]\s*" + quote + ")[^" + quote + r"\n]+" + quote
            ),
            r"\1" + REDACTED + quote,
        )
        for quote in ('"', "'")
    ),
    # key=value / "key": "value" pairs whose key names a secret
    (
        re.compile(
            r"(?i)([\"']?\b[a-z0-9_-]*(?:" + _SENSITIVE_NAMES + r")[a-z0-9_-]*[\"']?\s*[=:]\s*"
            r"[\"']?)[^\s\"'&,;}]+"
        ),
        r"\1" + REDACTED,
    ),
)


#: One search that every ASCII text a pattern above could change must match: each
#: pattern needs one of these literals. Most log values (routes, statuses, request ids,
#: timestamps) match none, and then one search replaces all the substitutions (scrubbing
#: was ~80% of an access log line's cost). The search runs on the lower-cased text
#: with a case-sensitive pattern (6x faster than ``(?i)``); only for ASCII text, since
#: ``re.IGNORECASE`` also equates some non-ASCII letters with ASCII ones (long s and
#: ``s``, dotless i and ``i``, the Kelvin sign and ``k``) that ``str.lower`` keeps apart.
_TRIGGER: Final = re.compile(
    r"bearer|basic|token|fw_|fwr_|eyj|://|password|passwd|secret|api[_-]?key|"
    r"authorization|signature|cookie|credential|private[_-]?key|dsn"
)


@functools.lru_cache(maxsize=1024)
def is_secret_key(key: str) -> bool:
    """Cached: log keys come from a small fixed set (field names in our own code)."""
    normalized = key.lower().replace("-", "_")
    return any(word in normalized for word in SECRET_KEY_WORDS)


def scrub_text(text: str) -> str:
    """``text`` with every recognisable secret replaced by ``[redacted]``."""
    if text.isascii() and _TRIGGER.search(text.lower()) is None:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


#: Values that can hold no secret, tested by exact type first: most of a log line
#: (statuses, durations, counts) is these, and the ABC checks below cost more.
_PLAIN_TYPES: Final = frozenset({int, float, bool, type(None)})


def scrub_value(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return scrub_text(value)
    if kind in _PLAIN_TYPES:
        return value
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and is_secret_key(k) else scrub_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub_value(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return scrub_text(bytes(value).decode("utf-8", "replace"))
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub_text(str(value))


def scrub_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: redact secret-named keys and secret-looking values."""
    for key in list(event_dict):
        if is_secret_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = scrub_value(event_dict[key])
    return event_dict


class Pseudonymizer:
    """Client address -> stable keyed pseudonym (``HMAC-SHA256(key, address)``, 16 hex).

    The same address maps to the same pseudonym while the key is unchanged, so one
    client's requests can be followed across log lines and workers, but the address
    cannot be recovered (nor found by hashing all IPv4 addresses) without the key.
    """

    def __init__(self, key: bytes | None = None):
        self._key = key if key else secrets.token_bytes(32)
        # Clients repeat: an HMAC per request was ~2% of a GET's CPU. The cache holds
        # addresses in this process's memory only, never in a log line.
        self._cached = functools.lru_cache(maxsize=4096)(self._pseudonym)

    def _pseudonym(self, address: str) -> str:
        digest = hmac.new(self._key, address.encode("utf-8", "replace"), hashlib.sha256)
        return "c_" + digest.hexdigest()[:16]

    def __call__(self, address: str) -> str:
        return self._cached(address)
