"""The HTTP methods observability keeps by name (semantic conventions' known methods).

A request's method comes from the client. In span attributes and metric labels, any
method outside :data:`KNOWN_METHODS` is written as :data:`OTHER_METHOD`, so a client
that invents methods cannot add span names or metric series.
"""

from __future__ import annotations

from typing import Final

KNOWN_METHODS: Final = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
OTHER_METHOD: Final = "_OTHER"
