"""Shared test setup: the repo, plugins/module_utils (under both import names) and the runner plugin."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "hack" / "runner-http"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from hack import moduleutils  # noqa: E402

moduleutils.install()
