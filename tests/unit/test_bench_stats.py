"""The benchmark's memory figures are the measured process's own."""

from __future__ import annotations

import multiprocessing

from bench.stats import peak_rss_mib


def _report(out) -> None:  # in a child started by fork and exec ("spawn"), as bench/backup.py starts its own
    import resource

    out.put((peak_rss_mib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def test_a_spawned_childs_peak_is_its_own_not_its_parents():
    held = bytearray(300 << 20)  # the parent is large when it starts the child
    held[::4096] = b"x" * len(held[::4096])  # touched, so resident
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=_report, args=(out,))
    child.start()
    own, inherited = out.get(timeout=60)
    child.join()
    assert own < 100, own
    # What getrusage says in the same child (it carries the parent's size across the fork): why it is not used.
    assert inherited > 300, inherited
