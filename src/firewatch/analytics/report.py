"""``firewatch report``: the analytics summary as rich tables on a terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def render(data: dict[str, Any], console: Console) -> None:
    window = data["window"]
    totals = data["totals"]
    console.print(
        f"[bold]firewatch report[/bold] {window['from']:%Y-%m-%d %H:%M}Z -> "
        f"{window['to']:%Y-%m-%d %H:%M}Z  (definitions: docs/metrics.md)"
    )
    console.print(
        f"incidents {totals['incidents']} · unacknowledged {totals['unacknowledged']} · "
        f"unresolved {totals['unresolved']} · reopened {totals['reopened']} · repeats "
        f"{data['repeats']['repeat_incidents']} (within {data['repeats']['within_days']:g}d)"
    )
    for dimension in ("severity", "category", "service", "team"):
        table = Table(title=f"by {dimension}", title_justify="left")
        table.add_column(dimension)
        table.add_column("incidents", justify="right")
        table.add_column("unacked", justify="right")
        for metric in ("MTTA", "TTM", "MTTR"):
            table.add_column(f"{metric} p50", justify="right")
            table.add_column(f"{metric} p90", justify="right")
        table.add_row(
            "all",
            str(totals["incidents"]),
            str(totals["unacknowledged"]),
            *_cells(data["mtta"], data["time_to_mitigate"], data["mttr"]),
            style="bold",
        )
        for row in data["by"][dimension]:
            table.add_row(
                row["key"],
                str(row["incidents"]),
                str(row["unacknowledged"]),
                *_cells(row["mtta"], row["time_to_mitigate"], row["mttr"]),
            )
        console.print(table)
    slo = Table(title="SLO breaches", title_justify="left")
    for col in ("severity", "incidents", "ack target", "ack breaches", "resolve target"):
        slo.add_column(col, justify="right")
    slo.add_column("resolve breaches", justify="right")
    for row in data["slo"]:
        slo.add_row(
            row["severity"],
            str(row["incidents"]),
            _duration(row["ack_target_seconds"]),
            "-" if row["ack_breaches"] is None else str(row["ack_breaches"]),
            _duration(row["resolve_target_seconds"]),
            "-" if row["resolve_breaches"] is None else str(row["resolve_breaches"]),
        )
    console.print(slo)


def _cells(*stats: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for s in stats:
        out += [_duration(s["p50_seconds"]), _duration(s["p90_seconds"])]
    return out
