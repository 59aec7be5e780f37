"""The core etcd's KV API over gRPC, for moving a tenant's keys in bulk (backup and restore).

Everything else the operator asks the core goes through its JSON gateway (coreetcd.py): a few small calls
per reconcile. Copying a tenant is different: through the gateway every value is base64 in JSON, encoded
by etcd on one core and decoded by us on the other, which held a backup to 39 % of what ``etcdctl`` reads
(docs/backup.md). Here values travel as protobuf bytes, with grpcio's C core doing the work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
from ansible_collections.etcdproxy.operator.plugins.module_utils import etcdpb, keyspace

KV = "/etcdserverpb.KV/"
# No message cap of our own: a page's size is bounded by how many keys it asks for (prefixcopy.py).
OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


class CompactedError(RuntimeError):
    """The revision asked for has been compacted away."""


@dataclass(frozen=True)
class Page:
    revision: int
    kvs: list  # etcdpb.KeyValue
    more: bool


class CoreKV:
    """KV calls on one core endpoint (``https://host:port``) with the core client certificate (PEM text)."""

    def __init__(self, endpoint: str, ca: str, cert: str, key: str, timeout: float = 30.0) -> None:
        creds = grpc.ssl_channel_credentials(ca.encode(), key.encode(), cert.encode())
        target = endpoint.removeprefix("https://").rstrip("/")
        self.channel = grpc.secure_channel(target, creds, options=OPTIONS)
        self.timeout = timeout
        self._range = self.channel.unary_unary(KV + "Range", request_serializer=_serialize,
                                               response_deserializer=etcdpb.RangeResponse.FromString)
        self._txn = self.channel.unary_unary(KV + "Txn", request_serializer=_serialize,
                                             response_deserializer=etcdpb.TxnResponse.FromString)

    def close(self) -> None:
        self.channel.close()

    def range(self, prefix: bytes, start: bytes | None = None, limit: int = 0, revision: int = 0) -> Page:
        """Keys under ``prefix`` from ``start`` on, at ``revision`` (0: now), at most ``limit`` of them."""
        key, end = keyspace.prefix_range(prefix)
        request = etcdpb.RangeRequest(key=start or key, range_end=end, limit=limit, revision=revision)
        answer = self._call(self._range, request)
        return Page(int(answer.header.revision), list(answer.kvs), bool(answer.more))

    def count(self, prefix: bytes) -> int:
        key, end = keyspace.prefix_range(prefix)
        return int(self._call(self._range, etcdpb.RangeRequest(key=key, range_end=end, count_only=True)).count)

    def put_all(self, items: list[tuple[bytes, bytes]]) -> int:
        """One transaction of puts; the number of keys written."""
        ops = [etcdpb.RequestOp(request_put=etcdpb.PutRequest(key=k, value=v)) for k, v in items]
        self._call(self._txn, etcdpb.TxnRequest(success=ops))
        return len(items)

    def _call(self, method: grpc.UnaryUnaryMultiCallable, request: object) -> object:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            details = exc.details() or "" if hasattr(exc, "details") else str(exc)
            if "compacted" in details:
                raise CompactedError(details) from None
            code = exc.code().name if hasattr(exc, "code") else "error"
            raise RuntimeError(f"{code}: {details}") from None


def _serialize(message: object) -> bytes:
    return message.SerializeToString()


@contextlib.contextmanager
def connect(endpoint: str, ca: str, cert: str, key: str) -> Iterator[CoreKV]:
    kv = CoreKV(endpoint, ca, cert, key)
    try:
        yield kv
    finally:
        kv.close()
