"""Medians, ranges and ratios of the runs, as JSON and as a markdown table."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

SIDES = ("reference", "cargohold")


@dataclass
class RunRecord:
    round: int
    value: float | None
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    rss_growth_mib: float = 0.0
    """Peak RSS during the run minus the RSS at its start."""
    other_load: float = 0.0
    """Cores that other processes on the machine kept busy during the run, on average."""
    steal_seconds: float = 0.0


@dataclass
class WorkloadRecord:
    key: str
    title: str
    unit: str
    runs: dict[str, list[RunRecord]] = field(default_factory=lambda: {s: [] for s in SIDES})


def _summary(runs: list[RunRecord]) -> dict[str, Any]:
    values = [r.value for r in runs if r.value is not None]
    cpu = [r.cpu_seconds for r in runs if r.error is None]
    rss = [r.peak_rss_mib for r in runs if r.error is None]
    return {
        "median": statistics.median(values) if values else None,
        "min": min(values) if values else None,
        "max": max(values) if values else None,
        "cpu_seconds_median": statistics.median(cpu) if cpu else None,
        "peak_rss_mib_max": max(rss) if rss else None,
        "rss_growth_mib_max": max(
            (r.rss_growth_mib for r in runs if r.error is None), default=None
        ),
        "errors": [f"round {r.round}: {r.error}" for r in runs if r.error],
        "runs": [asdict(r) for r in runs],
    }


def summarize(records: list[WorkloadRecord]) -> list[dict[str, Any]]:
    rows = []
    for record in records:
        sides = {side: _summary(record.runs[side]) for side in SIDES}
        ref, cargo = sides["reference"]["median"], sides["cargohold"]["median"]
        loads = [r.other_load for side in SIDES for r in record.runs[side]]
        rows.append(
            {
                "key": record.key,
                "title": record.title,
                "unit": record.unit,
                "higher_is_better": True,
                **sides,
                "ratio": cargo / ref if ref and cargo is not None else None,
                "other_load_max": max(loads) if loads else None,
            }
        )
    return rows


def other_load(rows: list[dict[str, Any]]) -> str:
    loads = [run["other_load"] for row in rows for side in SIDES for run in row[side]["runs"]]
    if not loads:
        return ""
    return (
        f"Other processes on the machine kept {statistics.median(loads):.2f} cores busy"
        f" during the median run ({max(loads):.2f} at most): the last column shows the"
        " most per workload; runs with other load are noisier."
    )


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(side: dict[str, Any]) -> str:
    if side["median"] is None:
        return "error"
    text = f"{_number(side['median'])} ({_number(side['min'])}-{_number(side['max'])})"
    return text + (" ⚠" if side["errors"] else "")


def _ratio(row: dict[str, Any]) -> str:
    ratio = row["ratio"]
    if ratio is None:
        return "-"
    return f"**{ratio:.2f}**" if ratio < 1.0 else f"{ratio:.2f}"


def _rss(side: dict[str, Any]) -> str:
    if side["peak_rss_mib_max"] is None:
        return "-"
    return f"{side['peak_rss_mib_max']:.0f} (+{side['rss_growth_mib_max']:.0f})"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| workload | unit | reference: median (min-max) | Cargohold: median (min-max)"
        " | Cargohold / reference | CPU s ref / Cargohold | peak RSS MiB ref / Cargohold"
        " | other load |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ref, cargo = row["reference"], row["cargohold"]
        lines.append(
            f"| {row['title']} | {row['unit']} | {_cell(ref)} | {_cell(cargo)} | {_ratio(row)}"
            f" | {_number(ref['cpu_seconds_median'])} / {_number(cargo['cpu_seconds_median'])}"
            f" | {_rss(ref)} / {_rss(cargo)}"
            f" | {_number(row['other_load_max'])} |"
        )
    return "\n".join(lines)


def proxy_comparison(rows: list[dict[str, Any]]) -> str | None:
    by_key = {row["key"]: row for row in rows}
    warm, hosted = by_key.get("proxy-pull-warm"), by_key.get("hosted-pull-proxied-image")
    if warm is None or hosted is None:
        return None
    w, h = warm["cargohold"]["median"], hosted["cargohold"]["median"]
    if not w or not h:
        return None
    return (
        f"Warm proxy pull / hosted pull of the same image, both Cargohold:"
        f" {_number(w)} / {_number(h)} MiB/s = **{w / h:.2f}**"
    )


def errors(rows: list[dict[str, Any]]) -> list[str]:
    found = []
    for row in rows:
        for side in SIDES:
            found += [f"{row['key']} ({side}) {e}" for e in row[side]["errors"]]
    return found
