"""Figures of the guard's amounts (guard/budget.go), against the real core and guard:

- memory of usage tracking: the guard's RSS before and after its tenant holds 100k keys (the default key
  limit), per 100k keys;
- how fast a call is refused once the tenant is at a limit (client-side p50/p99 of refused puts);
- a noisy neighbour: tenant B's get latency idle, and while tenant A hammers over its request rate;
- what knowing the core's size costs: Status calls per guard replica and second, idle (far from the ceiling);
- watches from far back: the core's put latency while one client of a tenant creates and cancels watches
  50 000 revisions back (the core reads every change since to catch each one up; the guard charges them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import grpc
from ansible_collections.etcdproxy.operator.plugins.module_utils import etcdpb

from bench.stats import pct, rss_mib
from localcp.cluster import ControlPlane
from localcp.config import REPO
from localcp.etcdclient import KV, Client
from localcp.tenant import ProxyProcess

# Times puts straight to the core in a process of its own, so that the load's Python threads do not share
# its interpreter: argv endpoint, ca, cert, key, seconds; prints the latencies as JSON.
CORE_PUTS = """
import json, sys, time
from localcp.etcdclient import Client
endpoint, ca, cert, key, seconds = sys.argv[1:6]
out = []
with Client(endpoint, ca, cert, key) as core:
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        t0 = time.perf_counter()
        core.put(b"/bench-core-puts/%d" % (len(out) % 100), b"x" * 200)
        out.append(time.perf_counter() - t0)
print(json.dumps(out))
"""


def _ms(values: list[float], q: float) -> float:
    return round(pct(values, q) * 1000, 3)


def fill_to_key_limit(guard: ProxyProcess, files: tuple[str, str, str], limit: int) -> dict[str, float]:
    """Put small keys in Txns of 128 until the key limit refuses; RSS before/after; refusal latency."""
    before = rss_mib(guard.proc.pid)
    start_keys = int(guard.metric("etcdproxy_guard_tenant_keys"))
    with Client(guard.endpoint, *files) as c:
        txn = c.channel.unary_unary(KV + "Txn")
        i = 0
        while True:
            ops = [etcdpb.RequestOp(request_put=etcdpb.PutRequest(key=f"/fill/{i + j:07d}".encode(), value=b"v" * 16))
                   for j in range(128)]
            try:
                txn(etcdpb.TxnRequest(success=ops).SerializeToString(), timeout=30)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                if "write rate" in (exc.details() or ""):
                    time.sleep(0.5)  # back off like a client; the key limit is what we fill to
                    continue
                break
            i += 128
        deadline = time.monotonic() + 60
        while guard.metric("etcdproxy_guard_tenant_keys") < start_keys + i and time.monotonic() < deadline:
            time.sleep(0.2)
        keys = guard.metric("etcdproxy_guard_tenant_keys")
        after = rss_mib(guard.proc.pid)
        put = c.channel.unary_unary(KV + "Put")
        refused = []
        for n in range(300):
            req = etcdpb.PutRequest(key=f"/over/{n}".encode(), value=b"v").SerializeToString()
            t0 = time.perf_counter()
            try:
                put(req, timeout=10)
            except grpc.RpcError:
                refused.append(time.perf_counter() - t0)
    added = max(keys - start_keys, 1)
    return {"limit_keys_reached": keys, "limit_usage_rss_before_mib": before, "limit_usage_rss_after_mib": after,
            "limit_usage_rss_per_100k_keys_mib": round((after - before) * 100_000 / added, 1),
            "limit_refused_put_p50_ms": _ms(refused, 0.5), "limit_refused_put_p99_ms": _ms(refused, 0.99),
            "limit_refused_of_300": len(refused)}


def noisy_neighbour(noisy: ProxyProcess, noisy_files: tuple[str, str, str], quiet: ProxyProcess,
                    quiet_files: tuple[str, str, str], n: int = 3000, hammers: int = 8) -> dict[str, float]:
    """Tenant B's sequential gets, idle and while tenant A's clients hammer over A's request rate."""
    def gets() -> list[float]:
        out = []
        with Client(quiet.endpoint, *quiet_files) as c:
            get = c.channel.unary_unary(KV + "Range")
            req = etcdpb.RangeRequest(key=b"/bench/seq/1").SerializeToString()
            for _ in range(50):
                get(req, timeout=10)
            for _ in range(n):
                t0 = time.perf_counter()
                get(req, timeout=10)
                out.append(time.perf_counter() - t0)
        return out

    idle = gets()
    stop = threading.Event()
    counts = {"ok": 0, "refused": 0}
    lock = threading.Lock()

    def hammer() -> None:
        with Client(noisy.endpoint, *noisy_files) as c:
            get = c.channel.unary_unary(KV + "Range")
            req = etcdpb.RangeRequest(key=b"/x").SerializeToString()
            while not stop.is_set():
                try:
                    get(req, timeout=10)
                    key = "ok"
                except grpc.RpcError:
                    key = "refused"
                with lock:
                    counts[key] += 1

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(hammers)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    busy = gets()
    stop.set()
    for t in threads:
        t.join(30)
    seconds = time.monotonic() - t0
    return {"neighbour_get_idle_p50_ms": _ms(idle, 0.5), "neighbour_get_idle_p99_ms": _ms(idle, 0.99),
            "neighbour_get_noisy_p50_ms": _ms(busy, 0.5), "neighbour_get_noisy_p99_ms": _ms(busy, 0.99),
            "noisy_forwarded_per_s": round(counts["ok"] / seconds, 1),
            "noisy_refused_per_s": round(counts["refused"] / seconds, 1)}


def status_calls_per_replica_s(guard: ProxyProcess, seconds: float = 90.0) -> dict[str, float]:
    """Maintenance/Status calls one idle replica makes to learn the core's size (its own counter)."""
    name = "etcdproxy_guard_core_status_polls_total"
    before = guard.metric(name)
    time.sleep(seconds)  # an idle window is the measurement itself
    per = (guard.metric(name) - before) / seconds
    return {"core_status_calls_per_replica_s": round(per, 4),
            "core_status_calls_500x3_replicas_s": round(per * 1500, 1)}


def _core_puts(cp: ControlPlane, seconds: float) -> list[float]:
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'collections'}"}
    out = subprocess.run([sys.executable, "-c", CORE_PUTS, cp.etcd_endpoints[0], *map(str, cp.core_files()),
                          str(seconds)], capture_output=True, text=True, check=True, cwd=REPO, env=env)
    return json.loads(out.stdout)


def far_back_watches(cp: ControlPlane, guard: ProxyProcess, files: tuple[str, str, str], revisions: int = 50_000,
                     seconds: float = 15.0) -> dict[str, float]:
    """The core's put latency idle and while one client of the tenant creates and cancels watches on a key of
    its own from before ``revisions`` single-key revisions of other writes (~2 KiB each)."""
    with cp.core_client() as core:
        start = core.ranged(etcdpb.RangeRequest(key=b"/")).header.revision

    def write(w: int) -> None:
        with cp.core_client() as c:
            for k in range(revisions // 8):
                c.put(f"/bench-history/{w}/{k % 100}".encode(), b"v" * 2048)

    writers = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    idle = _core_puts(cp, seconds)
    stop = threading.Event()
    created = [0, 0]  # created, refused

    def churn() -> None:
        create = etcdpb.WatchRequest(create_request=etcdpb.WatchCreateRequest(
            key=b"/bench-far-back", start_revision=start + 1)).SerializeToString()
        with Client(guard.endpoint, *files) as c:
            while not stop.is_set():
                try:
                    stream = c.bidi("/etcdserverpb.Watch/Watch", iter([create]), timeout=10)
                    first = etcdpb.WatchResponse.FromString(next(stream))
                    stream.cancel()
                except grpc.RpcError:
                    created[1] += 1
                    continue
                created[1 if first.canceled else 0] += 1

    t = threading.Thread(target=churn, daemon=True)
    t.start()
    busy = _core_puts(cp, seconds)
    stop.set()
    t.join(30)
    return {"far_back_core_put_idle_p50_ms": _ms(idle, 0.5), "far_back_core_put_idle_p99_ms": _ms(idle, 0.99),
            "far_back_core_put_churn_p50_ms": _ms(busy, 0.5),
            "far_back_core_put_churn_p99_ms (goal: near idle)": _ms(busy, 0.99),
            "far_back_watches_created": created[0], "far_back_watches_refused": created[1]}
