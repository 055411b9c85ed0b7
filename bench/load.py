"""Many small requests at a fixed concurrency, for a fixed time, with ``hey`` (Go: a client
that costs little CPU, the same against either server)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    requests_per_second: float
    statuses: dict[int, int]
    errors: dict[str, int]
    mean_latency_ms: float
    p99_latency_ms: float | None


def hey(
    url: str,
    *,
    method: str = "GET",
    seconds: float,
    concurrency: int,
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    binary = shutil.which("hey")
    if binary is None:
        raise RuntimeError("hey is not installed (bench/run installs it)")
    argv = [binary, "-z", f"{seconds:g}s", "-c", str(concurrency), "-m", method, "-t", "30"]
    argv += ["-disable-compression"]
    for key, value in (headers or {}).items():
        argv += ["-H", f"{key}: {value}"]
    argv.append(url)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, check=False)
    out = done.stdout
    if done.returncode != 0:
        raise RuntimeError(f"hey exited {done.returncode}: {done.stderr[-2000:]}")
    rate = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if rate is None:
        raise RuntimeError(f"hey printed no rate:\n{out[-2000:]}")
    statuses = {int(m[1]): int(m[2]) for m in re.finditer(r"\[(\d{3})\]\s+(\d+) responses", out)}
    errors: dict[str, int] = {}
    if "Error distribution:" in out:
        for line in out.split("Error distribution:", 1)[1].splitlines():
            match = re.match(r"\s*\[(\d+)\]\s+(.*)", line)
            if match:
                errors[match[2].strip()] = int(match[1])
    mean = re.search(r"Average:\s+([0-9.]+) secs", out)
    p99 = re.search(r"99% in ([0-9.]+) secs", out)
    return LoadResult(
        float(rate[1]),
        statuses,
        errors,
        float(mean[1]) * 1000 if mean else 0.0,
        float(p99[1]) * 1000 if p99 else None,
    )
