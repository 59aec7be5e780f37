"""Watch streams through the guard answer as the core etcd itself answers: the same requests sent on a
stream to the guard (tenant keys) and on a stream to the core directly (the same keys under the
tenant's prefix, as the core's admin), and the two answers compared.

Progress requests are what an API server needs to serve consistent reads from its watch cache;
etcd's own grpcproxy drops them (etcd issue 19710)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ansible_collections.etcdproxy.operator.plugins.module_utils import etcdpb

from localcp.cluster import ControlPlane
from localcp.etcdclient import Client
from localcp.tenant import ProxyProcess, delivered_files, start_proxy

from .conftest import Storages

WATCH = "/etcdserverpb.Watch/Watch"
ALL = b"\x00"


def is_progress(resp: Any) -> bool:
    return resp.watch_id == -1 and not resp.events and not resp.created and not resp.canceled


class WatchSession:
    """One Watch stream: requests sent when asked, responses read by a thread into a queue."""

    def __init__(self, client: Client, prefix: bytes) -> None:
        self.prefix = prefix  # what this path adds to a tenant key (b"" through the guard)
        self.name = "the core" if prefix else "the guard"
        self.requests: queue.Queue[bytes | None] = queue.Queue()
        self.responses: queue.Queue[Any] = queue.Queue()
        self.stream = client.bidi(WATCH, self._requests(), timeout=60)
        threading.Thread(target=self._read, daemon=True).start()

    def _requests(self) -> Iterator[bytes]:
        while (item := self.requests.get()) is not None:
            yield item

    def _read(self) -> None:
        try:
            for raw in self.stream:
                self.responses.put(etcdpb.WatchResponse.FromString(raw))
        except Exception as exc:  # the stream's end is a response too: the test compares it
            self.responses.put(exc)

    def create(self, key: bytes, range_end: bytes = b"", start_revision: int = 0) -> None:
        end = range_end if range_end in (b"", ALL) else self.prefix + range_end
        if range_end == ALL and self.prefix:
            end = self.prefix[:-1] + bytes([self.prefix[-1] + 1])  # the direct path's "every tenant key"
        self.requests.put(etcdpb.WatchRequest(create_request=etcdpb.WatchCreateRequest(
            key=self.prefix + key, range_end=end, start_revision=start_revision)).SerializeToString())

    def progress(self) -> None:
        req = etcdpb.WatchRequest()
        req.progress_request.SetInParent()
        self.requests.put(req.SerializeToString())

    def next(self, timeout: float = 10) -> Any:
        try:
            return self.responses.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no watch response within {timeout} s on the stream to {self.name}")

    def until_progress(self) -> list[Any]:
        """Responses up to and including a progress notification (watch id -1, no events). etcd answers a
        progress request only when every watch of the stream has caught up and drops it otherwise; an API
        server asks again until it has an answer (every 100 ms), and so does this."""
        seen: list[Any] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.progress()
            try:
                while True:
                    resp = self.responses.get(timeout=0.3)
                    assert not isinstance(resp, Exception), ([self.plain(r) for r in seen], resp)
                    if is_progress(resp):
                        return [*seen, resp]
                    seen.append(resp)
            except queue.Empty:
                continue
        pytest.fail(f"no progress notification within 10 s on the stream to {self.name}; "
                    f"before: {[self.plain(r) for r in seen]}")

    def events(self, n: int) -> list[Any]:
        """Responses until n events arrived (a progress notification answering an earlier request is skipped)."""
        got: list[Any] = []
        while sum(len(r.events) for r in got) < n:
            resp = self.next()
            assert not isinstance(resp, Exception), resp
            if not is_progress(resp):
                got.append(resp)
        return got

    def close(self) -> None:
        self.requests.put(None)
        self.stream.cancel()

    def plain(self, resp: Any) -> tuple:
        """A response without what differs by path (the prefix) or by time (revisions are compared apart)."""
        events = tuple((e.type, e.kv.key.removeprefix(self.prefix), e.kv.value) for e in resp.events)
        return (resp.watch_id, resp.created, resp.canceled, resp.compact_revision, bool(resp.cancel_reason), events)


@pytest.fixture(scope="module")
def tenant(api, operator, cp: ControlPlane, tmp_path_factory) -> Iterator[tuple[str, ProxyProcess, tuple]]:
    storages = Storages(api, operator, cp.kubeconfig)
    name, ns = storages.create_ready_tenant("wprog")
    guard = start_proxy(storages.core, storages.deployment(name), cp.logs)
    try:
        yield name, guard, delivered_files(storages.core, ns, tmp_path_factory.mktemp("wprog"))
    finally:
        guard.stop()
        storages.cleanup()


def both(cp: ControlPlane, tenant) -> tuple[Client, Client, bytes]:
    name, guard, files = tenant
    return Client(guard.endpoint, *files), cp.core_client(), f"/{name}/".encode()


def core_revision(core: Client) -> int:
    return etcdpb.RangeResponse.FromString(core.unary("/etcdserverpb.KV/Range", etcdpb.RangeRequest(
        key=b"\x00etcdproxy-test-no-such-key").SerializeToString())).header.revision


def mod_revision(c: Client, key: bytes) -> int:
    return int(etcdpb.RangeResponse.FromString(c.unary("/etcdserverpb.KV/Range", etcdpb.RangeRequest(
        key=key).SerializeToString())).kvs[0].mod_revision)


def test_progress_on_a_stream_of_several_watches_started_in_the_past(cp: ControlPlane, tenant):
    """Both streams get the same requests at the same time, so they see the same history."""
    guarded, direct, prefix = both(cp, tenant)
    with guarded, direct:
        for i in range(3):
            guarded.put(f"/registry/w/k{i}".encode(), f"v{i}".encode())
        start, last = mod_revision(guarded, b"/registry/w/k0"), mod_revision(guarded, b"/registry/w/k2")
        sessions = {"guard": WatchSession(guarded, b""), "direct": WatchSession(direct, prefix)}
        answers: dict[str, list[tuple]] = {path: [] for path in sessions}
        try:
            for s in sessions.values():
                s.create(b"/registry/w/k0", start_revision=start)  # one key, from the past
                s.create(b"/registry/w/", b"/registry/w0", start_revision=start)  # a range, from the past
                s.create(b"", ALL)  # every tenant key, from now
            for path, s in sessions.items():
                responses = s.until_progress()
                # The core answers a progress request once every watch of the stream caught up, with the
                # revision it reached: at least the tenant's last write, at most the core's revision now.
                assert last <= responses[-1].header.revision <= core_revision(direct), path
                answers[path] += sorted(s.plain(r) for r in responses)
            guarded.put(b"/registry/w/k3", b"v3")
            for path, s in sessions.items():
                after = s.events(2)  # k3 is in the range and in "every key"
                again = s.until_progress()
                assert again[-1].header.revision >= after[0].header.revision, path
                answers[path] += sorted(s.plain(r) for r in after + again)
        finally:
            for s in sessions.values():
                s.close()
    assert answers["guard"] == answers["direct"]
    assert sorted(a[0] for a in answers["guard"] if a[1]) == [0, 1, 2]  # three watches created
    events = [e for a in answers["guard"] for e in a[5]]
    assert events.count((0, b"/registry/w/k0", b"v0")) == 2  # the one-key watch and the range, from the past
    assert events.count((0, b"/registry/w/k3", b"v3")) == 2
    assert sum(1 for a in answers["guard"] if a[0] == -1 and not a[1]) == 2  # two progress notifications


def test_a_watch_from_a_compacted_revision_is_cancelled_as_etcd_cancels_it(cp: ControlPlane, tenant):
    guarded, direct, prefix = both(cp, tenant)
    with guarded, direct:
        guarded.put(b"/registry/c/old", b"1")
        old = mod_revision(guarded, b"/registry/c/old")
        guarded.put(b"/registry/c/old", b"2")
        compacted = core_revision(direct)
        # The core's admin compacts (a tenant cannot: the isolation suite checks it).
        direct.unary("/etcdserverpb.KV/Compact", etcdpb.CompactionRequest(revision=compacted).SerializeToString())
        answers = {}
        for path, session in (("guard", WatchSession(guarded, b"")), ("direct", WatchSession(direct, prefix))):
            try:
                session.create(b"/registry/c/", b"/registry/c0", start_revision=old)
                responses = [session.next()]
                while not responses[-1].canceled:
                    responses.append(session.next())
                assert responses[-1].compact_revision == compacted, (path, responses)
                answers[path] = [session.plain(r) for r in responses]
            finally:
                session.close()
        assert answers["guard"] == answers["direct"]
