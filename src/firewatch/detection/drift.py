"""Population stability index (PSI) between a reference and a recent window. Pure.

Bins are the deciles of the reference window (duplicate edges merged; the outer
bins are open-ended), so each bin holds about 10% of the reference. With ``e_i``
and ``a_i`` the shares of reference and recent points in bin ``i`` (each floored at
1e-4 so empty bins stay finite):

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i)

Thresholds (the usual credit-scoring convention): PSI < 0.1 **stable**,
0.1 <= PSI < 0.25 **moderate** shift, PSI >= 0.25 **significant** shift.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MODERATE = 0.1
SIGNIFICANT = 0.25
BINS = 10
FLOOR = 1e-4
MIN_POINTS = 20


def level(psi: float) -> str:
    if psi >= SIGNIFICANT:
        return "significant"
    if psi >= MODERATE:
        return "moderate"
    return "stable"


def psi(reference: Any, recent: Any, bins: int = BINS) -> dict[str, Any]:
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(recent, dtype=np.float64)
    if len(ref) < MIN_POINTS or len(cur) < MIN_POINTS:
        raise ValueError(
            f"PSI needs at least {MIN_POINTS} points in each window "
            f"(reference {len(ref)}, recent {len(cur)})"
        )
    inner = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = np.concatenate([[-np.inf], inner, [np.inf]])
    e = np.histogram(ref, edges)[0] / len(ref)
    a = np.histogram(cur, edges)[0] / len(cur)
    e = np.maximum(e, FLOOR)
    a = np.maximum(a, FLOOR)
    value = float(np.sum((a - e) * np.log(a / e)))
    return {
        "psi": round(value, 4),
        "level": level(value),
        "bins": len(edges) - 1,
        "reference_share": [round(float(x), 4) for x in e],
        "recent_share": [round(float(x), 4) for x in a],
    }
