"""A raw etcd v3 gRPC client for tests and the benchmark: any method, any bytes, real TLS.

etcdctl covers what it can express; this reaches the rest (range ends like ``\\x00``, Txn
compare ranges, Alarm ACTIVATE, Lock/Election, a LeaseGrant with a chosen ID, RangeStream).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from ansible_collections.etcdproxy.operator.plugins.module_utils import etcdpb

KV = "/etcdserverpb.KV/"


class Client:
    def __init__(self, endpoint: str, ca: str | Path, cert: str | Path | None, key: str | Path | None,
                 server_name: str = "", retry_unavailable: bool = False, max_message_bytes: int = 0) -> None:
        """``server_name``: the name to verify when ``endpoint`` is an address (a Service's ClusterIP).
        ``retry_unavailable``: retry a call that failed with UNAVAILABLE, with backoff (up to ~12 s), as
        etcd's Go client retries a request that never reached a server (a proxy pod that went away, a
        Service briefly without a ready endpoint while its Deployment rolls)."""
        target = endpoint.removeprefix("https://").removeprefix("http://")
        creds = grpc.ssl_channel_credentials(
            Path(ca).read_bytes(),
            Path(key).read_bytes() if key else None,
            Path(cert).read_bytes() if cert else None,
        )
        options: list[tuple[str, object]] = []
        if max_message_bytes:  # answers above gRPC's default of 4 MiB (a large range)
            options.append(("grpc.max_receive_message_length", max_message_bytes))
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        if retry_unavailable:
            options.append(("grpc.service_config", json.dumps({"methodConfig": [{
                "name": [{}], "retryPolicy": {"maxAttempts": 5, "initialBackoff": "1s", "maxBackoff": "5s",
                                             "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]})))
        self.channel = grpc.secure_channel(target, creds, options=options)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def unary(self, method: str, request: bytes = b"", timeout: float = 10) -> bytes:
        return self.channel.unary_unary(method)(request, timeout=timeout)

    def server_stream(self, method: str, request: bytes = b"", timeout: float = 10) -> list[bytes]:
        return list(self.channel.unary_stream(method)(request, timeout=timeout))

    def bidi(self, method: str, requests: Iterator[bytes], timeout: float = 10) -> Iterator[bytes]:
        return self.channel.stream_stream(method)(requests, timeout=timeout)

    # KV helpers
    def put(self, key: bytes, value: bytes, lease: int = 0) -> None:
        self.unary(KV + "Put", etcdpb.PutRequest(key=key, value=value, lease=lease).SerializeToString())

    def range(self, key: bytes, range_end: bytes = b"", revision: int = 0,
              timeout: float = 10) -> list[tuple[bytes, bytes]]:
        resp = self.ranged(etcdpb.RangeRequest(key=key, range_end=range_end, revision=revision), timeout)
        return [(kv.key, kv.value) for kv in resp.kvs]

    def ranged(self, request: Any, timeout: float = 10) -> Any:
        """The whole RangeResponse to a RangeRequest with any of its options (sorts, limits, filters)."""
        return etcdpb.RangeResponse.FromString(self.unary(KV + "Range", request.SerializeToString(), timeout))

    def delete(self, key: bytes, range_end: bytes = b"") -> int:
        raw = self.unary(KV + "DeleteRange", etcdpb.DeleteRangeRequest(key=key, range_end=range_end)
                         .SerializeToString())
        return etcdpb.DeleteRangeResponse.FromString(raw).deleted

    def txn(self, request: object) -> object:
        return etcdpb.TxnResponse.FromString(self.unary(KV + "Txn", request.SerializeToString()))

    def grant(self, ttl: int, lease_id: int = 0) -> int:
        raw = self.unary("/etcdserverpb.Lease/LeaseGrant",
                         etcdpb.LeaseGrantRequest(TTL=ttl, ID=lease_id).SerializeToString())
        return etcdpb.LeaseGrantResponse.FromString(raw).ID
