"""Talking to the core etcd itself, with the admin's core client certificate.

Through etcd's HTTP endpoints on the client URL (``/health`` and the JSON gateway ``/v3/...``) and the
``requests`` library; the CA, certificate and key exist as files only for the duration of a call, in a
private temporary directory.
"""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils.cleanup import (
    deleterange_body,
    lease_ids,
    lease_markers_body,
)
from ansible_collections.etcdproxy.operator.plugins.module_utils.secretdata import secret_text


@contextlib.contextmanager
def tls_files(ca_pem: str, cert_pem: str, key_pem: str) -> Iterator[dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="etcdproxy-") as tmp:
        paths = {}
        for fname, text in (("ca.crt", ca_pem), ("tls.crt", cert_pem), ("tls.key", key_pem)):
            path = os.path.join(tmp, fname)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as fh:
                fh.write(text)
            paths[fname] = path
        yield paths


def material(configmap: dict[str, Any] | None, secret: dict[str, Any] | None, ca_key: str) -> tuple[str, str, str]:
    """(CA, cert, key) PEM text from the admin's ConfigMap and TLS Secret (empty strings when absent)."""
    text = secret_text(secret)
    return ((configmap or {}).get("data") or {}).get(ca_key, ""), text.get("tls.crt", ""), text.get("tls.key", "")


@contextlib.contextmanager
def session(ca_pem: str, cert_pem: str, key_pem: str) -> Iterator[Any]:
    """A ``requests`` session with the core client certificate: calls in one reconcile share its
    connection (one TLS handshake)."""
    import requests

    with tls_files(ca_pem, cert_pem, key_pem) as paths:
        sess = requests.Session()
        # Only our CA and certificate, never the environment's (REQUESTS_CA_BUNDLE, proxies, netrc):
        # with trust_env an environment CA bundle would replace the session's own.
        sess.trust_env = False
        sess.verify, sess.cert = paths["ca.crt"], (paths["tls.crt"], paths["tls.key"])
        try:
            yield sess
        finally:
            sess.close()


def health(endpoints: list[str], sess: Any, timeout: float = 3.0) -> str | None:
    """None when some endpoint reports healthy; otherwise what each endpoint said."""
    import requests

    errors = []
    for endpoint in endpoints:
        try:
            resp = sess.get(endpoint.rstrip("/") + "/health", timeout=timeout)
            if resp.status_code == 200 and resp.json().get("health") == "true":
                return None
            errors.append(f"{endpoint}: HTTP {resp.status_code}")
        except (requests.RequestException, ValueError) as exc:
            errors.append(f"{endpoint}: {type(exc).__name__}")
    return "; ".join(errors) or "no endpoints"


def delete_tenant(endpoints: list[str], name: str, ca_pem: str, cert_pem: str, key_pem: str,
                  timeout: float = 10.0) -> tuple[int, int]:
    """Delete every key under ``/<name>/`` on the core etcd and revoke every lease the tenant was granted
    (its markers name them); returns (keys deleted, leases revoked).

    Tries each endpoint in turn; raises RuntimeError naming them all if none answered.
    """
    import requests

    errors = []
    with session(ca_pem, cert_pem, key_pem) as sess:
        for endpoint in endpoints:
            base = endpoint.rstrip("/")
            try:
                resp = sess.post(base + "/v3/kv/deleterange", json=deleterange_body(name), timeout=timeout)
                if resp.status_code != 200:
                    errors.append(f"{endpoint}: HTTP {resp.status_code}")
                    continue
                deleted = int(resp.json().get("deleted") or 0)
                return deleted, revoke_leases(sess, base, name, timeout)
            except requests.RequestException as exc:
                errors.append(f"{endpoint}: {type(exc).__name__}")
    raise RuntimeError("no core etcd endpoint answered: " + "; ".join(errors))


def revoke_leases(sess: Any, base: str, name: str, timeout: float) -> int:
    """Revoke the tenant's leases, a page of markers at a time (a revoked lease takes its marker along)."""
    revoked, after = 0, b""
    while True:
        resp = sess.post(base + "/v3/kv/range", json=lease_markers_body(name, after), timeout=timeout)
        resp.raise_for_status()
        page = resp.json()
        for lease in lease_ids(page):
            answer = sess.post(base + "/v3/lease/revoke", json={"ID": str(lease)}, timeout=timeout)
            if answer.status_code == 200:
                revoked += 1
            elif "lease not found" not in answer.text:  # expired meanwhile: nothing to do
                answer.raise_for_status()
        if not page.get("more") or not page.get("kvs"):
            return revoked
        after = base64.b64decode(page["kvs"][-1]["key"])
