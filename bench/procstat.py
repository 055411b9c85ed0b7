"""CPU time and peak memory of a server's process tree, from /proc.

CPU seconds are utime + stime of every live process in the tree plus cutime + cstime (the
children each has waited for), in clock ticks. Peak RSS is VmHWM, summed over the tree
(several worker processes each hold their own memory); ``reset_peak`` writes ``5`` to each
process's ``clear_refs``, which sets VmHWM back to the current RSS, so that a peak can be
taken per workload.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after ``comm``: state is [0], ppid [1], utime [11]."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    return parents


def tree(roots: Iterable[int]) -> list[int]:
    """The live processes ``roots`` and everything below them."""
    parents = _parents()
    found = [pid for pid in roots if pid in parents]
    frontier = set(found)
    for _ in range(64):  # bounded: no process tree is this deep
        children = {pid for pid, parent in parents.items() if parent in frontier}
        children -= set(found)
        if not children:
            break
        found.extend(sorted(children))
        frontier = children
    return found


def cpu_seconds(roots: Iterable[int]) -> float:
    """User + system CPU of the tree so far, waited-for children included."""
    ticks = 0
    for pid in tree(roots):
        fields = _stat_fields(pid)
        if fields is not None:
            # utime, stime, cutime, cstime are fields 14-17 of stat, [11:15] here.
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / CLOCK_TICKS


def _status_kib(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def reset_peak(roots: Iterable[int]) -> None:
    for pid in tree(roots):
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_mib(roots: Iterable[int]) -> float:
    """Sum of VmHWM over the tree, in MiB."""
    return sum(_status_kib(pid, "VmHWM") for pid in tree(roots)) / 1024


def machine_busy_seconds() -> tuple[float, float]:
    """CPU seconds all cores have been busy since boot (user, nice, system, irq, softirq),
    and those stolen by the hypervisor, from the first line of /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """This process and the children it has waited for (hey, skopeo)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass
class Usage:
    cpu_seconds: float
    peak_rss_mib: float
    start_rss_mib: float = 0.0
    """The resident memory (summed) when the run began: peak - start is what it grew."""
    other_cpu_seconds: float = 0.0
    """What every other process on the machine used meanwhile (neither server, nor the
    benchmark and its clients): other work that competed for the cores."""
    steal_seconds: float = 0.0


class Meter:
    """CPU and peak RSS of a process tree over one stretch of time, and the CPU that
    processes outside ``known`` (every server process) and the benchmark itself used."""

    def __init__(self, roots: Iterable[int], known: Iterable[int] = ()) -> None:
        self.roots = list(roots)
        self.known = list(known)
        self._cpu_start = 0.0
        self._known_start = 0.0
        self._own_start = 0.0
        self._busy_start = (0.0, 0.0)
        self._rss_start = 0.0

    def start(self) -> None:
        reset_peak(self.roots)
        self._rss_start = peak_rss_mib(self.roots)  # just reset: the current RSS
        self._cpu_start = cpu_seconds(self.roots)
        self._known_start = cpu_seconds(self.known)
        self._own_start = own_cpu_seconds()
        self._busy_start = machine_busy_seconds()

    def stop(self) -> Usage:
        busy, steal = machine_busy_seconds()
        own = own_cpu_seconds() - self._own_start
        known = cpu_seconds(self.known) - self._known_start
        other = busy - self._busy_start[0] - own - known
        return Usage(
            cpu_seconds(self.roots) - self._cpu_start,
            peak_rss_mib(self.roots),
            self._rss_start,
            max(other, 0.0),
            steal - self._busy_start[1],
        )
