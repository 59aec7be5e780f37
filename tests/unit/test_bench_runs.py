"""`make bench` must stay runnable (it is not part of `make test`); this checks its offline part runs.

Nothing here looks at how fast anything is.
"""

from __future__ import annotations

import importlib.util

from hack.localcp.cluster import REPO


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_issuance_and_percentiles_run():
    bench = load_bench()
    assert bench.issuance_ms("ecdsa", rounds=1) > 0
    assert bench.pct([3.0, 1.0, 2.0], 0.5) == 2.0
    assert bench.pct([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 0.9) == 9.0
