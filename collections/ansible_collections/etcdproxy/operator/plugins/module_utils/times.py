"""Durations and timestamps, each in the one format the Kubernetes API and Go use.

Go durations (``730h``, ``1h30m``, ``90s``) are what the CRD, the operator's settings and
ansible-operator accept; timestamps are RFC 3339 in UTC to the second, as the API writes them.
"""

from __future__ import annotations

import datetime

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_go_duration(text: str) -> datetime.timedelta:
    """A Go duration such as ``730h``, ``1h30m`` or ``90s``; ValueError otherwise."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    total, i = 0.0, 0
    while i < len(s):
        j = i
        while j < len(s) and (s[j].isdigit() or s[j] == "."):
            j += 1
        if j == i:
            raise ValueError(f"invalid duration {text!r}")
        number = float(s[i:j])
        for unit in ("ns", "us", "µs", "ms", "s", "m", "h"):
            if s.startswith(unit, j) and not (unit == "m" and s.startswith("ms", j)):
                total += number * _UNITS[unit]
                i = j + len(unit)
                break
        else:
            raise ValueError(f"invalid duration {text!r}: missing unit")
    return datetime.timedelta(seconds=total)


def rfc3339(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def duration_seconds(text: str, what: str) -> int:
    """A Go duration in whole seconds (rounded up); ValueError naming ``what`` otherwise."""
    try:
        seconds = parse_go_duration(text).total_seconds()
    except ValueError as exc:
        raise ValueError(f"{what} {text!r} is not a Go duration such as 30s, 1m30s or 1h") from exc
    return int(-(-seconds // 1))
