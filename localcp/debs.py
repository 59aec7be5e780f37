"""Debian packages whose files go into images or the harness, never installed on the machine: pinned in
a list under hack/packages/ (name=version per line), fetched with `apt-get download` into a cache and
unpacked without running their scripts (no service starts, nothing registered)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .config import REPO

CACHE = REPO / ".cache" / "images" / "debs"


def pins(listing: Path) -> list[str]:
    """The ``name=version`` lines of a package list."""
    return [ln.strip() for ln in listing.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def _deb(pin: str) -> list[Path]:
    """The cached file of ``pin`` (apt-get download's name: name_version_arch.deb, ":" as %3a)."""
    name, version = pin.split("=")
    return list(CACHE.glob(f"{name}_{version.replace(':', '%3a')}_*.deb"))


def fetch(wanted: list[str]) -> list[Path]:
    """The .deb files of ``wanted``, downloaded once (needs Debian's archive: run outside the netns)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    missing = [pin for pin in wanted if not _deb(pin)]
    if missing:
        subprocess.run(["apt-get", "download", "-q", *missing], cwd=CACHE, check=True, capture_output=True)
    return [_deb(pin)[0] for pin in wanted]


def unpack(wanted: list[str], root: Path) -> None:
    """Unpack the files of ``wanted`` into ``root`` (no maintainer scripts)."""
    for deb in fetch(wanted):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
