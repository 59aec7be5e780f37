"""Copying one tenant's keys out of the core etcd at one revision, and into an empty prefix.

Backup: every key under ``/<name>/`` read at a single revision through etcd's JSON gateway, a page at a
time (memory stays flat for any size): the first page fixes the revision, every further page asks for
that same revision, so the pages form one consistent view. If the core compacts past that revision
mid-way, the backup starts again at a newer one (at most ``MAX_RESTARTS`` times) and the artifact's
header says how often. Keys attached to a lease (Kubernetes attaches them to Events only) are left out
and counted: they would expire anyway, and a restored copy must not outlive its TTL (docs/backup.md).

Restore: the artifact is read through once to check it (format, checksum, counts) before anything is
written; then, into a prefix that must be empty, in transactions of at most ``TXN_OPS`` puts, a few in
flight at once.
"""

from __future__ import annotations

import base64
import collections
import concurrent.futures
import datetime
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils import keyspace
from ansible_collections.etcdproxy.operator.plugins.module_utils.backup import ArtifactError, Reader, Writer

PAGE_KEYS = 1000
MAX_RESTARTS = 5
TXN_OPS = 128  # etcd's default --max-txn-ops
TXN_BYTES = 1 << 20  # raw key+value bytes per transaction, well under etcd's 1.5 MiB request limit
PROGRESS_KEYS = 10_000  # a progress report (keys, bytes so far) after this many keys
TXN_IN_FLIGHT = 8  # transactions sent at once (etcd commits them in one raft batch); memory: 8 x TXN_BYTES


class CompactedError(RuntimeError):
    """The core compacted past the revision a backup reads at."""


class PrefixNotEmptyError(RuntimeError):
    """A restore target already has keys (a restore never overwrites a tenant in place)."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _post(sess: Any, base: str, path: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    resp = sess.post(base + path, json=body, timeout=timeout)
    if resp.status_code != 200:
        if "compacted" in resp.text:
            raise CompactedError(resp.text.strip())
        raise RuntimeError(f"{path}: HTTP {resp.status_code}: {resp.text.strip()[:200]}")
    return resp.json()


def pages(sess: Any, base: str, prefix: bytes, revision: int = 0, page_keys: int = PAGE_KEYS,
          timeout: float = 30.0) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """(revision, kvs) page after page of the keys under ``prefix``; ``revision`` 0 means "now", fixed by
    the first page for all the others. The next page is fetched while the caller works on this one (one
    page ahead, so memory stays at two pages)."""
    start: bytes | None = None
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ahead:
        answer = _post(sess, base, "/v3/kv/range",
                       keyspace.range_body(prefix, limit=page_keys, revision=revision), timeout)
        while True:
            revision = revision or int(answer["header"]["revision"])
            kvs = answer.get("kvs") or []
            following = None
            if answer.get("more") and kvs:
                start = base64.b64decode(kvs[-1]["key"]) + b"\x00"
                following = ahead.submit(_post, sess, base, "/v3/kv/range",
                                         keyspace.range_body(prefix, start=start, limit=page_keys, revision=revision),
                                         timeout)
            yield revision, kvs
            if following is None:
                return
            answer = following.result()


Progress = Callable[[int, int], None]  # (keys, bytes) so far


def backup(sess: Any, base: str, name: str, out_path: str, page_keys: int = PAGE_KEYS,
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
                summary = _write_artifact(sess, base, name, prefix, out, started, restarts, page_keys, progress)
            os.replace(tmp, out_path)
            return summary
        except CompactedError:
            restarts += 1
            if restarts > MAX_RESTARTS:
                raise
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _write_artifact(sess: Any, base: str, name: str, prefix: bytes, out: Any, started: str, restarts: int,
                    page_keys: int, progress: Progress | None) -> dict[str, Any]:
    writer: Writer | None = None
    leased = kept = size = 0
    revision = 0
    for revision, kvs in pages(sess, base, prefix, page_keys=page_keys):
        if writer is None:  # the header names the revision, known from the first page
            writer = Writer(out, {"storage": name, "prefix": prefix.decode(), "revision": revision,
                                  "startedAt": started, "restarts": restarts})
        for kv in kvs:
            if int(kv.get("lease") or 0):
                leased += 1
                continue
            key = base64.b64decode(kv["key"])
            value = base64.b64decode(kv.get("value") or "")
            writer.add(key[len(prefix):], value)
            kept += 1
            size += len(key) - len(prefix) + len(value)
            if progress and kept % PROGRESS_KEYS == 0:
                progress(kept, size)
    assert writer is not None  # the first page always comes
    trailer = writer.close({"finishedAt": _now(), "leasedKeysSkipped": leased})
    return {"storage": name, "revision": revision, "restarts": restarts, "startedAt": started, **trailer}


def verify(path: str) -> dict[str, Any]:
    """Read an artifact through without writing anything; its header and trailer (ArtifactError if bad)."""
    with open(path, "rb") as src:
        reader = Reader(src)
        for _ in reader.records():
            pass
        return {**reader.header, **(reader.trailer or {})}


def restore(sess: Any, base: str, name: str, path: str, timeout: float = 30.0,
            progress: Progress | None = None) -> dict[str, Any]:
    """Fill the empty prefix of tenant ``name`` from the artifact at ``path`` (checked first); ``progress``
    hears about every PROGRESS_KEYS keys written."""
    summary = verify(path)
    prefix = keyspace.tenant_prefix(name)
    if count(sess, base, prefix, timeout):
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

    def send(ops: list[dict[str, Any]]) -> int:
        _post(sess, base, "/v3/kv/txn", {"success": ops}, timeout)
        return len(ops)

    with open(path, "rb") as src, concurrent.futures.ThreadPoolExecutor(max_workers=TXN_IN_FLIGHT) as pool:
        reader = Reader(src)
        ops: list[dict[str, Any]] = []
        size = 0
        for key, value in reader.records():
            ops.append({"request_put": {"key": base64.b64encode(prefix + key).decode(),
                                        "value": base64.b64encode(value).decode()}})
            size += len(key) + len(value)
            if len(ops) >= TXN_OPS or size >= TXN_BYTES:
                settle(TXN_IN_FLIGHT - 1)
                in_flight.append(pool.submit(send, ops))
                ops, size = [], 0
        if ops:
            in_flight.append(pool.submit(send, ops))
        settle(0)
    if written != summary["keys"]:
        raise ArtifactError(f"wrote {written} keys, the artifact holds {summary['keys']}")
    return {**summary, "restoredTo": prefix.decode(), "written": written}


def count(sess: Any, base: str, prefix: bytes, timeout: float = 30.0) -> int:
    answer = _post(sess, base, "/v3/kv/range", keyspace.range_body(prefix, count_only=True), timeout)
    return int(answer.get("count") or 0)
