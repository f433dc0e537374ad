"""PSI drift: the pure formula, the API, and the optional incident."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY

from firewatch.detection import drift, service
from firewatch.runtime.database import PgPool
from firewatch.settings import Settings
from tests.detection.helpers import API, points, post, register, unique_stream


def _opened() -> dict[str, float]:
    """firewatch_incidents_opened_total by severity, in this process."""
    return {
        sev: REGISTRY.get_sample_value("firewatch_incidents_opened_total", {"severity": sev}) or 0.0
        for sev in ("SEV1", "SEV2", "SEV3", "SEV4")
    }


def test_psi_levels() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 5000)
    assert drift.psi(base, rng.normal(0, 1, 1000))["level"] == "stable"
    shifted = drift.psi(base, rng.normal(1, 1, 1000))
    assert shifted["level"] == "significant"
    assert shifted["psi"] > 0.25
    assert sum(shifted["reference_share"]) == pytest.approx(1.0, abs=1e-3)
    # identical distributions: every bin share equal, PSI 0
    assert drift.psi(base, base)["psi"] == 0.0
    with pytest.raises(ValueError, match="at least 20"):
        drift.psi(base, base[:5])


async def test_drift_endpoint_and_incident(
    client: httpx.AsyncClient, pool: PgPool, settings: Settings
) -> None:
    name = unique_stream("drift")
    await register(client, name, labels={"category": "data_quality"})
    rng = np.random.default_rng(1)
    now = datetime.now(UTC).timestamp()
    ref_epochs = now - 86400 - 600 * np.arange(1, 800)  # the 5.5 days before the last day
    cur_epochs = now - 600 * np.arange(1, 140)  # the last day
    await post(client, points(name, rng.normal(10, 1, len(ref_epochs)), ref_epochs))
    await post(client, points(name, rng.normal(12, 1, len(cur_epochs)), cur_epochs))
    r = await client.get(f"{API}/streams/{name}/drift")
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["level"] == "significant"
    assert data["reference"]["points"] == len(ref_epochs)
    assert data["recent"]["points"] == len(cur_epochs)
    checked = await client.post(f"{API}/streams/{name}/drift/check")
    assert checked.json()["incident"] is None  # FIREWATCH_DRIFT_OPENS_INCIDENT is off
    on = settings.model_copy(update={"drift_opens_incident": True})
    opened_before = _opened()
    opened = await service.drift(pool, on, name, reference=_days(7), recent=_days(1), check=True)
    assert opened["incident_created"] is True
    again = await service.drift(pool, on, name, reference=_days(7), recent=_days(1), check=True)
    assert (again["incident"], again["incident_created"]) == (opened["incident"], False)
    incident = (await client.get(f"/api/v1/incidents/{opened['incident']}")).json()
    assert incident["category"] == "data_drift"
    # counted once in firewatch_incidents_opened_total, as any opened incident is
    after = _opened()
    assert {k: after[k] - opened_before[k] for k in after} == {
        k: float(k == incident["severity"]) for k in after
    }
    bad = await client.get(f"{API}/streams/{name}/drift", params={"recent": "1w"})
    assert bad.status_code == 422
    empty = unique_stream("nodrift")
    await register(client, empty)
    assert (await client.get(f"{API}/streams/{empty}/drift")).status_code == 422


def _days(n: int) -> timedelta:
    return timedelta(days=n)
