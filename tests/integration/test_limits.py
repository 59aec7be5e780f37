"""Per-tenant limits through the real guard: storage seen by a real tenant kube-apiserver's user, usage in
status, etcdctl endpoint status, watches, request rate. The core's headroom is test_core_headroom.py."""

from __future__ import annotations

import base64
import json
import queue
import threading
import time

import grpc
import pytest
from ansible_collections.etcdproxy.operator.plugins.module_utils import etcdpb, keyspace
from kubernetes import client

from localcp.etcdclient import Client
from localcp.probes import https_get
from localcp.tenant import delivered_files, etcdctl, start_proxy
from localcp.tenant_apiserver import start_tenant_apiserver


def tenant(storages, prefix: str, limits: dict) -> tuple[str, str]:
    name = storages.unique(prefix)
    ns = f"{name}-ns"
    storages.create(name, {"replicas": 1, "limits": limits,
                           "caCertConfigMap": [{"name": "etcd-ca", "namespace": ns}],
                           "clientCertSecret": [{"name": "etcd-client", "namespace": ns}]})
    storages.wait_condition(name, "Ready", "True")
    return name, ns


def reconcile_until(storages, name: str, what: str, check) -> None:
    """Make the operator reconcile (an annotation change: watchAnnotationsChanges) until ``check`` holds.
    status.usage is refreshed per reconcile, and a replica publishes its record at most every 5 s."""
    last = [0.0]

    def poked_check() -> bool:
        if check():
            return True
        if time.monotonic() - last[0] > 2:
            last[0] = time.monotonic()
            storages.patch(name, {"metadata": {"annotations": {"test.etcdproxy.dev/poke": str(last[0])}}})
        return False

    storages.wait(what, poked_check, timeout=60)


def condition_is(storages, name: str, ctype: str, status: str, reason: str):
    def check() -> bool:
        c = storages.condition(name, ctype)
        return bool(c and c["status"] == status and c["reason"] == reason)
    return check


def core_usage(cp, name: str) -> tuple[int, int]:
    """Live bytes (key without the prefix + value) and keys under /<name>/, read from the core itself."""
    out = etcdctl(",".join(cp.etcd_endpoints), *cp.core_files(), "get", "--prefix", f"/{name}/", "-w", "json")
    kvs = json.loads(out.stdout).get("kvs") or []
    prefix = len(f"/{name}/")
    size = sum(len(base64.b64decode(kv["key"])) - prefix + len(base64.b64decode(kv.get("value", ""))) for kv in kvs)
    return size, len(kvs)


def test_storage_limit_through_a_tenant_kube_apiserver(storages, cp, tmp_path):
    full, _ = tenant(storages, "quota", {"storage": "3Mi"})
    other, _ = tenant(storages, "quotab", {"writeBytesPerSecond": "64Ki"})
    guards = {n: start_proxy(storages.core, storages.deployment(n), cp.logs) for n in (full, other)}
    servers = {}
    try:
        for n in (full, other):
            servers[n] = start_tenant_apiserver(cp, guards[n], delivered_files(storages.core, f"{n}-ns", tmp_path),
                                                tmp_path, n)
        api = servers[full].core()
        message = create_until_refused(api, "big", 200_000, 60)
        # What `kubectl create` shows: the limit by name, the guard as the source, not an etcd crash.
        print("the tenant's user sees:", message)
        assert "spec.limits.storage" in message and "etcdproxy" in message
        assert "database space exceeded" not in message
        # Deleting frees room: the same create goes through once the delete is seen.
        api.delete_namespaced_config_map("big-0", "default")
        storages.wait("a create after a delete", lambda: _creates(api, "after-delete"), timeout=30)
        # The neighbour is unaffected by the first tenant's quota...
        neighbour = servers[other].core()
        neighbour.create_namespaced_config_map("default", {"metadata": {"name": "fine"}, "data": {"v": "y" * 200_000}})
        # ...and is throttled by its own write rate (64Ki/s; the burst is the 4 MiB largest request).
        message = create_until_refused(neighbour, "fast", 500_000, 40)
        print("a throttled tenant's user sees:", message)
        assert "spec.limits.writeBytesPerSecond" in message and "retry later" in message
        # The tenant API server's storage size metric shows the tenant's data (Status answers its usage).
        metrics = servers[full].metrics()
        sizes = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                 if line.startswith("apiserver_storage_size_bytes")]
        assert sizes and max(sizes) > 2_000_000, sizes
        # The operator reports it: WithinLimits False naming the limit, with a Warning Event.
        reconcile_until(storages, full, "WithinLimits False",
                        condition_is(storages, full, "WithinLimits", "False", "StorageLimitReached"))
        assert "spec.limits.storage" in storages.condition(full, "WithinLimits")["message"]
        assert storages.condition(full, "Ready")["status"] == "True"
        assert any(e.type == "Warning" for e in storages.events(full, "StorageLimitReached"))
    finally:
        for s in servers.values():
            s.stop()
        for g in guards.values():
            g.stop()


def create_until_refused(api: client.CoreV1Api, prefix: str, size: int, tries: int) -> str:
    """Create ConfigMaps of ``size`` bytes until the tenant kube-apiserver refuses one: its message."""
    for i in range(tries):
        try:
            body = {"metadata": {"name": f"{prefix}-{i}"}, "data": {"v": "x" * size}}
            api.create_namespaced_config_map("default", body)
        except client.ApiException as exc:
            return str(json.loads(exc.body)["message"])
    raise AssertionError(f"{tries} ConfigMaps of {size} bytes were never refused")


def _creates(api: client.CoreV1Api, name: str) -> bool:
    try:
        api.create_namespaced_config_map("default", {"metadata": {"name": name}, "data": {"v": "x" * 100_000}})
        return True
    except client.ApiException as exc:
        assert exc.status != 409, exc.body
        return False


def test_usage_in_status_and_etcdctl_endpoint_status(storages, cp, tmp_path):
    name, ns = tenant(storages, "usage", {"storage": "1Mi", "keys": 50})
    guard = start_proxy(storages.core, storages.deployment(name), cp.logs)
    try:
        files = delivered_files(storages.core, ns, tmp_path)
        with Client(guard.endpoint, *files) as c:
            for i in range(20):
                c.put(f"/k/{i:02d}".encode(), b"v" * (1000 + i))
            c.delete(b"/k/00")
        want = core_usage(cp, name)
        def seen() -> tuple[float, float]:
            return guard.metric("etcdproxy_guard_tenant_bytes"), guard.metric("etcdproxy_guard_tenant_keys")

        storages.wait("the guard sees the core's usage", lambda: seen() == (float(want[0]), float(want[1])),
                      timeout=30)

        def reported() -> bool:
            usage = ((storages.get(name) or {}).get("status") or {}).get("usage") or {}
            return (usage.get("bytes"), usage.get("keys")) == want

        reconcile_until(storages, name, "status.usage matches the core", reported)
        usage = storages.get(name)["status"]["usage"]
        assert usage["storageLimit"] == "1Mi" and usage["keysLimit"] == 50 and usage["summary"].endswith("/1Mi")
        assert storages.condition(name, "WithinLimits")["status"] == "True"
        # etcdctl endpoint status through the endpoint: the tenant's own size and quota, no crash.
        out = etcdctl(guard.endpoint, *files, "endpoint", "status", "-w", "json")
        assert out.returncode == 0, out.stderr
        st = json.loads(out.stdout)[0]["Status"]
        assert (st["dbSize"], st["dbSizeInUse"], st["dbSizeQuota"]) == (want[0], want[0], 1 << 20)
        table = etcdctl(guard.endpoint, *files, "endpoint", "status", "-w", "table")
        assert table.returncode == 0 and "1.0 MB" in table.stdout, table.stdout + table.stderr
        # Keys: at the limit a new key is refused, an overwrite is not.
        with Client(guard.endpoint, *files) as c:
            for i in range(want[1], 50):
                c.put(f"/more/{i}".encode(), b"v")
            storages.wait("50 keys seen", lambda: guard.metric("etcdproxy_guard_tenant_keys") == 50.0, timeout=30)
            with pytest.raises(grpc.RpcError) as exc:
                c.put(b"/one-too-many", b"v")
            assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "spec.limits.keys" in exc.value.details()
            c.put(b"/k/01", b"w")
    finally:
        guard.stop()


def core_metrics(cp) -> list[str]:
    """The core etcd member's /metrics, a line each."""
    _, body = https_get(cp.ports["etcd0"], "/metrics", *cp.core_files(), timeout=5)
    return body.decode().splitlines()


def core_watchers(cp) -> float:
    for line in core_metrics(cp):
        if line.startswith("etcd_debugging_mvcc_watcher_total "):
            return float(line.split()[1])
    raise AssertionError("no watcher metric")


rng = etcdpb.RangeRequest


def core_ranges_in_flight(cp) -> float:
    """Range calls the core etcd has started and not yet answered (its gRPC metrics)."""
    started = handled = 0.0
    for line in core_metrics(cp):
        if 'grpc_method="Range"' not in line:
            continue
        if line.startswith("grpc_server_started_total{"):
            started += float(line.rsplit(" ", 1)[1])
        elif line.startswith("grpc_server_handled_total{"):
            handled += float(line.rsplit(" ", 1)[1])
    return started - handled


def test_large_reads_wait_for_each_other_instead_of_piling_up_in_the_core(storages, cp, tmp_path):
    """The core builds each range's answer whole in its memory: 8 concurrent full reads of a tenant holding
    200 MiB (within the default storage limit) took the core member from 0.6 to 6.9 GB (docs/guard.md). Reads
    are held to spec.limits.readBytesInFlight per replica, larger ones read in pages of that size: the core
    builds one at a time, and none is refused."""
    name, ns = tenant(storages, "reads", {"readBytesInFlight": "4Mi", "writeBytesPerSecond": 0})
    guard = start_proxy(storages.core, storages.deployment(name), cp.logs)
    try:
        files = delivered_files(storages.core, ns, tmp_path)
        with Client(guard.endpoint, *files) as c:
            for i in range(64):  # 1.4 MiB each: pages of two (2.8 MiB), so no two pages fit in the 4 MiB at once
                c.put(f"/big/{i:02d}".encode(), b"r" * (1400 << 10))
        storages.wait("the replica knows the 87.5 MiB",
                      lambda: guard.metric("etcdproxy_guard_tenant_bytes") > 64 * (1400 << 10))
        peak, stop = [0.0], threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], core_ranges_in_flight(cp))

        results: list[int] = []

        def read() -> None:
            with Client(guard.endpoint, *files, max_message_bytes=256 << 20) as c:
                for _ in range(2):
                    results.append(len(c.range(b"/big/", b"/big0", timeout=120)))

        sampler = threading.Thread(target=sample)
        sampler.start()
        readers = [threading.Thread(target=read) for _ in range(8)]
        try:
            for t in readers:
                t.start()
            for t in readers:
                t.join(180)
        finally:
            stop.set()
            sampler.join()
        assert results == [64] * 16  # every read answered whole: held, not refused
        # Without the limit the core had five to eight of these whole reads in hand at once; with it one page
        # at a time (the main cluster's kube-apiserver reads the same core meanwhile, so allow it one).
        assert peak[0] <= 2, f"{peak[0]} ranges in flight in the core at once"
        assert guard.metric("etcdproxy_guard_read_bytes_in_flight") == 0
    finally:
        guard.stop()


def test_a_range_larger_than_the_reads_limit_is_read_in_pages_and_answered_as_the_core_answers(
        storages, cp, tmp_path):
    """A Range whose answer would pass spec.limits.readBytesInFlight is read from the core in pages of at
    most that size, at one revision, and answered as the core answers the whole range: the same keys,
    values, count and `more`, for limits, sorts, revision filters, keys-only and older revisions."""
    name, ns = tenant(storages, "paged", {"readBytesInFlight": "16Ki"})
    guard = start_proxy(storages.core, storages.deployment(name), cp.logs)
    try:
        files = delivered_files(storages.core, ns, tmp_path)
        with Client(guard.endpoint, *files) as c:
            for i in range(40):  # ~100 KiB: 7 pages and more; distinct values, versions and revisions
                c.put(f"/p/{i:02d}".encode(), f"{(i * 7919) % 40:02d}".encode() * (640 + 320 * (i % 5)))
            old = c.ranged(rng(key=b"/p/00")).header.revision
            for i in range(0, 40, 3):
                for n in range(i % 4 + 1):
                    c.put(f"/p/{i:02d}".encode(), f"v{n}-{i}".encode() * 1000)
            c.put(b"/q", b"after")
        storages.wait("the replica knows every key", lambda: guard.metric("etcdproxy_guard_tenant_keys") == 41)
        with cp.core_client() as core:
            now = core.ranged(rng(key=b"/")).header.revision
        whole = {"key": b"/p/", "range_end": b"/p0"}
        cases = [
            rng(**whole, revision=now), rng(**whole, revision=now, limit=5), rng(**whole, revision=now, limit=40),
            rng(**whole, revision=now, limit=5, sort_order=etcdpb.SORT_DESCEND),
            rng(**whole, revision=now, sort_target=etcdpb.SORT_BY_VERSION),
            rng(**whole, revision=now, sort_target=etcdpb.SORT_BY_CREATE, sort_order=etcdpb.SORT_DESCEND, limit=7),
            rng(**whole, revision=now, sort_target=etcdpb.SORT_BY_MOD, sort_order=etcdpb.SORT_DESCEND),
            rng(**whole, revision=now, sort_target=etcdpb.SORT_BY_VALUE, keys_only=True, limit=9),
            rng(**whole, revision=now, min_mod_revision=old + 1),
            rng(**whole, revision=now, max_create_revision=old - 5),
            rng(**whole, revision=now, keys_only=True), rng(**whole, revision=old),
            rng(**whole, revision=now, serializable=True),
            rng(key=b"/p/17", range_end=b"\0", revision=now, limit=30),
            # A limit so large that etcd's limit+1 overflows: no limit (the guard's estimate overflowed too,
            # to a few bytes, and let the whole range through in one read).
            rng(**whole, revision=now, limit=1 << 62), rng(**whole, revision=now, limit=2**63 - 1),
        ]
        with Client(guard.endpoint, *files, max_message_bytes=16 << 20) as c, cp.core_client() as core:
            for req in cases:
                answered_in_pages_as_the_core_answers(guard, c, core, name, req)
            # Without a revision: the pages are read at the first one's revision.
            got = c.ranged(rng(**whole))
            assert len(got.kvs) == 40 and got.header.revision >= now
        assert guard.metric("etcdproxy_guard_read_bytes_in_flight") == 0
        # A Txn cannot be read in pages (its reads share a revision with its writes): refused, naming the limit.
        txn_reading_is_refused(guard, files, rng(**whole))
    finally:
        guard.stop()


def answered_in_pages_as_the_core_answers(guard, c: Client, core: Client, name: str, req) -> None:
    """``req`` through the guard is read in pages (two at least) and answered as the core answers it: the
    same keys, values, versions, revisions, ``count`` and ``more``."""
    pages = guard.metric("etcdproxy_guard_range_pages_total")
    got = c.ranged(req)
    assert guard.metric("etcdproxy_guard_range_pages_total") - pages >= 2, f"not read in pages: {req}"
    direct = rng()
    direct.CopyFrom(req)
    direct.key = f"/{name}/".encode() + req.key
    direct.range_end = f"/{name}0".encode() if req.range_end == b"\0" else f"/{name}/".encode() + req.range_end
    want = core.ranged(direct)
    strip = len(f"/{name}/")
    assert [(kv.key, kv.value, kv.version, kv.mod_revision) for kv in got.kvs] == \
        [(kv.key[strip:], kv.value, kv.version, kv.mod_revision) for kv in want.kvs], req
    assert (got.count, got.more) == (want.count, want.more), req


def txn_reading_is_refused(guard, files, req) -> None:
    """A Txn holding Range ``req`` is refused by the guard, naming spec.limits.readBytesInFlight."""
    txn = etcdpb.TxnRequest(success=[etcdpb.RequestOp(request_range=req)])
    with Client(guard.endpoint, *files) as c, pytest.raises(grpc.RpcError) as refused:
        c.unary("/etcdserverpb.KV/Txn", txn.SerializeToString())
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "spec.limits.readBytesInFlight" in refused.value.details()


def test_a_read_of_keys_deleted_since_is_read_in_pages_too(storages, cp, tmp_path):
    """The keys a replica follows are the live ones; a read at an older revision sees keys deleted or
    shrunk since. Filled, emptied, then read as it was, a tenant got its whole former size in one read (the
    live keys said 0 bytes), as many times at once as it liked: the core's memory again. Now such a read is
    read in pages of as many keys as the limit holds at the largest key the replica has seen."""
    name, ns = tenant(storages, "past", {"readBytesInFlight": "16Ki"})
    guard = start_proxy(storages.core, storages.deployment(name), cp.logs)
    try:
        files = delivered_files(storages.core, ns, tmp_path)
        with Client(guard.endpoint, *files) as c:
            for i in range(30):  # ~110 KiB, distinct values and sizes
                c.put(f"/d/{i:02d}".encode(), f"{(i * 7919) % 30:02d}".encode() * (1000 + 400 * (i % 5)))
            for i in range(0, 30, 4):
                c.put(f"/d/{i:02d}".encode(), b"small")  # shrunk
            full = c.ranged(rng(key=b"/d/00")).header.revision
            assert c.delete(b"/d/", b"/d0") == 30
            c.put(b"/e", b"after")
        storages.wait("the replica followed the deletes", lambda: guard.metric("etcdproxy_guard_tenant_keys") == 1)
        whole = {"key": b"/d/", "range_end": b"/d0", "revision": full}
        cases = [
            rng(**whole), rng(**whole, limit=7), rng(**whole, limit=30), rng(**whole, limit=1 << 62),
            rng(**whole, keys_only=True), rng(**whole, sort_target=etcdpb.SORT_BY_VALUE, limit=5),
            rng(**whole, sort_order=etcdpb.SORT_DESCEND, limit=4), rng(**whole, min_mod_revision=full - 3),
            rng(key=b"/d/10", range_end=b"\0", revision=full), rng(**whole, serializable=True),
        ]
        with Client(guard.endpoint, *files, max_message_bytes=16 << 20) as c, cp.core_client() as core:
            for req in cases:
                answered_in_pages_as_the_core_answers(guard, c, core, name, req)
            # One key of the past is read whole, as the core answers it.
            got, want = c.range(b"/d/01", revision=full), core.range(f"/{name}//d/01".encode(), revision=full)
            assert [v for _, v in got] == [v for _, v in want] != []
        assert guard.metric("etcdproxy_guard_read_bytes_in_flight") == 0
        # A Txn cannot be read in pages: one reading the past without a limit is refused, naming the limit.
        txn_reading_is_refused(guard, files, rng(**whole))
    finally:
        guard.stop()


def test_a_replica_is_ready_only_once_its_first_usage_record_is_in_the_core(storages, cp):
    """The reconcile that finds the endpoint available (the Deployment's replicas ready) reads the replicas'
    records for status.usage, the Usage column. A replica that answered /readyz before writing its record
    left that reconcile without one, and the column empty until the next run: hours with nothing changing."""
    name, _ = tenant(storages, "first-record", {"keys": 7})
    guard = start_proxy(storages.core, storages.deployment(name), cp.logs)  # returns at the first 200 of /readyz
    try:
        with cp.core_client() as core:
            records = core.range(*keyspace.prefix_range(keyspace.report_prefix(name)))
        assert len(records) == 1, records
        assert json.loads(records[0][1])["keys"] == 0
    finally:
        guard.stop()


def test_watches_beyond_the_limit_are_refused(storages, cp, tmp_path):
    name, ns = tenant(storages, "watch", {"watches": 3})
    guard = start_proxy(storages.core, storages.deployment(name), cp.logs)
    try:
        files = delivered_files(storages.core, ns, tmp_path)
        before = core_watchers(cp)
        requests: queue.Queue = queue.Queue()
        for i in range(6):
            requests.put(etcdpb.WatchRequest(create_request=etcdpb.WatchCreateRequest(key=f"/w/{i}".encode()))
                         .SerializeToString())
        answers = []
        with Client(guard.endpoint, *files) as c:
            stream = c.bidi("/etcdserverpb.Watch/Watch", iter(requests.get, None), timeout=20)
            for raw in stream:
                answers.append(etcdpb.WatchResponse.FromString(raw))
                if len(answers) == 6:
                    during = core_watchers(cp)
                    requests.put(None)
                    stream.cancel()
                    break
        created = [a for a in answers if a.created and not a.canceled]
        refused = [a for a in answers if a.created and a.canceled]
        assert len(created) == 3 and len(refused) == 3, answers
        assert all("spec.limits.watches" in a.cancel_reason for a in refused)
        assert during - before <= 3
        assert guard.metric("etcdproxy_guard_limited_total", reason="watches") == 3
        # Closed watches are given back: a new stream may open three again.
        storages.wait("watches given back", lambda: guard.metric("etcdproxy_guard_watches") == 0, timeout=30)
        # Each Watch stream is a stream to the core too (watch progress is per stream), so streams are held to
        # the same limit: three open streams with a watch each, and a fourth stream is refused whole.
        with Client(guard.endpoint, *files) as c:
            feeds: list[queue.Queue] = []
            streams = []  # held open until the end
            for i in range(3):
                feeds.append(queue.Queue())
                feeds[-1].put(etcdpb.WatchRequest(create_request=etcdpb.WatchCreateRequest(
                    key=f"/s/{i}".encode())).SerializeToString())
                streams.append(c.bidi("/etcdserverpb.Watch/Watch", iter(feeds[-1].get, None), timeout=20))
                first = etcdpb.WatchResponse.FromString(next(streams[-1]))
                assert first.created and not first.canceled, first
            with pytest.raises(grpc.RpcError) as refused_stream:
                next(c.bidi("/etcdserverpb.Watch/Watch", iter(queue.Queue().get, None), timeout=20))
            assert refused_stream.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "spec.limits.watches" in refused_stream.value.details()
            for feed, stream in zip(feeds, streams, strict=True):
                feed.put(None)
                stream.cancel()
    finally:
        guard.stop()


def test_a_watch_from_far_back_is_charged_the_history_it_makes_the_core_read(storages, cp, tmp_path):
    """etcd catches a new watcher up by reading every change in the core since its start revision, the main
    cluster's and other tenants' too. Created and cancelled in a loop 50 000 revisions back, watches took the
    core's write p99 from 1.5 to 8.2 ms (docs/guard.md). Each is charged one call per 100 revisions back."""
    name, ns = tenant(storages, "replay", {"requestsPerSecond": 10, "requestBurst": 20})
    guard = start_proxy(storages.core, storages.deployment(name), cp.logs)
    try:
        files = delivered_files(storages.core, ns, tmp_path)
        with cp.core_client() as core:
            start = core.ranged(rng(key=b"/")).header.revision
            for i in range(2500):  # the main cluster's writes: 2 500 revisions of history
                core.put(f"/main-{name}/{i % 10}".encode(), b"x")

        def first_answer(c: Client, rev: int):
            feed: queue.Queue = queue.Queue()
            feed.put(etcdpb.WatchRequest(create_request=etcdpb.WatchCreateRequest(
                key=b"/w", start_revision=rev)).SerializeToString())
            stream = c.bidi("/etcdserverpb.Watch/Watch", iter(feed.get, None), timeout=20)
            answer = etcdpb.WatchResponse.FromString(next(stream))
            feed.put(None)
            stream.cancel()
            return answer

        with Client(guard.endpoint, *files) as c:
            c.put(b"/k", b"v")  # its answer tells the guard the core's revision
            first = first_answer(c, start + 1)  # 26 calls, at most the burst (20): a full bucket pays for it
            assert first.created and not first.canceled, first
            again = first_answer(c, start + 1)  # the bucket is empty: refused as etcd refuses a watch
            assert again.created and again.canceled, again
            assert "spec.limits.requestsPerSecond" in again.cancel_reason, again
            assert "revisions back" in again.cancel_reason, again
            now = first_answer(c, 0)  # a watch from now costs one call
            assert now.created and not now.canceled, now
        assert guard.metric("etcdproxy_guard_limited_total", reason="request-rate") == 1
    finally:
        guard.stop()


def test_live_leases_beyond_the_limit_are_refused_on_every_replica_until_one_ends(storages, cp, tmp_path):
    """Leases cost the core memory whatever their keys (~2.3 KB each with the guard's marker, docs/guard.md):
    the request rate alone let one tenant grant ~1 000 a second into the core. A lease counts until the core
    revokes it, whichever replica granted it."""
    name, ns = tenant(storages, "leases", {"leases": 3})
    replicas = [start_proxy(storages.core, storages.deployment(name), cp.logs, label=f"guard-{i}") for i in range(2)]
    try:
        files = delivered_files(storages.core, ns, tmp_path)
        marker, marker_end = keyspace.prefix_range(keyspace.lease_marker_prefix(name))

        def in_core() -> int:
            with cp.core_client() as core:
                return len(core.range(marker, marker_end))

        with Client(replicas[0].endpoint, *files) as a, Client(replicas[1].endpoint, *files) as b:
            a.grant(600)
            a.grant(600)
            b.grant(2)  # the third, through the other replica; etcd's shortest TTL
            for c in (a, b):
                with pytest.raises(grpc.RpcError) as refused:
                    c.grant(600)
                assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "spec.limits.leases" in refused.value.details() and "3 of 3" in refused.value.details()
            assert in_core() <= 3  # the refused grants never reached the core
            assert sum(r.metric("etcdproxy_guard_limited_total", reason="leases") for r in replicas) == 2

            def grants() -> bool:
                try:
                    a.grant(600)
                    return True
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
                    return False

            # Once the core revoked the short lease (its marker goes with it), there is room for one more.
            storages.wait("a grant once the short lease ended", grants, timeout=30)
            assert in_core() == 3
        reconcile_until(storages, name, "WithinLimits False",
                        condition_is(storages, name, "WithinLimits", "False", "LeaseLimitReached"))
        assert "spec.limits.leases" in storages.condition(name, "WithinLimits")["message"]
        # status.usage shows them: counted in the core by each replica as it publishes its record.
        reconcile_until(storages, name, "status.usage.leases 3", lambda: (
            (storages.get(name) or {}).get("status", {}).get("usage", {}).get("leases") == 3))
        assert storages.get(name)["status"]["usage"]["leasesLimit"] == 3
    finally:
        for r in replicas:
            r.stop()


def test_request_rate_throttles_a_noisy_tenant_only(storages, cp, tmp_path):
    noisy, nns = tenant(storages, "noisy", {"requestsPerSecond": 50, "requestBurst": 50})
    quiet, qns = tenant(storages, "quiet", {})
    guards = {n: start_proxy(storages.core, storages.deployment(n), cp.logs) for n in (noisy, quiet)}
    try:
        files = {noisy: delivered_files(storages.core, nns, tmp_path),
                 quiet: delivered_files(storages.core, qns, tmp_path)}
        ok, refused, quiet_errors = [0], [0], []
        lock = threading.Lock()
        seconds = 3.0

        def hammer() -> None:
            with Client(guards[noisy].endpoint, *files[noisy]) as c:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    try:
                        c.range(b"/x")
                        with lock:
                            ok[0] += 1
                    except grpc.RpcError as exc:
                        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                        assert "spec.limits.requestsPerSecond" in exc.details()
                        with lock:
                            refused[0] += 1

        def neighbour() -> None:
            with Client(guards[quiet].endpoint, *files[quiet]) as c:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    try:
                        c.put(b"/q", b"v")
                        c.range(b"/q")
                    except grpc.RpcError as exc:
                        quiet_errors.append(exc.details())

        start = time.monotonic()
        # More callers than can wait their turn (a call waits at most 250 ms: 12 at 50/s): some are refused.
        threads = [threading.Thread(target=hammer) for _ in range(16)] + [threading.Thread(target=neighbour)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        elapsed = time.monotonic() - start
        assert refused[0] > 0, "the noisy tenant was never refused"
        assert guards[noisy].metric("etcdproxy_guard_limited_total", reason="request-rate") == refused[0]
        # What reached the core is bounded by the burst plus the rate over the time taken.
        assert ok[0] <= 50 + 50 * elapsed + 5, (ok[0], elapsed)
        assert quiet_errors == []
    finally:
        for g in guards.values():
            g.stop()
