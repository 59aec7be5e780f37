"""Small helpers the benchmark's parts share."""

from __future__ import annotations

import json
from pathlib import Path


def _status_mib(pid: int | str, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB."""
    return _status_mib(pid, "VmRSS")


def peak_rss_mib(pid: int | str = "self") -> float:
    """The highest resident memory of a process's current program, MiB (VmHWM). Not getrusage's ru_maxrss,
    which a process started by fork and exec inherits from its parent's size at the fork."""
    return _status_mib(pid, "VmHWM")


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def print_figures(title: str, results: dict[str, object]) -> None:
    """A table (each figure beside its goal, where the key names one) and the same as one JSON line."""
    width = max(len(k) for k in results)
    print(f"\n{title} (figures only; nothing here gates CI)")
    for key, value in results.items():
        print(f"  {key:<{width}}  {value}")
    print(json.dumps(results))
