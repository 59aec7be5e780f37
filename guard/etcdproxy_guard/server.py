"""The guard: a gRPC server in front of the tenant's ``etcd grpc-proxy``.

It terminates the tenant's mutual TLS (serving cert + the tenant client CA), looks at nothing but
the method name for almost every call, forwards allowed calls to the proxy as raw bytes, answers
``Maintenance/Status`` itself and refuses the rest (see ``policy``). Only LeaseGrant requests are
decoded (to refuse a chosen lease ID).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

from . import etcdpb, policy
from .tlsfiles import Reloader

log = logging.getLogger("etcdproxy_guard")

# k8s.io/apiserver's etcd client pings every 30 s (also without active calls): permit that.
SERVER_OPTIONS_BASE: list[tuple[str, Any]] = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.keepalive_time_ms", 60000),
    ("grpc.keepalive_timeout_ms", 20000),
    ("grpc.max_send_message_length", -1),
]
BACKEND_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.keepalive_permit_without_calls", 1),
]
# Metadata that belongs to this hop and must not be copied to the proxy.
_HOP_METADATA = ("user-agent", "grpc-", ":", "te", "content-type")


def forwardable_metadata(metadata: Any) -> tuple[tuple[str, Any], ...]:
    """The caller's metadata (e.g. etcd's ``hasleader``) minus what belongs to this hop."""
    if not metadata:
        return ()
    return tuple((m.key, m.value) for m in metadata if not m.key.startswith(_HOP_METADATA))


@dataclass
class Config:
    listen: str
    backend: str
    cert_file: str
    key_file: str
    client_ca_file: str
    health_listen: str = ""
    report_version: str = "3.5.0"
    max_request_bytes: int = 4 * 1024 * 1024


@dataclass
class Counters:
    forwarded: int = 0
    local: int = 0
    refused: dict[str, int] = field(default_factory=dict)


def status_reply(report_version: str) -> bytes:
    """What the guard says about "its etcd": a version and nothing about the core cluster.

    k8s.io/apiserver uses watch progress requests only if it sees etcd >= 3.5.13 (or 3.4.31 in
    3.4). The stock grpc-proxy drops those requests (etcd issue 19710), so the default reported
    version is 3.5.0: the API server then reads consistent lists from etcd instead of waiting
    ~3 s for a progress notification that never comes.
    """
    return etcdpb.StatusResponse(header=etcdpb.ResponseHeader(), version=report_version).SerializeToString()


class Guard(grpc.GenericRpcHandler):
    def __init__(self, config: Config) -> None:
        self.config = config
        self.counters = Counters()
        self._status = status_reply(config.report_version)
        self._backend = aio.insecure_channel(config.backend, options=BACKEND_OPTIONS)
        self._unary: dict[str, Callable[..., Any]] = {}
        self._stream: dict[str, Callable[..., Any]] = {}

    # grpc.GenericRpcHandler
    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        decision = policy.decide(method)
        if decision.action is policy.Action.FORWARD_UNARY:
            if method == policy.LEASE_GRANT:
                return grpc.unary_unary_rpc_method_handler(self._lease_grant)
            return grpc.unary_unary_rpc_method_handler(self._forward_unary(method))
        if decision.action is policy.Action.FORWARD_STREAM:
            return grpc.stream_stream_rpc_method_handler(self._forward_stream(method))
        if decision.action is policy.Action.LOCAL_STATUS:
            return grpc.unary_unary_rpc_method_handler(self._answer_status)
        code = (grpc.StatusCode.UNIMPLEMENTED if decision.action is policy.Action.UNIMPLEMENTED
                else grpc.StatusCode.PERMISSION_DENIED)
        # A streaming handler works for every call shape and does not wait for a request.
        return grpc.stream_stream_rpc_method_handler(self._refuse(method, code, decision.message))

    def _forward_unary(self, method: str) -> Callable[..., Any]:
        call = self._unary.get(method)
        if call is None:
            call = self._unary[method] = self._backend.unary_unary(method)

        async def forward(request: bytes, context: aio.ServicerContext) -> bytes:
            self.counters.forwarded += 1
            try:
                return await call(request, metadata=forwardable_metadata(context.invocation_metadata()),
                                  timeout=context.time_remaining())
            except aio.AioRpcError as err:
                await context.abort(err.code(), err.details() or "", err.trailing_metadata() or None)
                raise  # unreachable: abort raises

        return forward

    def _forward_stream(self, method: str) -> Callable[..., Any]:
        call_factory = self._stream.get(method)
        if call_factory is None:
            call_factory = self._stream[method] = self._backend.stream_stream(method)

        async def forward(requests: AsyncIterator[bytes], context: aio.ServicerContext) -> AsyncIterator[bytes]:
            self.counters.forwarded += 1
            call = call_factory(requests, metadata=forwardable_metadata(context.invocation_metadata()))
            try:
                async for response in call:
                    yield response
            except aio.AioRpcError as err:
                await context.abort(err.code(), err.details() or "", err.trailing_metadata() or None)
            finally:
                call.cancel()

        return forward

    async def _lease_grant(self, request: bytes, context: aio.ServicerContext) -> bytes:
        try:
            requested = etcdpb.LeaseGrantRequest.FromString(request).ID
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed LeaseGrantRequest")
        refusal = policy.lease_grant_refusal(requested)
        if refusal:
            self._count_refusal(policy.LEASE_GRANT, context)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)
        return await self._forward_unary(policy.LEASE_GRANT)(request, context)

    async def _answer_status(self, request: bytes, context: aio.ServicerContext) -> bytes:
        self.counters.local += 1
        return self._status

    def _refuse(self, method: str, code: grpc.StatusCode, message: str) -> Callable[..., Any]:
        async def refuse(requests: AsyncIterator[bytes], context: aio.ServicerContext) -> AsyncIterator[bytes]:
            self._count_refusal(method, context)
            await context.abort(code, message)
            yield b""  # pragma: no cover - makes this an async generator; abort raises first

        return refuse

    def _count_refusal(self, method: str, context: aio.ServicerContext) -> None:
        self.counters.refused[method] = self.counters.refused.get(method, 0) + 1
        log.warning("refused %s from %s", method, context.peer())

    async def ready(self, timeout: float = 3.0) -> bool:
        """A linearizable Range through the proxy to the core, like the API server's etcd check."""
        request = etcdpb.RangeRequest(key=b"health", count_only=True).SerializeToString()
        try:
            await self._backend.unary_unary(policy.KV + "Range")(request, timeout=timeout)
        except aio.AioRpcError as err:
            log.info("not ready: %s", err.code().name)
            return False
        return True

    async def close(self) -> None:
        await self._backend.close()


async def serve_health(guard: Guard, address: str) -> asyncio.Server:
    """Plain HTTP for kubelet probes: ``/livez`` (the loop answers) and ``/readyz`` (core reachable)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else ""
            if path == "/livez":
                ok = True
            elif path == "/readyz":
                ok = await guard.ready()
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            body = b"ok\n" if ok else b"not ready\n"
            status = b"200 OK" if ok else b"503 Service Unavailable"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    host, _, port = address.rpartition(":")
    return await asyncio.start_server(handle, host or "0.0.0.0", int(port))


async def run(config: Config, stop: asyncio.Event) -> None:
    reloader = Reloader(Path(config.cert_file), Path(config.key_file), Path(config.client_ca_file))
    guard = Guard(config)
    server = aio.server(options=[*SERVER_OPTIONS_BASE,
                                 ("grpc.max_receive_message_length", config.max_request_bytes)])
    server.add_generic_rpc_handlers((guard,))
    server.add_secure_port(config.listen, reloader.credentials())
    await server.start()
    health = await serve_health(guard, config.health_listen) if config.health_listen else None
    log.info("guard listening on %s (backend %s, health %s)", config.listen, config.backend,
             config.health_listen or "off")
    await stop.wait()
    log.info("stopping")
    if health is not None:
        health.close()
    await server.stop(grace=5)
    await guard.close()
