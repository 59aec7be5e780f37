"""`make bench` must stay runnable (it is not part of `make test`); this runs its offline part.

In a fresh interpreter: pytest's conftest sets up imports the bench must manage on its own.
Nothing here looks at how fast anything is.
"""

from __future__ import annotations

import subprocess
import sys

from localcp.config import REPO

SNIPPET = """
import runpy
bench = runpy.run_path("bench/run.py", run_name="bench_run")
assert bench["issuance_ms"]("ecdsa", rounds=1) > 0
assert bench["pct"]([3.0, 1.0, 2.0], 0.5) == 2.0
print("bench ok")
"""


def test_bench_offline_part_runs_in_a_fresh_interpreter():
    out = subprocess.run([sys.executable, "-c", SNIPPET], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "bench ok" in out.stdout
