"""The shipped operations files: Prometheus rules (promtool) and the Grafana dashboard."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from firewatch.observability import metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "rules_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "firewatch.json"

_NAME = re.compile(r"(?<![\"\w])(firewatch[a-zA-Z0-9_:]*)")  # not a label value
_HISTOGRAMS = {"firewatch_http_request_duration_seconds", "firewatch_detection_score"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 17 rules found" in result.stdout


def test_rules_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def recorded_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["record"] for g in groups for r in g["rules"] if "record" in r}


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [str(r["expr"]) for g in groups for r in g["rules"]]


def exposed(name: str) -> bool:
    """Whether ``name`` is a series firewatch exposes (histograms have three series)."""
    if name in metrics.METRIC_NAMES:
        return True
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix) and name.removesuffix(suffix) in _HISTOGRAMS:
            return True
    return False


def dashboard_expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [str(v) for k, v in node.items() if k in {"expr", "definition"}]
        for v in node.values():
            found += dashboard_expressions(v)
        return found
    if isinstance(node, list):
        return [e for item in node for e in dashboard_expressions(item)]
    return []


def referenced(expressions: list[str]) -> set[str]:
    return {m for e in expressions for m in _NAME.findall(e)}


def test_histogram_names_match_metrics_module() -> None:
    assert _HISTOGRAMS <= metrics.METRIC_NAMES


def test_dashboard_references_only_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = referenced(dashboard_expressions(dashboard))
    recorded = recorded_names()
    unknown = {n for n in names if not exposed(n) and n not in recorded}
    assert not unknown, f"dashboard uses metrics firewatch does not expose: {sorted(unknown)}"
    # and it shows every metric firewatch has (a new metric needs a panel)
    shown = {n.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for n in names}
    missing = metrics.METRIC_NAMES - shown
    assert not missing, f"metrics without a dashboard panel: {sorted(missing)}"


def test_rules_reference_only_metrics_that_exist() -> None:
    recorded = recorded_names()
    names = referenced(rule_expressions())
    unknown = {n for n in names if not exposed(n) and n not in recorded}
    assert not unknown, sorted(unknown)
    assert recorded, "the SLO alerts need their recording rules"
