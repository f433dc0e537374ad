"""The single ``current_principal`` dependency that every /api/v1 route uses.

Until real authentication is configured, firewatch serves only this machine: the
server refuses to bind a non-loopback address (see cli.serve), and this dependency
admits requests from loopback peers only, as the local operator. There is no fake
user and no default credential; the security feature replaces this function.
"""

from __future__ import annotations

import ipaddress

from fastapi import Request

from firewatch.auth.principal import Principal
from firewatch.errors import UnauthorizedError

LOCAL_OPERATOR = Principal(subject="local-operator", kind="local", role="admin")


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def current_principal(request: Request) -> Principal:
    client = request.client
    if client is not None and _is_loopback(client.host):
        return LOCAL_OPERATOR
    raise UnauthorizedError("authentication is not configured; only local access is allowed")
