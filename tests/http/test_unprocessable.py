"""Every 422 names what it refuses (``errors``, items with ``field``), as the README's
Errors section and the 422 of /openapi.json say: the refusals raised by handlers and
services (password policy, If-Match, analytics windows, detection, ingestion), not
only request validation."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from firewatch.errors import UnprocessableError
from tests.conftest import IntegrationKey


def fields(r: httpx.Response) -> list[str]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == 422
    assert body["errors"], body
    return [e["field"] for e in body["errors"]]


def test_a_422_cannot_be_raised_without_naming_a_field() -> None:
    with pytest.raises(ValueError, match="names the field"):
        UnprocessableError("no field", field=[])
    e = UnprocessableError("too short", field="body.password")
    assert e.extensions["errors"] == [
        {
            "loc": ["body", "password"],
            "field": "body.password",
            "type": "value_error",
            "msg": "too short",
        }
    ]


async def test_password_policy(client: httpx.AsyncClient) -> None:
    name = f"p-{secrets.token_hex(4)}"
    r = await client.post(
        "/api/v1/users", json={"username": name, "role": "viewer", "password": "password1234"}
    )
    assert fields(r) == ["body.password"]
    r = await client.post(
        "/api/v1/users",
        json={"username": name, "role": "viewer", "password": f"xx-{name}-in-it-xx"},
    )
    assert fields(r) == ["body.password"]


async def test_if_match(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/incidents", json={"title": "if-match 422s", "severity": "SEV3"})
    assert r.status_code == 201, r.text
    url = f"/api/v1/incidents/{r.json()['id']}"
    r = await client.patch(url, json={"title": "x"}, headers={"If-Match": '"not-a-version"'})
    assert fields(r) == ["header.if-match"]
    r = await client.patch(url, json={"title": "x", "version": 7}, headers={"If-Match": '"6"'})
    assert fields(r) == ["header.if-match", "body.version"]
    r = await client.patch(url, json={"title": None, "version": 1})
    assert fields(r) == ["body.title"]


async def test_nul_in_query_parameters(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/incidents", params={"q": "a\x00b", "team": "ok"})
    assert fields(r) == ["query.q"]
    r = await client.get("/api/v1/analytics/summary", params={"service": "a\x00"})
    assert fields(r) == ["query.service"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"window": "7d", "from": "2026-01-01T00:00:00Z"},
            ["query.window", "query.from", "query.to"],
        ),
        ({"from": "2026-01-01T00:00:00Z"}, ["query.to"]),
        ({"to": "2026-01-01T00:00:00Z"}, ["query.from"]),
        ({"from": "2026-01-01T00:00:00", "to": "2026-02-01T00:00:00Z"}, ["query.from"]),
        (
            {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
            ["query.from", "query.to"],
        ),
        ({"window": "7 days"}, ["query.window"]),
    ],
)
async def test_analytics_windows(
    client: httpx.AsyncClient, params: dict[str, str], expected: list[str]
) -> None:
    assert fields(await client.get("/api/v1/analytics/summary", params=params)) == expected


async def test_detection(client: httpx.AsyncClient) -> None:
    name = f"unprocessable-{secrets.token_hex(4)}"
    r = await client.put(f"/api/v1/signals/streams/{name}", json={})
    assert r.status_code == 201, r.text
    base = f"/api/v1/signals/streams/{name}"
    assert fields(await client.post(f"{base}/models", json={"k": 5, "n": 3})) == [
        "body.k",
        "body.n",
    ]
    assert fields(await client.post(f"{base}/models", json={})) == ["body.since", "body.until"]
    r = await client.get(f"{base}/drift", params={"reference": "a week"})
    assert fields(r) == ["query.reference"]
    assert fields(await client.get(f"{base}/drift")) == ["query.reference", "query.recent"]
    r = await client.get(f"{base}/points", params={"to": "2026-01-01T00:00:00"})
    assert fields(r) == ["query.to"]


async def test_keys_and_logout(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient, integration_key: IntegrationKey
) -> None:
    r = await client.post(
        "/api/v1/integrations/keys", json={"name": "k", "scopes": ["users:admin"]}
    )
    assert fields(r) == ["body.scopes"]
    key = await integration_key(["alerts:write"])
    r = await anon_client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {key}"})
    assert fields(r) == ["header.authorization"]


async def test_ingested_payloads(
    anon_client: httpx.AsyncClient, integration_key: IntegrationKey
) -> None:
    headers = {"Authorization": f"Bearer {await integration_key(['alerts:write'])}"}
    url = "/api/v1/integrations/alertmanager"
    r = await anon_client.post(url, content=b"[1]", headers=headers)
    assert fields(r) == ["body"]
    payload = {
        "version": "3",
        "groupKey": "g",
        "status": "firing",
        "receiver": "firewatch",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "A"},
                "startsAt": "2026-01-01T00:00:00Z",
                "fingerprint": "f1",
            }
        ],
    }
    assert fields(await anon_client.post(url, json=payload, headers=headers)) == ["body.version"]
