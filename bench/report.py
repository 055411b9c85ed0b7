"""Medians, ranges and ratios of the runs, as JSON and as markdown tables.

Sides are named by label: ``reference`` and one per Cargohold configuration (``cargohold``
for the embedded default, SQLite and a folder; ``cargohold-<configuration>`` for others).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

REFERENCE = "reference"
EMBEDDED = "cargohold"
"""The label of Cargohold on SQLite and a folder: other configurations are compared to it."""


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
    service_cpu_seconds: dict[str, float] = field(default_factory=dict)
    """CPU of the servers the side runs on (PostgreSQL, moto), by name; not in cpu_seconds."""


@dataclass
class WorkloadRecord:
    key: str
    title: str
    unit: str
    runs: dict[str, list[RunRecord]]
    """By side label, the reference first."""


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _summary(runs: list[RunRecord]) -> dict[str, Any]:
    values = [r.value for r in runs if r.value is not None]
    measured = [r for r in runs if r.error is None]
    services = sorted({name for r in measured for name in r.service_cpu_seconds})
    return {
        "median": _median(values),
        "min": min(values) if values else None,
        "max": max(values) if values else None,
        "cpu_seconds_median": _median([r.cpu_seconds for r in measured]),
        "service_cpu_seconds_median": {
            name: _median([r.service_cpu_seconds.get(name, 0.0) for r in measured])
            for name in services
        },
        "peak_rss_mib_max": max((r.peak_rss_mib for r in measured), default=None),
        "rss_growth_mib_max": max((r.rss_growth_mib for r in measured), default=None),
        "errors": [f"round {r.round}: {r.error}" for r in runs if r.error],
        "runs": [asdict(r) for r in runs],
    }


def _ratio_of(value: float | None, base: float | None) -> float | None:
    return value / base if base and value is not None else None


def cargohold_labels(row: dict[str, Any]) -> list[str]:
    return [label for label in row["sides"] if label != REFERENCE]


def summarize(records: list[WorkloadRecord]) -> list[dict[str, Any]]:
    rows = []
    for record in records:
        sides = {label: _summary(runs) for label, runs in record.runs.items()}
        medians = {label: side["median"] for label, side in sides.items()}
        cargoholds = [label for label in sides if label != REFERENCE]
        ratios = {label: _ratio_of(medians[label], medians[REFERENCE]) for label in cargoholds}
        loads = [r.other_load for runs in record.runs.values() for r in runs]
        rows.append(
            {
                "key": record.key,
                "title": record.title,
                "unit": record.unit,
                "higher_is_better": True,
                "sides": list(sides),
                **sides,
                "ratio": ratios[cargoholds[0]],
                "ratios": ratios,
                # What a configuration costs against the embedded default, SQLite + folder.
                "ratios_to_embedded": {
                    label: _ratio_of(medians[label], medians[EMBEDDED])
                    for label in cargoholds
                    if EMBEDDED in sides and label != EMBEDDED
                },
                "other_load_max": max(loads) if loads else None,
            }
        )
    return rows


def other_load(rows: list[dict[str, Any]]) -> str:
    loads = [
        run["other_load"] for row in rows for side in row["sides"] for run in row[side]["runs"]
    ]
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


def _ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"**{ratio:.2f}**" if ratio < 1.0 else f"{ratio:.2f}"


def _rss(side: dict[str, Any]) -> str:
    if side["peak_rss_mib_max"] is None:
        return "-"
    return f"{side['peak_rss_mib_max']:.0f} (+{side['rss_growth_mib_max']:.0f})"


Row = dict[str, Any]
Column = tuple[str, Callable[[Row], str]]


def _column(header: str, render: Callable[[Any], str], *path: str) -> Column:
    """A column that renders what ``path`` leads to in a row (None where it ends early)."""

    def cell(row: Row) -> str:
        value: Any = row
        for key in path:
            value = None if value is None else value.get(key)
        return render(value)

    return header, cell


def _table(rows: list[Row], columns: list[Column], text_columns: int = 1) -> str:
    """The first ``text_columns`` are left-aligned text; the others are numbers."""
    lines = [
        "| " + " | ".join(header for header, _ in columns) + " |",
        "|" + "---|" * text_columns + "---:|" * (len(columns) - text_columns),
    ]
    lines += ["| " + " | ".join(cell(row) for _, cell in columns) + " |" for row in rows]
    return "\n".join(lines)


def _service_columns(rows: list[Row], names: dict[str, str], several: bool) -> list[Column]:
    """A column of CPU seconds for each server a Cargohold side runs on."""
    columns = []
    for label in list(names)[1:]:
        services = sorted({s for row in rows for s in row[label]["service_cpu_seconds_median"]})
        for service in services:
            header = f"{service} CPU s" + (f" ({names[label]})" if several else "")
            columns.append(_column(header, _number, label, "service_cpu_seconds_median", service))
    return columns


def markdown_tables(rows: list[Row], names: dict[str, str]) -> str:
    """``names``: each side's name in the headers, by label, the reference first. One
    Cargohold side: one table. Several: the rates and ratios, then the CPU and memory."""
    labels = list(names)
    cargoholds = labels[1:]
    several = len(cargoholds) > 1
    workload = _column("workload", str, "title")
    unit = _column("unit", str, "unit")
    rates = [_column(f"{names[label]}: median (min-max)", _cell, label) for label in labels]
    ratios = [
        _column(f"{names[label]} / {names[REFERENCE]}", _ratio, "ratios", label)
        for label in cargoholds
    ]
    if EMBEDDED in cargoholds:
        ratios += [
            _column(f"{names[label]} / {names[EMBEDDED]}", _ratio, "ratios_to_embedded", label)
            for label in cargoholds
            if label != EMBEDDED
        ]
    load = _column("other load", _number, "other_load_max")
    services = _service_columns(rows, names, several)
    if not several:
        short = " / ".join(["ref", names[cargoholds[0]]])
        cpu: Column = (
            f"CPU s {short}",
            lambda row: " / ".join(_number(row[s]["cpu_seconds_median"]) for s in labels),
        )
        rss: Column = (
            f"peak RSS MiB {short}",
            lambda row: " / ".join(_rss(row[s]) for s in labels),
        )
        return _table(rows, [workload, unit, *rates, *ratios, cpu, *services, rss, load], 2)
    cpus = [
        _column(f"CPU s {names[label]}", _number, label, "cpu_seconds_median") for label in labels
    ]
    rsses = [_column(f"peak RSS MiB {names[label]}", _rss, label) for label in labels]
    return (
        _table(rows, [workload, unit, *rates, *ratios, load], 2)
        + "\n\n"
        + _table(rows, [workload, *cpus, *services, *rsses])
    )


def proxy_comparison(rows: list[Row], names: dict[str, str]) -> str | None:
    by_key = {row["key"]: row for row in rows}
    warm, hosted = by_key.get("proxy-pull-warm"), by_key.get("hosted-pull-proxied-image")
    if warm is None or hosted is None:
        return None
    lines = []
    cargoholds = cargohold_labels(warm)
    for label in cargoholds:
        w, h = warm[label]["median"], hosted[label]["median"]
        if w and h:
            which = f" ({names[label]})" if len(cargoholds) > 1 else ""
            lines.append(
                f"Warm proxy pull / hosted pull of the same image, both Cargohold{which}:"
                f" {_number(w)} / {_number(h)} MiB/s = **{w / h:.2f}**"
            )
    return "\n\n".join(lines) or None


def errors(rows: list[Row]) -> list[str]:
    found = []
    for row in rows:
        for side in row["sides"]:
            found += [f"{row['key']} ({side}) {e}" for e in row[side]["errors"]]
    return found
