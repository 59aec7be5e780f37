"""The ansible-runner event plugin, against a real HTTP server on a unix socket."""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
from types import SimpleNamespace
from typing import ClassVar

import etcdproxy_runner_http as plugin


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received: ClassVar[list] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, self.headers["Content-Type"], json.loads(body)))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def test_events_reach_the_socket_and_status_events_do_not(tmp_path):
    sock = str(tmp_path / "events.sock")
    _Handler.received = []
    server = _Server(sock, _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = SimpleNamespace(settings={"runner_http_url": sock, "runner_http_path": "/events/"})
        plugin.status_handler(cfg, {"status": "starting", "env": {"SECRET": "x"}})
        for i in range(3):
            plugin.event_handler(cfg, {"uuid": f"u{i}", "event": "runner_on_ok"})
    finally:
        server.shutdown()
        server.server_close()
    assert [r[2]["uuid"] for r in _Handler.received] == ["u0", "u1", "u2"]
    assert all(path == "/events/" and ctype == "application/json" for path, ctype, _ in _Handler.received)


def test_no_socket_configured_is_a_no_op():
    plugin.event_handler(SimpleNamespace(settings={}), {"uuid": "x"})


def test_unreachable_socket_does_not_raise(tmp_path):
    cfg = SimpleNamespace(settings={"runner_http_url": str(tmp_path / "missing.sock"), "runner_http_path": "/"})
    plugin.event_handler(cfg, {"uuid": "x"})
