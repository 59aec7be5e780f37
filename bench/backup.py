"""Figures of per-tenant backup and restore (`make bench`; also runnable alone: python -m bench.backup).

A tenant of ~100 MB in the core etcd (values half random, half repetitive text, like serialized objects);
in the same run: `etcdctl get --prefix` of it (the reference), the backup of it at one revision over etcd's
gRPC API (module_utils/prefixcopy.py, coregrpc.py) and the restore of the artifact into an empty prefix.
Peak memory of backup and of restore is each measured in a child process, at two sizes, to show it does not
grow with the tenant. Goal (issue "backup"): at least half of etcdctl's throughput; memory flat in size.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ansible_collections.etcdproxy.operator.plugins.module_utils import coregrpc, etcdpb, keyspace, prefixcopy

from bench.stats import peak_rss_mib
from localcp.cluster import ControlPlane
from localcp.config import BIN_DIR, REPO

VALUE_BYTES = 4096


def fill(cp: ControlPlane, name: str, megabytes: int) -> int:
    """Write ~``megabytes`` MB under /<name>/ in transactions of 128 puts; the bytes written."""
    keys = megabytes * (1 << 20) // VALUE_BYTES
    written = 0
    with cp.core_client() as core:
        for start in range(0, keys, 128):
            ops = []
            for i in range(start, min(keys, start + 128)):
                value = os.urandom(VALUE_BYTES // 2) + (f"object {i} field value " * 200).encode()[:VALUE_BYTES // 2]
                key = f"/{name}//registry/things/ns-{i % 50}/obj-{i:08d}".encode()
                ops.append(etcdpb.RequestOp(request_put=etcdpb.PutRequest(key=key, value=value)))
                written += len(key) + len(value)
            core.txn(etcdpb.TxnRequest(success=ops))
    return written


def _child(action: str, base: str, name: str, path: str, material: tuple[str, str, str], out: object) -> None:
    """Runs in a child process so its peak RSS is its own."""
    t0 = time.monotonic()
    with coregrpc.connect(base, *material) as kv:
        if action == "backup":
            summary = prefixcopy.backup(kv, name, path)
        else:
            summary = prefixcopy.restore(kv, name, path)
    out.put({"seconds": time.monotonic() - t0, "bytes": summary["bytes"],  # type: ignore[attr-defined]
             "peak_rss_mib": peak_rss_mib()})


def measured(action: str, cp: ControlPlane, name: str, path: str) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(action, cp.etcd_endpoints[0], name, path, cp.core_material(), queue))
    proc.start()
    result = queue.get(timeout=900)
    proc.join()
    return result


def etcdctl_get_seconds(cp: ControlPlane, name: str) -> float:
    ca, cert, key = cp.core_files()
    t0 = time.monotonic()
    subprocess.run([str(BIN_DIR / "etcdctl"), f"--endpoints={cp.etcd_endpoints[0]}", f"--cacert={ca}",
                    f"--cert={cert}", f"--key={key}", "--command-timeout=300s", "get", "--prefix", f"/{name}/"],
                   check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def backup_figures(results: dict[str, object], megabytes: int = 100) -> None:
    cp = ControlPlane(workdir=REPO / ".cache" / "bench-backup")
    tmp = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    try:
        cp.start()
        small = fill(cp, "small", megabytes // 4)
        size = fill(cp, "big", megabytes)
        mb = size / 1e6
        reference = min(etcdctl_get_seconds(cp, "big") for _ in range(2))
        results["backup_tenant_mb"] = round(mb, 1)
        results["etcdctl_get_prefix_mb_per_s"] = round(mb / reference, 1)
        backup = measured("backup", cp, "big", str(tmp / "big.etcdbackup"))
        results["backup_mb_per_s (goal >= half of etcdctl's)"] = round(backup["bytes"] / 1e6 / backup["seconds"], 1)
        results["backup_artifact_mb"] = round((tmp / "big.etcdbackup").stat().st_size / 1e6, 1)
        restore = measured("restore", cp, "big-copy", str(tmp / "big.etcdbackup"))
        results["restore_mb_per_s (goal >= half of etcdctl's)"] = round(
            restore["bytes"] / 1e6 / restore["seconds"], 1)
        backup_small = measured("backup", cp, "small", str(tmp / "small.etcdbackup"))
        results[f"backup_peak_rss_mib at {small / 1e6:.0f} / {mb:.0f} MB (goal: flat)"] = (
            f"{backup_small['peak_rss_mib']:.0f} / {backup['peak_rss_mib']:.0f}")
        restore_small = measured("restore", cp, "small-copy", str(tmp / "small.etcdbackup"))
        results[f"restore_peak_rss_mib at {small / 1e6:.0f} / {mb:.0f} MB (goal: flat)"] = (
            f"{restore_small['peak_rss_mib']:.0f} / {restore['peak_rss_mib']:.0f}")
        with coregrpc.connect(cp.etcd_endpoints[0], *cp.core_material()) as kv:  # the copy is complete
            assert kv.count(keyspace.tenant_prefix("big-copy")) == kv.count(keyspace.tenant_prefix("big"))
    finally:
        cp.stop()
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()


if __name__ == "__main__":
    figures: dict[str, object] = {}
    backup_figures(figures, int(sys.argv[1]) if len(sys.argv) > 1 else 100)
    print(json.dumps(figures, indent=1))
