"""Security headers, CORS allowlist, trusted proxies, no server header."""

from __future__ import annotations

import ipaddress

import httpx
from fastapi import FastAPI
from starlette.requests import Request

from firewatch.app import create_app
from firewatch.http.client import client_address, is_https
from firewatch.settings import Settings


async def test_security_headers_on_api_and_errors(client: httpx.AsyncClient) -> None:
    for r in (await client.get("/api/v1/incidents"), await client.get("/api/v1/nowhere")):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert "strict-transport-security" not in r.headers  # plain HTTP
        assert "server" not in r.headers
        assert "access-control-allow-origin" not in r.headers


async def test_cors_is_off_by_default(client: httpx.AsyncClient) -> None:
    r = await client.options(
        "/api/v1/incidents",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in r.headers


async def test_cors_allowlist_and_hsts_behind_a_trusted_proxy(settings: Settings) -> None:
    app: FastAPI = create_app(
        settings.model_copy(
            update={
                "cors_origins": ["https://ops.example.com"],
                "trusted_proxies": [ipaddress.ip_network("10.0.0.0/8")],
            }
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://fw") as c:
            ok = await c.options(
                "/api/v1/incidents",
                headers={
                    "Origin": "https://ops.example.com",
                    "Access-Control-Request-Method": "GET",
                },
            )
            assert ok.headers["access-control-allow-origin"] == "https://ops.example.com"
            evil = await c.options(
                "/api/v1/incidents",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
            )
            assert "access-control-allow-origin" not in evil.headers
            tls = await c.get("/healthz", headers={"X-Forwarded-Proto": "https"})
            assert tls.headers["strict-transport-security"].startswith("max-age=31536000")


def _request(peer: str, headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {
        "type": "http",
        "client": (peer, 1),
        "headers": raw,
        "scheme": "http",
        "server": ("fw", 80),
        "path": "/",
        "query_string": b"",
    }
    return Request(scope)


def test_forwarded_for_is_honoured_only_from_trusted_proxies() -> None:
    proxies = [ipaddress.ip_network("10.0.0.0/8")]
    spoof = {"X-Forwarded-For": "1.2.3.4"}
    assert client_address(_request("203.0.113.9", spoof), proxies) == "203.0.113.9"
    assert client_address(_request("203.0.113.9", spoof), []) == "203.0.113.9"
    assert client_address(_request("10.0.0.5", spoof), proxies) == "1.2.3.4"
    chain = {"X-Forwarded-For": "6.6.6.6, 198.51.100.7, 10.0.0.9"}
    # the client-supplied left part is not trusted: the first untrusted hop from the right
    assert client_address(_request("10.0.0.5", chain), proxies) == "198.51.100.7"
    assert client_address(_request("10.0.0.5", {"X-Forwarded-For": "junk"}), proxies) == "10.0.0.5"
    assert not is_https(_request("203.0.113.9", {"X-Forwarded-Proto": "https"}), proxies)
    assert is_https(_request("10.0.0.5", {"X-Forwarded-Proto": "https"}), proxies)


async def test_security_headers_on_an_unexpected_500(settings: Settings) -> None:
    """Starlette answers an unhandled exception from its outermost layer, past every
    middleware: the 500 used to leave without CSP, nosniff or X-Frame-Options."""
    app: FastAPI = create_app(settings)

    @app.get("/api/v1/test-boom", include_in_schema=False)
    async def boom() -> None:
        raise RuntimeError("boom-internal-detail")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://firewatch.test") as c,
    ):
        r = await c.get("/api/v1/test-boom")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "boom-internal-detail" not in r.text
