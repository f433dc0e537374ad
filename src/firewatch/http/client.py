"""The client address of a request, honouring X-Forwarded-For from trusted proxies only.

uvicorn runs with ``proxy_headers=False``, so the ASGI peer is the TCP peer. When
that peer is a configured proxy, X-Forwarded-For is read right to left, skipping
trusted proxies; the first untrusted address is the client. A header from anyone
else is ignored: it would let any caller choose the address that rate limits and
audit records see.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.requests import HTTPConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, nets: Sequence[Network]
) -> bool:
    return any(address in net for net in nets)


def client_address(conn: HTTPConnection, trusted_proxies: Sequence[Network]) -> str | None:
    peer = conn.client.host if conn.client else None
    if peer is None or not trusted_proxies:
        return peer
    current = _parse(peer)
    if current is None or not _trusted(current, trusted_proxies):
        return peer
    forwarded = ",".join(conn.headers.getlist("x-forwarded-for"))
    for hop in reversed([h for h in forwarded.split(",") if h.strip()]):
        address = _parse(hop)
        if address is None:
            return str(current)  # garbage in the chain: stop at the last sound hop
        if not _trusted(address, trusted_proxies):
            return str(address)
        current = address
    return str(current)


def is_https(conn: HTTPConnection, trusted_proxies: Sequence[Network]) -> bool:
    """TLS terminated here, or (from a trusted proxy) X-Forwarded-Proto: https."""
    if conn.url.scheme == "https":
        return True
    peer = _parse(conn.client.host) if conn.client else None
    if peer is None or not _trusted(peer, trusted_proxies):
        return False
    proto = conn.headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
    return proto == "https"
