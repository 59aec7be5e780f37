"""Isolation through the guard: every refused operation tried for real (etcdctl and raw gRPC) through
tenant A's endpoint, with tenant B and the main cluster sharing the same core etcd.

Each refusal must be PERMISSION_DENIED naming the method, and the core must be unchanged afterwards:
members, auth state, alarms, revision history (no compaction), B's lease and keys, the main cluster's keys.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from ansible_collections.etcdproxy.operator.plugins.module_utils import etcdpb

from localcp.cluster import ControlPlane
from localcp.etcdclient import Client
from localcp.tenant import ProxyProcess, delivered_files, etcdctl, start_proxy

from .conftest import Storages

M, CL, AU, KV, LE = ("/etcdserverpb.Maintenance/", "/etcdserverpb.Cluster/", "/etcdserverpb.Auth/",
                     "/etcdserverpb.KV/", "/etcdserverpb.Lease/")
EL, LO = "/v3electionpb.Election/", "/v3lockpb.Lock/"


@dataclass
class Setup:
    a: str
    b: str
    a_files: tuple[str, str, str]
    b_files: tuple[str, str, str]
    guards: dict[str, ProxyProcess]
    core: tuple[str, str, str, str]
    b_lease: int
    history_rev: int

    def a_client(self) -> Client:
        return Client(self.guards[self.a].endpoint, *self.a_files)

    def core_ctl(self, *args: str) -> subprocess.CompletedProcess:
        return etcdctl(*self.core, *args)

    def core_json(self, *args: str) -> dict[str, Any]:
        out = self.core_ctl(*args, "-w", "json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)


def core_state(s: Setup) -> dict[str, Any]:
    """Everything a tenant must not be able to change in the core."""
    members = sorted((m["ID"], m["name"], tuple(m["peerURLs"]), m.get("isLearner", False))
                     for m in s.core_json("member", "list")["members"])
    leases = sorted(lease["id"] for lease in s.core_json("lease", "list").get("leases") or [])
    b_keys = s.core_ctl("get", "--prefix", f"/{s.b}/").stdout
    main_keys = s.core_ctl("get", "--prefix", "/registry/namespaces/", "--keys-only").stdout
    # A compaction past history_rev would make this read fail.
    history = s.core_ctl("get", f"/{s.b}//registry/b/k1", f"--rev={s.history_rev}", "--print-value-only")
    return {
        "members": members,
        "auth": s.core_ctl("auth", "status").stdout.split("\n")[0],
        "alarms": s.core_ctl("alarm", "list").stdout,
        "b_lease_alive": s.b_lease in leases,
        "b_keys": b_keys,
        "main_keys": main_keys,
        "history": (history.returncode, history.stdout),
    }


@pytest.fixture(scope="module")
def setup(api, operator, cp: ControlPlane, tmp_path_factory) -> Iterator[Setup]:
    storages = Storages(api, operator, cp.kubeconfig)
    tmp = tmp_path_factory.mktemp("isolation")
    a, b = storages.unique("isoa"), storages.unique("isob")
    for name in (a, b):
        ns = f"{name}-ns"
        storages.create(name, {"replicas": 1, "caCertConfigMap": [{"name": "etcd-ca", "namespace": ns}],
                               "clientCertSecret": [{"name": "etcd-client", "namespace": ns}]})
    guards: dict[str, ProxyProcess] = {}
    try:
        for name in (a, b):
            storages.wait_condition(name, "Ready", "True")
            guards[name] = start_proxy(storages.core, storages.deployment(name), cp.logs)
        core = (",".join(cp.etcd_endpoints), *cp.core_files())
        a_files = delivered_files(storages.core, f"{a}-ns", tmp)
        b_files = delivered_files(storages.core, f"{b}-ns", tmp)
        with Client(guards[b].endpoint, *b_files) as bc:
            b_lease = bc.grant(600)
            bc.put(b"/registry/b/k1", b"b-value-1")
            bc.put(b"/registry/b/leased", b"b-leased", lease=b_lease)
        with Client(guards[a].endpoint, *a_files) as ac:
            ac.put(b"/registry/a/k1", b"a-value-1")
        s = Setup(a, b, a_files, b_files, guards, core, b_lease, 0)
        s.history_rev = int(s.core_json("get", f"/{b}//registry/b/k1")["kvs"][0]["mod_revision"])
        with Client(guards[b].endpoint, *b_files) as bc:
            bc.put(b"/registry/b/k1", b"b-value-2")  # a newer revision: history_rev is now history
        yield s
    finally:
        for g in guards.values():
            g.stop()
        storages.cleanup()


def member_id(s: Setup) -> int:
    return int(s.core_json("member", "list")["members"][0]["ID"])


# etcdctl commands an operator of the core would use; through a tenant endpoint each is refused.
ETCDCTL_ATTEMPTS = [
    (["snapshot", "save", "{tmp}/stolen.db"], "Maintenance/Snapshot"),
    (["member", "list"], "Cluster/MemberList"),
    (["member", "add", "intruder", "--peer-urls=https://127.0.0.1:1"], "Cluster/MemberAdd"),
    (["member", "remove", "{member_hex}"], "Cluster/MemberRemove"),
    (["member", "update", "{member_hex}", "--peer-urls=https://127.0.0.1:2"], "Cluster/MemberUpdate"),
    (["member", "promote", "{member_hex}"], "Cluster/MemberPromote"),
    (["user", "add", "root:hunter2"], "Auth/UserAdd"),
    (["role", "add", "root"], "Auth/RoleAdd"),
    (["auth", "enable"], "Auth/"),
    (["auth", "status"], "Auth/AuthStatus"),
    (["user", "list"], "Auth/UserList"),
    (["compaction", "{current_rev}"], "KV/Compact"),
    (["alarm", "list"], "Maintenance/Alarm"),
    (["alarm", "disarm"], "Maintenance/Alarm"),
    (["defrag"], "Maintenance/Defragment"),
    (["endpoint", "hashkv"], "Maintenance/HashKV"),
    (["lease", "list"], "Lease/LeaseLeases"),
    # etcdctl's keep-alive loop reports only "EOF"; the raw gRPC test checks the code and message.
    (["lease", "keep-alive", "--once", "{b_lease_hex}"], ""),
    (["lease", "timetolive", "{b_lease_hex}"], "Lease/LeaseTimeToLive"),
    (["lease", "revoke", "{b_lease_hex}"], "Lease/LeaseRevoke"),
]


def test_etcdctl_admin_operations_are_refused(setup: Setup, tmp_path):
    before = core_state(setup)
    current = int(setup.core_json("endpoint", "status")[0]["Status"]["header"]["revision"])
    fmt = {"tmp": str(tmp_path), "member_hex": f"{member_id(setup):x}", "b_lease_hex": f"{setup.b_lease:x}",
           "current_rev": str(current)}
    failures = []
    for args, method in ETCDCTL_ATTEMPTS:
        argv = [a.format(**fmt) for a in args]
        out = etcdctl(setup.guards[setup.a].endpoint, *setup.a_files, *argv)
        text = out.stdout + out.stderr
        if out.returncode == 0 or (method and ("PermissionDenied" not in text or method not in text)):
            failures.append((argv, out.returncode, text[-400:]))
    assert failures == []
    assert not (tmp_path / "stolen.db").exists() or (tmp_path / "stolen.db").stat().st_size == 0
    assert core_state(setup) == before


def raw_attempts(s: Setup, current_rev: int) -> list[tuple[str, str, bytes]]:
    mid = member_id(s)
    alarm = etcdpb.AlarmRequest(action=1, memberID=mid, alarm=1).SerializeToString()  # ACTIVATE NOSPACE
    b_lease = etcdpb.LeaseRevokeRequest(ID=s.b_lease).SerializeToString()  # same field 1 for TTL/KeepAlive
    compact = etcdpb.CompactionRequest(revision=current_rev, physical=True).SerializeToString()
    unary = [M + m for m in ("Defragment", "Hash", "HashKV", "MoveLeader", "Downgrade")]
    unary += [CL + m for m in ("MemberAdd", "MemberRemove", "MemberUpdate", "MemberList", "MemberPromote")]
    unary += [AU + m for m in ("AuthEnable", "AuthDisable", "AuthStatus", "Authenticate", "UserAdd", "UserGet",
                               "UserList", "UserDelete", "UserChangePassword", "UserGrantRole", "UserRevokeRole",
                               "RoleAdd", "RoleGet", "RoleList", "RoleDelete", "RoleGrantPermission",
                               "RoleRevokePermission")]
    unary += [EL + m for m in ("Campaign", "Proclaim", "Leader", "Resign")] + [LO + "Lock", LO + "Unlock"]
    attempts = [("unary", m, b"") for m in unary]
    attempts += [
        ("unary", M + "Alarm", alarm),
        ("unary", KV + "Compact", compact),
        ("unary", LE + "LeaseRevoke", b_lease),
        ("unary", LE + "LeaseTimeToLive", b_lease),
        ("unary", LE + "LeaseLeases", b""),
        ("bidi", LE + "LeaseKeepAlive", b_lease),
        ("stream", M + "Snapshot", b""),
        ("stream", EL + "Observe", b""),
        ("unary", "/grpc.health.v1.Health/Check", b""),
        ("unary", "/etcdserverpb.KV/NoSuchMethod", b""),
    ]
    return attempts


def test_raw_grpc_refusals_name_the_method_and_leave_the_core_unchanged(setup: Setup):
    before = core_state(setup)
    current = int(setup.core_json("endpoint", "status")[0]["Status"]["header"]["revision"])
    wrong = []
    with setup.a_client() as c:
        for shape, method, request in raw_attempts(setup, current):
            try:
                if shape == "unary":
                    c.unary(method, request)
                elif shape == "stream":
                    c.server_stream(method, request)
                else:
                    list(c.bidi(method, iter([request])))
                wrong.append((method, "succeeded"))
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.PERMISSION_DENIED or method not in (err.details() or ""):
                    wrong.append((method, err.code(), err.details()))
    assert wrong == []
    assert core_state(setup) == before
    # Refusals are counted by method; invented names share one label so a tenant cannot grow the series.
    guard = setup.guards[setup.a]
    assert guard.metric("etcdproxy_guard_refused_total", method=M + "Snapshot", code="PermissionDenied") >= 1
    assert guard.metric("etcdproxy_guard_refused_total", method="other", code="PermissionDenied") >= 1
    assert guard.metric("grpc_server_handled_total", grpc_method="Compact", grpc_code="PermissionDenied") >= 1
    assert "NoSuchMethod" not in guard.metrics_text() and "grpc.health" not in guard.metrics_text()


def test_status_is_answered_by_the_guard_without_core_facts(setup: Setup):
    with setup.a_client() as c:
        status = etcdpb.StatusResponse.FromString(c.unary(M + "Status"))
    core_status = setup.core_json("endpoint", "status")[0]["Status"]
    # The core's own version: the guard answers progress requests as the core does (test_guard_watch.py),
    # so an API server may rely on them exactly as it would talking to the core.
    assert status.version == core_status["version"]
    assert (status.header.cluster_id, status.header.member_id) == (0, 0)
    assert status.leader == 0 and status.raftIndex == 0
    # Sizes are the tenant's own (its live keys and values, its storage limit), never the core's; the
    # revision is one the tenant sees in every response header anyway.
    a_bytes = sum(len(k) + len(v) for k, v in c_range_all(setup))
    assert status.dbSize == a_bytes and status.dbSizeInUse == a_bytes and status.dbSizeQuota == 512 << 20
    assert status.dbSize != core_status["dbSize"]
    assert core_status["leader"] != 0  # the real answer differs
    out = etcdctl(setup.guards[setup.a].endpoint, *setup.a_files, "endpoint", "status", "-w", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["Status"]["version"] == core_status["version"]


def c_range_all(setup: Setup) -> list[tuple[bytes, bytes]]:
    with setup.a_client() as c:
        return c.range(b"\x00", b"\x00")


def test_range_stream_is_unimplemented_so_api_servers_fall_back(setup: Setup):
    with setup.a_client() as c, pytest.raises(grpc.RpcError) as err:
        c.server_stream(KV + "RangeStream", etcdpb.RangeRequest(key=b"/registry/").SerializeToString())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_lease_grant_only_without_a_chosen_id(setup: Setup):
    before = core_state(setup)
    with setup.a_client() as c:
        with pytest.raises(grpc.RpcError) as err:
            c.grant(30, lease_id=setup.b_lease)  # would answer "lease already exists": an oracle
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "LeaseGrant" in err.value.details()
        granted = c.grant(5)
    assert granted != 0
    assert core_state(setup) == before


def test_keys_attach_only_to_leases_granted_through_the_endpoint(setup: Setup, cp: ControlPlane, storages):
    """Lease IDs are cluster-wide: attaching to B's lease, or probing for IDs, gets one and the same refusal;
    a lease granted through one replica of A's endpoint works through another (ownership lives in the core)."""
    before = core_state(setup)
    missing = setup.b_lease ^ 0x5A5A5A5A  # almost surely no such lease
    with setup.a_client() as c:
        answers = {}
        for label, lease in (("b", setup.b_lease), ("missing", missing)):
            with pytest.raises(grpc.RpcError) as err:
                c.put(b"/registry/a/leased", b"x", lease=lease)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            answers[label] = err.value.details().replace(f"{lease:x}", "<id>")
        assert answers["b"] == answers["missing"]  # nothing to tell B's lease from no lease
        txn = etcdpb.TxnRequest(success=[etcdpb.RequestOp(request_put=etcdpb.PutRequest(
            key=b"/registry/a/leased", value=b"x", lease=setup.b_lease))])
        with pytest.raises(grpc.RpcError) as err:
            c.txn(txn)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        own = c.grant(60)
    second = start_proxy(storages.core, storages.deployment(setup.a), cp.logs)  # another replica of A's
    try:
        with Client(second.endpoint, *setup.a_files) as c2:
            c2.put(b"/registry/a/leased", b"mine", lease=own)
            assert c2.range(b"/registry/a/leased") == [(b"/registry/a/leased", b"mine")]
    finally:
        second.stop()
    assert core_state(setup) == before


def a_keys_in_core(s: Setup) -> set[bytes]:
    prefix = f"/{s.a}/"
    keys = s.core_ctl("get", "--prefix", prefix, "--keys-only").stdout.split()
    return {k[len(prefix):].encode() for k in keys}


ESCAPE_RANGES = [
    (b"\x00", b"\x00"),  # "every key" in etcd
    (b"\x00", b"\xff" * 16),
    (b"\xff", b"\x00"),
    (b"/", b"\x00"),
    (b"/registry/", b"\xff"),
    (b"../", b"\x00"),
]


def test_kv_escape_attempts_stay_inside_the_prefix(setup: Setup):
    b_before = setup.core_ctl("get", "--prefix", f"/{setup.b}/").stdout
    with setup.a_client() as c:
        c.put(f"../{setup.b}/registry/b/k1".encode(), b"evil")
        c.put(f"/../../{setup.b}//registry/b/k1".encode(), b"evil")
        own = a_keys_in_core(setup)
        assert f"../{setup.b}/registry/b/k1".encode() in own  # a literal key of A's, not B's
        for key, end in ESCAPE_RANGES:
            got = {k for k, _ in c.range(key, end)}
            assert got <= own, (key, end, got - own)
        assert {k for k, _ in c.range(b"\x00", b"\x00")} == own
        # Txn: a compare over every key, and reads in both branches.
        everything = etcdpb.RangeRequest(key=b"\x00", range_end=b"\x00")
        txn = etcdpb.TxnRequest(
            compare=[etcdpb.Compare(key=b"\x00", range_end=b"\x00", target=2, result=1, mod_revision=0)],
            success=[etcdpb.RequestOp(request_range=everything)],
            failure=[etcdpb.RequestOp(request_range=everything)])
        resp = c.txn(txn)
        seen = {kv.key for r in resp.responses for kv in r.response_range.kvs}
        assert seen == own
        # A compare that could only be true if B's key were visible: B's k1 has version 2.
        probe = etcdpb.TxnRequest(compare=[etcdpb.Compare(key=f"../{setup.b}/registry/b/k1".encode(), target=0,
                                                          result=0, version=2)])
        assert c.txn(probe).succeeded is False
    assert setup.core_ctl("get", "--prefix", f"/{setup.b}/").stdout == b_before


class Requests:
    """A request stream that stays open until closed."""

    def __init__(self) -> None:
        self.q: queue.Queue[bytes | None] = queue.Queue()

    def send(self, msg: Any) -> None:
        self.q.put(msg.SerializeToString())

    def close(self) -> None:
        self.q.put(None)

    def __iter__(self) -> Iterator[bytes]:
        while (item := self.q.get()) is not None:
            yield item


def test_watch_everything_from_revision_1_sees_only_own_keys(setup: Setup):
    own_prefixes = (b"/registry/a/", b"../", b"/../")
    requests = Requests()
    seen: list[bytes] = []
    with setup.a_client() as c:
        stream = c.bidi("/etcdserverpb.Watch/Watch", iter(requests), timeout=30)
        requests.send(etcdpb.WatchRequest(create_request=etcdpb.WatchCreateRequest(
            key=b"\x00", range_end=b"\x00", start_revision=1)))
        created = etcdpb.WatchResponse.FromString(next(stream))
        assert created.created
        with Client(setup.guards[setup.b].endpoint, *setup.b_files) as bc:
            bc.put(b"/registry/b/during-watch", b"secret")
        c.put(b"/registry/a/marker", b"m")
        for raw in stream:
            events = etcdpb.WatchResponse.FromString(raw).events
            seen.extend(e.kv.key for e in events)
            if b"/registry/a/marker" in seen:
                break
        requests.close()
        stream.cancel()
    assert seen, "no events"
    assert all(k.startswith(own_prefixes) for k in seen), [k for k in seen if not k.startswith(own_prefixes)]


def test_delete_everything_deletes_only_own_keys(setup: Setup):
    b_before = setup.core_ctl("get", "--prefix", f"/{setup.b}/").stdout
    main_before = setup.core_ctl("get", "--prefix", "/registry/namespaces/", "--keys-only").stdout
    own = a_keys_in_core(setup)
    with setup.a_client() as c:
        deleted = c.delete(b"\x00", b"\x00")
    assert deleted == len(own) > 0
    assert a_keys_in_core(setup) == set()
    assert setup.core_ctl("get", "--prefix", f"/{setup.b}/").stdout == b_before
    assert setup.core_ctl("get", "--prefix", "/registry/namespaces/", "--keys-only").stdout == main_before


def test_client_keepalive_pings_are_permitted(setup: Setup):
    """API servers' etcd clients ping (every 30 s, also while idle); a server that counts those as abuse
    sends GOAWAY (too_many_pings) after its third strike and the connection drops. Here: pings every
    5 s (etcd's own minimum, which the guard keeps) for 16 s of idleness."""
    target = setup.guards[setup.a].endpoint.removeprefix("https://")
    ca, cert, key = (open(f, "rb").read() for f in setup.a_files)
    channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(ca, key, cert), options=[
        ("grpc.keepalive_time_ms", 5000), ("grpc.keepalive_timeout_ms", 5000),
        ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0)])
    states: list[grpc.ChannelConnectivity] = []
    channel.subscribe(states.append, try_to_connect=True)
    try:
        rng = channel.unary_unary(KV + "Range")
        rng(etcdpb.RangeRequest(key=b"/registry/a/k1").SerializeToString(), timeout=10)
        idle = threading.Event()
        idle.wait(16)  # the idle period under test: three client pings
        rng(etcdpb.RangeRequest(key=b"/registry/a/k1").SerializeToString(), timeout=10)
        after_ready = states[states.index(grpc.ChannelConnectivity.READY):]
        assert set(after_ready) == {grpc.ChannelConnectivity.READY}, states
    finally:
        channel.close()
