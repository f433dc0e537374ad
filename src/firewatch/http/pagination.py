"""Opaque keyset cursors: clients pass them back, never build them."""

from __future__ import annotations

import base64
import binascii

from firewatch.errors import BadRequestError

_PREFIX = "k1:"


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
        if not text.startswith(_PREFIX):
            raise ValueError(text)
        value = int(text[len(_PREFIX) :])
        if not 0 <= value < 2**63:
            raise ValueError(text)
    except (ValueError, UnicodeError, binascii.Error):
        raise BadRequestError("the cursor is not one this server issued") from None
    return value
