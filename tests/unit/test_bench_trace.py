"""bench/trace.py reads ansible-runner's kept artifacts into one timeline: runs numbered in the order they
started (artifact directory names are random), tasks named without the tenant's name, skipped tasks left out."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench.trace import runner_steps


def write_run(base: Path, ident: str, events: list[tuple[str, str, dict]], rc_at: float) -> None:
    run = base / "t-1" / "artifacts" / ident
    (run / "job_events").mkdir(parents=True)
    for counter, (kind, created, data) in enumerate(events, 1):
        (run / "job_events" / f"{counter}-x.json").write_text(
            json.dumps({"counter": counter, "event": kind, "created": created, "event_data": data}))
    (run / "rc").write_text("0")
    os.utime(run / "rc", (rc_at, rc_at))


def test_runs_are_numbered_by_their_start_and_tasks_are_named_without_the_tenant(tmp_path: Path) -> None:
    task = {"task_action": "etcdproxy.operator.etcdstorage_reconcile", "task": "Certificates for t-1"}
    skipped = {"task_action": "kubernetes.core.k8s", "task": "Apply"}
    write_run(tmp_path, "111", [("playbook_on_start", "2026-11-28T10:00:05+00:00", {}),
                                ("playbook_on_stats", "2026-11-28T10:00:06+00:00", {})], rc_at=1795860006.5)
    write_run(tmp_path, "999", [
        ("playbook_on_start", "2026-11-28T10:00:00+00:00", {}),
        ("runner_on_start", "2026-11-28T10:00:01+00:00", task),
        ("runner_on_ok", "2026-11-28T10:00:02+00:00", task),
        ("runner_on_start", "2026-11-28T10:00:02.5+00:00", skipped),
        ("runner_on_skipped", "2026-11-28T10:00:02.6+00:00", skipped),
        ("playbook_on_stats", "2026-11-28T10:00:03+00:00", {}),
    ], rc_at=1795860003.5)
    (tmp_path / "t-1" / "artifacts" / "latest").symlink_to(tmp_path / "t-1" / "artifacts" / "111")

    steps = [what for _, what in sorted(runner_steps("t-1", tmp_path))]

    assert steps == [
        "run 1: playbook starts",
        "run 1: etcdproxy.operator.etcdstorage_reconcile (Certificates for <name>) starts",
        "run 1: etcdproxy.operator.etcdstorage_reconcile (Certificates for <name>) ends",
        "run 1: playbook ends",
        "run 1: runner writes rc",
        "run 2: playbook starts",
        "run 2: playbook ends",
        "run 2: runner writes rc",
    ]
