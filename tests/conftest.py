"""Shared test setup: put the project's plain-Python code on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "plugins" / "module_utils", REPO / "hack" / "runner-http"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
