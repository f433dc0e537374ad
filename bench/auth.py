"""Headers that authenticate the bench against firewatch's /api/v1.

Until authentication lands on main, firewatch admits loopback callers as the local
operator, so no header is needed. When it lands, this is the one place to mint a
token with firewatch's own helper.
"""

from __future__ import annotations


def api_headers(database_url: str) -> dict[str, str]:
    """Headers for /api/v1 requests to a firewatch using ``database_url``."""
    del database_url  # needed once tokens are minted against the server's database
    return {}
