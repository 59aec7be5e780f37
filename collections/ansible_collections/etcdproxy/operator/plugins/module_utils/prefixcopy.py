"""Copying one tenant's keys out of the core etcd at one revision, and into an empty prefix.

Backup: every key under ``/<name>/`` read at a single revision over etcd's gRPC KV API (coregrpc.py), a
page at a time (memory stays flat for any size): the first page fixes the revision, every further page asks
for that same revision, so the pages form one consistent view. Pages hold about ``PAGE_BYTES`` (the key
count adapts to the values' size, between 16 and ``PAGE_KEYS``). If the core compacts past that revision
mid-way, the backup starts again at a newer one (at most ``MAX_RESTARTS`` times) and the artifact's header
says how often. Keys attached to a lease (Kubernetes attaches them to Events only) are left out and
counted: they would expire anyway, and a restored copy must not outlive its TTL (docs/backup.md).

Restore: the artifact is read through once to check it (format, checksum, counts) before anything is
written; then, into a prefix that must be empty, in transactions of at most ``TXN_OPS`` puts, a few in
flight at once.
"""

from __future__ import annotations

import collections
import concurrent.futures
import datetime
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils import keyspace
from ansible_collections.etcdproxy.operator.plugins.module_utils.backup import ArtifactError, Reader, Writer
from ansible_collections.etcdproxy.operator.plugins.module_utils.coregrpc import CompactedError, CoreKV, Page

PAGE_KEYS = 1000
FIRST_PAGE_KEYS = 100  # before the values' size is known
MIN_PAGE_KEYS = 16
PAGE_BYTES = 4 << 20  # aimed-at bytes of one page (two are held: this one and the one fetched ahead)
MAX_RESTARTS = 5
TXN_OPS = 128  # etcd's default --max-txn-ops
TXN_BYTES = 1 << 20  # raw key+value bytes per transaction, well under etcd's 1.5 MiB request limit
PROGRESS_KEYS = 10_000  # a progress report (keys, bytes so far) after this many keys
TXN_IN_FLIGHT = 4  # transactions sent at once (etcd commits them in one raft batch); memory: 4 x TXN_BYTES

Progress = Callable[[int, int], None]  # (keys, bytes) so far


class PrefixNotEmptyError(RuntimeError):
    """A restore target already has keys (a restore never overwrites a tenant in place)."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def next_limit(page: Page) -> int:
    """Keys to ask for next so that a page holds about PAGE_BYTES."""
    if not page.kvs:
        return PAGE_KEYS
    size = sum(len(kv.key) + len(kv.value) for kv in page.kvs)
    return max(MIN_PAGE_KEYS, min(PAGE_KEYS, PAGE_BYTES * len(page.kvs) // max(size, 1)))


def pages(kv: CoreKV, prefix: bytes, revision: int = 0, first_keys: int = FIRST_PAGE_KEYS) -> Iterator[Page]:
    """The keys under ``prefix`` page after page; ``revision`` 0 means "now", fixed by the first page for
    all the others. The next page is fetched while the caller works on this one (one page ahead)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ahead:
        page = kv.range(prefix, limit=first_keys, revision=revision)
        revision = revision or page.revision
        while True:
            following = None
            if page.more and page.kvs:
                following = ahead.submit(kv.range, prefix, page.kvs[-1].key + b"\x00", next_limit(page), revision)
            yield Page(revision, page.kvs, page.more)
            if following is None:
                return
            page = following.result()


def backup(kv: CoreKV, name: str, out_path: str, first_keys: int = FIRST_PAGE_KEYS,
           progress: Progress | None = None) -> dict[str, Any]:
    """Write tenant ``name``'s keys at one revision to ``out_path`` (atomically: a temporary file renamed
    at the end). Returns the artifact's summary (header and trailer). ``progress`` hears every
    PROGRESS_KEYS keys."""
    prefix = keyspace.tenant_prefix(name)
    restarts = 0
    while True:
        started = _now()
        fd, tmp = tempfile.mkstemp(prefix=".backup-", dir=os.path.dirname(os.path.abspath(out_path)))
        try:
            with os.fdopen(fd, "wb") as out:
                summary = _write_artifact(kv, name, prefix, out, started, restarts, first_keys, progress)
            os.replace(tmp, out_path)
            return summary
        except CompactedError:
            restarts += 1
            if restarts > MAX_RESTARTS:
                raise
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _write_artifact(kv: CoreKV, name: str, prefix: bytes, out: Any, started: str, restarts: int,
                    first_keys: int, progress: Progress | None) -> dict[str, Any]:
    writer: Writer | None = None
    leased = kept = size = 0
    revision = 0
    cut = len(prefix)
    for page in pages(kv, prefix, first_keys=first_keys):
        revision = page.revision
        if writer is None:  # the header names the revision, known from the first page
            writer = Writer(out, {"storage": name, "prefix": prefix.decode(), "revision": revision,
                                  "startedAt": started, "restarts": restarts})
        for item in page.kvs:
            if item.lease:
                leased += 1
                continue
            writer.add(item.key[cut:], item.value)
            kept += 1
            size += len(item.key) - cut + len(item.value)
            if progress and kept % PROGRESS_KEYS == 0:
                progress(kept, size)
    assert writer is not None  # the first page always comes
    trailer = writer.close({"finishedAt": _now(), "leasedKeysSkipped": leased})
    return {"storage": name, "revision": revision, "restarts": restarts, "startedAt": started, **trailer}


def verify(path: str, expect_sha256: str | None = None) -> dict[str, Any]:
    """Read an artifact through without writing anything; its header and trailer. ArtifactError if it is
    damaged, or with ``expect_sha256`` if it is not the artifact its backup recorded."""
    with open(path, "rb") as src:
        reader = Reader(src)
        for _ in reader.records():
            pass
        summary = {**reader.header, **(reader.trailer or {})}
    if expect_sha256 and summary.get("sha256") != expect_sha256:
        raise ArtifactError(f"it is not the artifact its backup recorded (sha256 {str(summary.get('sha256'))[:16]}…, "
                            f"recorded {expect_sha256[:16]}…): the object was replaced after the backup")
    return summary


def restore(kv: CoreKV, name: str, path: str, progress: Progress | None = None,
            expect_sha256: str | None = None) -> dict[str, Any]:
    """Fill the empty prefix of tenant ``name`` from the artifact at ``path`` (checked first: whole, and with
    ``expect_sha256`` the one its backup recorded); ``progress`` hears about every PROGRESS_KEYS keys written."""
    summary = verify(path, expect_sha256)
    prefix = keyspace.tenant_prefix(name)
    if kv.count(prefix):
        raise PrefixNotEmptyError(f"the prefix {prefix.decode()} already has keys: a restore fills an empty one")
    written = 0
    in_flight: collections.deque[concurrent.futures.Future] = collections.deque()

    def settle(limit: int) -> None:  # wait for all but ``limit`` transactions; their errors surface here
        nonlocal written
        while len(in_flight) > limit:
            before = written
            written += in_flight.popleft().result()
            if progress and written // PROGRESS_KEYS > before // PROGRESS_KEYS:
                progress(written, 0)

    with open(path, "rb") as src, concurrent.futures.ThreadPoolExecutor(max_workers=TXN_IN_FLIGHT) as pool:
        reader = Reader(src)
        items: list[tuple[bytes, bytes]] = []
        size = 0
        for key, value in reader.records():
            items.append((prefix + key, value))
            size += len(key) + len(value)
            if len(items) >= TXN_OPS or size >= TXN_BYTES:
                settle(TXN_IN_FLIGHT - 1)
                in_flight.append(pool.submit(kv.put_all, items))
                items, size = [], 0
        if items:
            in_flight.append(pool.submit(kv.put_all, items))
        settle(0)
    if written != summary["keys"]:
        raise ArtifactError(f"wrote {written} keys, the artifact holds {summary['keys']}")
    return {**summary, "restoredTo": prefix.decode(), "written": written}


def count(kv: CoreKV, prefix: bytes) -> int:
    return kv.count(prefix)
