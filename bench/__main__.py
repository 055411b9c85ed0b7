"""``bench/run`` (which sets up and calls ``python -m bench``): Cargohold, in one or more
configurations, and the reference registry side by side. See bench/README.md."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from bench.report import (
    REFERENCE,
    RunRecord,
    WorkloadRecord,
    errors,
    markdown_tables,
    other_load,
    proxy_comparison,
    summarize,
)
from bench.servers import CONFIGURATIONS, EMBEDDED, Backing, Cargohold, Reference, Side
from bench.workloads import FULL, QUICK, Bench, Probe, Workload, all_workloads

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description="Cargohold against the reference registry (distribution 2.8), interleaved.",
    )
    parser.add_argument("--rounds", type=int, help="rounds (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--workers", type=int, default=2, help="cargohold serve --workers N (default 2)"
    )
    parser.add_argument("--only", default="", help="comma-separated workload keys (default: all)")
    parser.add_argument(
        "--configurations",
        default="sqlite",
        help="comma-separated Cargohold configurations, each one more side:"
        f" {', '.join(CONFIGURATIONS)} (default: sqlite)",
    )
    parser.add_argument("--list", action="store_true", help="list the workload keys")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=ROOT / "bench" / ".work",
        help="where the servers keep their data (one disk for all); removed afterwards",
    )
    parser.add_argument(
        "--postgres-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the PostgreSQL server (e.g. synchronous_commit=off)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the data folders")
    parser.add_argument(
        "--results", type=Path, default=ROOT / "bench" / "results", help="where reports go"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra CARGOHOLD_* setting for the server (e.g. CARGOHOLD_FSYNC=false)",
    )
    args = parser.parse_args(argv)
    if args.rounds is not None and not 1 <= args.rounds <= 50:
        parser.error("--rounds must be between 1 and 50")
    if not 1 <= args.workers <= 64:
        parser.error("--workers must be between 1 and 64")
    names = [name.strip() for name in args.configurations.split(",") if name.strip()]
    unknown = sorted(set(names) - set(CONFIGURATIONS))
    if unknown or not names or len(set(names)) < len(names):
        parser.error(
            f"--configurations: distinct names of {', '.join(CONFIGURATIONS)}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    args.configurations = [CONFIGURATIONS[name] for name in names]
    return args


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine(workdir: Path) -> dict[str, Any]:
    cpuinfo = _read("/proc/cpuinfo")
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor(),
    )
    mem_kib = next(
        (
            int(line.split()[1])
            for line in _read("/proc/meminfo").splitlines()
            if "MemTotal" in line
        ),
        0,
    )
    df = subprocess.run(
        ["df", "-h", "--output=source,fstype,size", str(workdir)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout.splitlines()
    source, fstype, size = [*df[-1].split(), "?", "?", "?"][:3] if df else ("?", "?", "?")
    device = Path(source).name
    rotational = _read(f"/sys/block/{device}/queue/rotational").strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "disk": f"{source} ({fstype}, {size}, rotational={rotational or '?'})",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def tool_versions() -> dict[str, str]:
    versions = {}
    for name, argv in {
        "skopeo": ["skopeo", "--version"],
        "hey": ["dpkg-query", "-W", "-f=${Version}", "hey"],
    }.items():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            versions[name] = subprocess.run(
                argv, capture_output=True, text=True, timeout=30, check=False
            ).stdout.strip()
    return versions


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run_once(bench: Bench, workload: Workload, side: Side, round_: int) -> RunRecord:
    probe = Probe(side.roots(workload.anonymous), bench.all_server_processes(), side.services())
    try:
        result = workload.run(bench, side, round_, probe)
    except Exception as error:
        traceback.print_exc()
        message = str(error).strip().splitlines()
        return RunRecord(
            round_,
            None,
            probe.seconds,
            0.0,
            0.0,
            error=(message[0] if message else repr(error))[:500],
        )
    return RunRecord(
        round_,
        result.value,
        round(probe.seconds, 4),
        round(probe.usage.cpu_seconds, 3),
        round(probe.usage.peak_rss_mib, 1),
        result.detail,
        rss_growth_mib=round(max(probe.usage.peak_rss_mib - probe.usage.start_rss_mib, 0.0), 1),
        other_load=round(probe.usage.other_cpu_seconds / max(probe.seconds, 1e-9), 2),
        steal_seconds=round(probe.usage.steal_seconds, 2),
        service_cpu_seconds={
            name: round(usage.cpu_seconds, 3) for name, usage in probe.service_usage.items()
        },
    )


def side_names(cargoholds: list[Cargohold]) -> dict[str, str]:
    """Column names by side label: each configuration's name when there are several; alone,
    "Cargohold", with the configuration's name unless it is the embedded default."""
    names = {REFERENCE: "reference"}
    for cargohold in cargoholds:
        name = cargohold.configuration.name
        if len(cargoholds) == 1:
            name = "Cargohold" if cargohold.configuration == EMBEDDED else f"Cargohold {name}"
        names[cargohold.label] = name
    return names


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    workloads = all_workloads()
    if args.list:
        for workload in workloads:
            print(workload.key)
        return 0
    if args.only:
        keys = {key.strip() for key in args.only.split(",") if key.strip()}
        unknown = keys - {w.key for w in workloads}
        if unknown:
            print(f"unknown workloads: {', '.join(sorted(unknown))} (see --list)", file=sys.stderr)
            return 2
        workloads = [w for w in workloads if w.key in keys]
        if len(workloads) > 1 and any(w.alone for w in workloads):
            alone = ", ".join(w.key for w in workloads if w.alone)
            print(f"{alone}: run on its own (--only KEY)", file=sys.stderr)
            return 2
    else:
        workloads = [w for w in workloads if not w.alone]
    sizes = QUICK if args.quick else FULL
    rounds = args.rounds or (1 if args.quick else 3)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = args.workdir / stamp
    workdir.mkdir(parents=True)
    signal.signal(signal.SIGTERM, _terminate)
    began = time.monotonic()

    reference = Reference(workdir)
    backing = Backing(workdir, args.postgres_setting)
    cargoholds: list[Cargohold] = []
    info: dict[str, Any] = {}
    records: list[WorkloadRecord] = []
    try:
        with contextlib.ExitStack() as stack:
            print(f"bench: data in {workdir}", flush=True)
            load = os.getloadavg()[0]
            if load > 0.5:
                print(
                    f"bench: load average {load:.2f} before the start: other processes are"
                    " busy, and the results will be noisier (see 'other load')",
                    flush=True,
                )
            stack.callback(reference.stop)
            reference.start()
            stack.callback(backing.stop)
            backing.start(args.configurations)
            for configuration in args.configurations:
                cargohold = Cargohold(
                    workdir,
                    configuration=configuration,
                    backing=backing,
                    workers=args.workers,
                    proxy_of=reference.anonymous_url,
                )
                for setting in args.env:
                    name, _, value = setting.partition("=")
                    cargohold.extra_env[name] = value
                cargohold.configure()
                stack.callback(cargohold.stop)
                cargohold.start()
                cargoholds.append(cargohold)
            bench = Bench(sizes, workdir, reference, cargoholds, rounds)
            records = [
                WorkloadRecord(w.key, w.key, w.unit, {side.label: [] for side in bench.sides})
                for w in workloads
            ]
            info = {
                "started": stamp,
                "mode": "quick" if args.quick else "full",
                "rounds": rounds,
                "workers": cargoholds[0].workers,
                "configurations": {c.label: c.configuration.description for c in cargoholds},
                "cargohold_env": cargoholds[0].extra_env,
                "postgres_settings": args.postgres_setting,
                "machine": machine(workdir),
                "versions": {
                    "reference": reference.version(),
                    "cargohold": cargoholds[0].version(),
                    **backing.versions(),
                    **tool_versions(),
                },
                "sizes": sizes.__dict__,
            }
            print(f"bench: {info['versions']['reference']} and {info['versions']['cargohold']}")
            for label, description in info["configurations"].items():
                print(f"bench: {label}: {description}")
            print("bench: set-up (untimed)", flush=True)
            for workload, record in zip(workloads, records, strict=True):
                workload.setup(bench)
                record.title = workload.title
            print(f"bench: set-up done after {time.monotonic() - began:.0f} s", flush=True)
            for round_ in range(rounds):
                # Interleaved: each workload runs against every server before the next one,
                # and which server goes first turns from round to round.
                turn = round_ % len(bench.sides)
                sides: list[Side] = bench.sides[turn:] + bench.sides[:turn]
                for workload, record in zip(workloads, records, strict=True):
                    workload.prepare(bench, round_)
                    for side in sides:
                        run = run_once(bench, workload, side, round_)
                        record.runs[side.label].append(run)
                        shown = (
                            "ERROR " + (run.error or "")
                            if run.value is None
                            else (f"{run.value:,.1f} {workload.unit}")
                        )
                        print(
                            f"round {round_ + 1}/{rounds} {workload.key:<28} {side.label:<21}"
                            f" {shown}  ({run.seconds:.2f} s, cpu {run.cpu_seconds:.2f} s,"
                            f" rss {run.peak_rss_mib:.0f} MiB, other load {run.other_load:.2f})",
                            flush=True,
                        )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
            with contextlib.suppress(OSError):
                args.workdir.rmdir()

    rows = summarize(records)
    info["elapsed_seconds"] = round(time.monotonic() - began, 1)
    names = side_names(cargoholds)
    table = markdown_tables(rows, names)
    comparison = proxy_comparison(rows, names)
    failures = errors(rows)
    backing_versions = ", ".join(
        f"{name} {info['versions'][name]}"
        for name in ("postgresql", "moto")
        if name in info["versions"]
    )
    md = [
        f"# Cargohold vs reference registry, {stamp} ({info['mode']}, {rounds} round(s))",
        "",
        f"- machine: {info['machine']['nproc']} cores, {info['machine']['cpu_model']},"
        f" {info['machine']['memory_gib']} GiB RAM, disk {info['machine']['disk']}",
        f"- reference: {info['versions']['reference']}; Cargohold: {info['versions']['cargohold']}",
        *([f"- under Cargohold: {backing_versions}"] if backing_versions else []),
        *[
            f"- {names[c.label]}: Cargohold on {c.configuration.description}"
            for c in cargoholds
            if len(cargoholds) > 1
        ],
        f"- elapsed: {info['elapsed_seconds']:.0f} s",
        "",
        "Every value is a rate: **higher is better**; Cargohold / reference ≥ 1.00 means"
        " Cargohold is at least as fast (ratios below 1.00 in bold). CPU s: the median CPU"
        " seconds the server's processes spent in one run; peak RSS: the largest VmHWM,"
        " summed over the server's processes, in any run, and (+N) the most it grew during"
        " one run.",
        *(
            [
                "PostgreSQL and moto CPU s: the median CPU seconds the servers Cargohold runs"
                " on spent in one run, apart from Cargohold's own (moto, the local S3 server,"
                " is a Python server: far slower than a real object store)."
            ]
            if backing_versions
            else []
        ),
        "",
        table,
        "",
        other_load(rows),
        "",
    ]
    if comparison:
        md += [comparison, ""]
    if failures:
        md += ["Errors:", "", *[f"- {f}" for f in failures], ""]
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{stamp}.md").write_text("\n".join(md))
    (args.results / f"{stamp}.json").write_text(
        json.dumps({**info, "workloads": rows}, indent=2, default=str) + "\n"
    )
    print()
    print("\n".join(md))
    print(f"bench: wrote {args.results / stamp}.md and .json")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
