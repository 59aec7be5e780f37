"""Waiting for things to be up: free ports, health probes over HTTP(S), and a wait that never sleeps
blindly (it polls a condition and fails fast when the process it waits on exits)."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class StartError(RuntimeError):
    """A component did not become healthy; the message names its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(host: str, port: int, timeout: float = 2.0) -> bool:
    """Something accepts a TCP connection at host:port (refused, unreachable or silent: no)."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def wait_for(what: str, check: Callable[[], bool], timeout: float, proc: subprocess.Popen | None = None,
             log: Path | None = None, interval: float = 0.1) -> None:
    """Poll ``check`` until it is true; fail fast if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StartError(f"{what} exited with code {proc.returncode}; see {log}")
        try:
            if check():
                return
        except (OSError, ssl.SSLError, http.client.HTTPException):
            pass
        time.sleep(interval)
    raise StartError(f"{what} not ready after {timeout:.0f}s; see {log}")


def https_get(port: int, path: str, ca: Path | str | None, cert: Path | str | None = None,
              key: Path | str | None = None,
              timeout: float = 2.0, host: str = "127.0.0.1") -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()
    if cert:
        ctx.load_cert_chain(str(cert), str(key))
    return _get(http.client.HTTPSConnection(host, port, context=ctx, timeout=timeout), path)


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Plain-HTTP GET on loopback (health endpoints): status and body."""
    return _get(http.client.HTTPConnection("127.0.0.1", port, timeout=timeout), path)


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
