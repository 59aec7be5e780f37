"""ansible-runner plugin: POST every job event to ansible-operator's event API.

ansible-operator writes ``runner_http_url`` (a unix socket path) and
``runner_http_path`` (``/events/``) into the runner's ``env/settings`` and reads
the events back to learn each task's result. Without a plugin registered as
``http`` under ``ansible_runner.plugins`` every reconcile fails with "did not
receive playbook_on_stats event".

The archived ``ansible-runner-http`` package does the same with
requests-unixsocket, which breaks with current requests. This one uses only
the standard library and keeps one connection per runner process.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
from typing import Any

logger = logging.getLogger("ansible-runner")


class UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTP/1.1 connection over a unix stream socket."""

    def __init__(self, socket_path: str, timeout: float = 30.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


_connections: dict[str, UnixHTTPConnection] = {}


def _settings(runner_config: Any) -> tuple[str | None, str]:
    settings = getattr(runner_config, "settings", None) or {}
    return settings.get("runner_http_url"), settings.get("runner_http_path") or "/"


def post(socket_path: str, url_path: str, payload: dict[str, Any]) -> int:
    """POST ``payload`` as JSON; retry once on a dropped keep-alive connection."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    for attempt in (1, 2):
        conn = _connections.get(socket_path)
        if conn is None:
            conn = _connections[socket_path] = UnixHTTPConnection(socket_path)
        try:
            conn.request("POST", url_path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException):
            conn.close()
            _connections.pop(socket_path, None)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def send(runner_config: Any, data: dict[str, Any]) -> None:
    socket_path, url_path = _settings(runner_config)
    if not socket_path:
        return
    try:
        status = post(socket_path, url_path, data)
    except (OSError, http.client.HTTPException) as exc:
        logger.warning("could not post event to %s: %s", socket_path, exc)
        return
    if status >= 300:
        logger.warning("event API at %s answered HTTP %s", socket_path, status)


def status_handler(runner_config: Any, data: dict[str, Any]) -> None:
    # ansible-operator drops status events (they have no uuid), and the
    # "starting" one carries the whole process environment: do not send them.
    return None


def event_handler(runner_config: Any, data: dict[str, Any]) -> None:
    send(runner_config, data)
