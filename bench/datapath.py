"""Data-path figures: the same client against core etcd directly, the stock grpc-proxy, and the guard.

- sequential put and get (one connection, one request at a time): p50/p99 latency;
- 16 concurrent clients (one connection each, grpc.aio in one process): puts and gets per second;
- the guard's RSS during that load;
- consistent LIST latency of a real tenant kube-apiserver behind the stock proxy vs behind the guard
  (the stock proxy forwards Status to the core, so the API server relies on watch progress requests,
  which the proxy drops).
The client is Python (grpcio): its own cost is in every figure alike, so compare ratios, not absolutes.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from pathlib import Path

import grpc
from ansible_collections.etcdproxy.operator.plugins.module_utils import etcdpb
from grpc import aio

from bench.stats import pct, rss_mib
from localcp.etcdclient import KV, Client

VALUE = b"v" * 256


def sequential(endpoint: str, files: tuple[str, str, str], n: int) -> dict[str, float]:
    with Client(endpoint, *files) as c:
        put, get = c.channel.unary_unary(KV + "Put"), c.channel.unary_unary(KV + "Range")
        puts, gets = [], []
        for _ in range(50):  # warm the connection
            put(etcdpb.PutRequest(key=b"/bench/warm", value=VALUE).SerializeToString(), timeout=10)
        for i in range(n):
            req = etcdpb.PutRequest(key=f"/bench/seq/{i % 100}".encode(), value=VALUE).SerializeToString()
            t0 = time.perf_counter()
            put(req, timeout=10)
            puts.append(time.perf_counter() - t0)
        for i in range(n):
            req = etcdpb.RangeRequest(key=f"/bench/seq/{i % 100}".encode()).SerializeToString()
            t0 = time.perf_counter()
            get(req, timeout=10)
            gets.append(time.perf_counter() - t0)
    ms = 1000.0
    return {"put_p50_ms": round(statistics.median(puts) * ms, 3), "put_p99_ms": round(pct(puts, 0.99) * ms, 3),
            "get_p50_ms": round(statistics.median(gets) * ms, 3), "get_p99_ms": round(pct(gets, 0.99) * ms, 3)}


async def _concurrent(target: str, creds: grpc.ChannelCredentials, clients: int, per_client: int,
                      method: str) -> float:
    def request(key: bytes) -> bytes:
        msg = etcdpb.RangeRequest(key=key) if method == "Range" else etcdpb.PutRequest(key=key, value=VALUE)
        return msg.SerializeToString()

    channels = [aio.secure_channel(target, creds) for _ in range(clients)]
    try:
        calls = [ch.unary_unary(KV + method) for ch in channels]
        for call in calls:  # connect every channel before timing
            await call(request(b"/bench/warm"), timeout=10)

        async def worker(k: int) -> None:
            for i in range(per_client):
                await calls[k](request(f"/bench/conc/{k}/{i % 20}".encode()), timeout=30)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        return clients * per_client / (time.perf_counter() - t0)
    finally:
        for ch in channels:
            await ch.close()


def concurrent(endpoint: str, files: tuple[str, str, str], clients: int, per_client: int,
               watch_pid: int | None = None) -> dict[str, float]:
    target = endpoint.removeprefix("https://")
    ca, cert, key = (Path(f).read_bytes() for f in files)
    creds = grpc.ssl_channel_credentials(ca, key, cert)
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set() and watch_pid:
            peak[0] = max(peak[0], rss_mib(watch_pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        puts = asyncio.run(_concurrent(target, creds, clients, per_client, "Put"))
        gets = asyncio.run(_concurrent(target, creds, clients, per_client, "Range"))
    finally:
        done.set()
        sampler.join()
    out = {"put_ops_per_s": round(puts), "get_ops_per_s": round(gets)}
    if watch_pid:
        out["guard_rss_peak_mib"] = peak[0]
    return out


def consistent_lists(api: object, n: int) -> dict[str, float]:
    from localcp.tenant_apiserver import consistent_list_seconds

    times = consistent_list_seconds(api, n)
    return {"consistent_list_p50_ms": round(statistics.median(times) * 1000, 1),
            "consistent_list_max_ms": round(max(times) * 1000, 1)}
