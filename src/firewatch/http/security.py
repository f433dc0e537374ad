"""Security headers on every response, as a small ASGI middleware.

- ``Content-Security-Policy``: nothing may load by default; the API answers JSON.
  ``/docs`` (Swagger UI) gets a policy that lets it load its script and style.
- ``Strict-Transport-Security`` only when the request came over TLS (directly, or
  X-Forwarded-Proto from a trusted proxy): HSTS over plain HTTP is ignored anyway
  and would pin localhost development to HTTPS.
- ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` plus CSP
  ``frame-ancestors 'none'``, ``Referrer-Policy: no-referrer``,
  ``Cross-Origin-Opener-Policy``/``-Resource-Policy: same-origin``.
uvicorn runs with ``server_header=False``: no server name or version is sent.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from firewatch.http.client import Network, is_https

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect")

_STATIC = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


# What a response over plain HTTP with no trusted proxy carries (most of them): built once.
_PLAIN_API = (*_STATIC, (b"content-security-policy", API_CSP.encode()))
_PLAIN_DOCS = (*_STATIC, (b"content-security-policy", DOCS_CSP.encode()))


def response_headers(
    scope: Scope, *, trusted_proxies: Sequence[Network], hsts_max_age: int
) -> Sequence[tuple[bytes, bytes]]:
    """The headers every response to ``scope`` carries (used by the middleware, and by
    the 500 handler, whose answer is sent from outside every middleware)."""
    plain = _PLAIN_DOCS if scope["path"] in DOCS_PATHS else _PLAIN_API
    # fast path: plain HTTP with no trusted proxy configured cannot be HTTPS
    maybe_tls = scope.get("scheme") == "https" or bool(trusted_proxies)
    if not (hsts_max_age > 0 and maybe_tls and is_https(HTTPConnection(scope), trusted_proxies)):
        return plain
    return [*plain, (b"strict-transport-security", _hsts(hsts_max_age))]


def _hsts(max_age: int) -> bytes:
    return f"max-age={max_age}; includeSubDomains".encode()


class SecurityHeadersMiddleware:
    def __init__(
        self, app: ASGIApp, *, trusted_proxies: Sequence[Network], hsts_max_age: int
    ) -> None:
        self.app = app
        self.trusted_proxies = list(trusted_proxies)
        self.hsts_max_age = hsts_max_age

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = response_headers(
            scope, trusted_proxies=self.trusted_proxies, hsts_max_age=self.hsts_max_age
        )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # a header the route set itself (e.g. a stricter CSP) wins
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in added if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
