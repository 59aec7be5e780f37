"""Talking to the core etcd itself, with the admin's core client certificate.

Through etcd's HTTP endpoints on the client URL (``/health`` and the JSON gateway ``/v3/...``) with
``urllib3`` (which the API client, module_utils/kube.py, imports anyway; ``requests`` on top of it cost every
reconcile ~0.035 s more to import), in the TLS context the API client builds from a kubeconfig's data: the
CA is loaded from memory, the certificate and key are files only while ssl loads them.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from typing import Any

import urllib3
from ansible_collections.etcdproxy.operator.plugins.module_utils.cleanup import (
    deleterange_body,
    lease_ids,
    lease_markers_body,
)
from ansible_collections.etcdproxy.operator.plugins.module_utils.kubeconfig import load_client_certificate, tls_context
from ansible_collections.etcdproxy.operator.plugins.module_utils.secretdata import secret_text


def material(configmap: dict[str, Any] | None, secret: dict[str, Any] | None, ca_key: str) -> tuple[str, str, str]:
    """(CA, cert, key) PEM text from the admin's ConfigMap and TLS Secret (empty strings when absent)."""
    text = secret_text(secret)
    return ((configmap or {}).get("data") or {}).get(ca_key, ""), text.get("tls.crt", ""), text.get("tls.key", "")


class CoreAnswerError(Exception):
    """A core endpoint answered, but not with what was asked (an HTTP status other than 200); ``text``: its
    answer."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}")
        self.text = text


# What a call through a ``session`` raises when it gets no answer (urllib3's errors) or a wrong one.
CALL_ERRORS: tuple[type[Exception], ...] = (urllib3.exceptions.HTTPError, CoreAnswerError)


@contextlib.contextmanager
def session(ca_pem: str, cert_pem: str, key_pem: str) -> Iterator[urllib3.PoolManager]:
    """A ``urllib3`` pool with the core client certificate that trusts only the core CA (the TLS context the
    API client builds from a kubeconfig's data, kubeconfig.py): calls in one reconcile share its connection
    (one TLS handshake). No retries: each endpoint is tried once, in turn."""
    if not ca_pem:  # an empty bundle would make ssl trust the system's CAs instead
        raise ValueError("the core etcd CA bundle is empty")
    context = tls_context(None, ca_pem, insecure=False)
    load_client_certificate(context, cert_pem, key_pem)
    pool = urllib3.PoolManager(ssl_context=context, retries=False)
    try:
        yield pool
    finally:
        pool.clear()


def post(sess: Any, url: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    """POST ``body`` as JSON to a core endpoint's gateway; its JSON answer, or CoreAnswerError."""
    resp = sess.request("POST", url, json=body, timeout=timeout)
    if resp.status != 200:
        raise CoreAnswerError(resp.status, resp.data.decode(errors="replace"))
    return resp.json()


def health(endpoints: list[str], sess: Any, timeout: float = 3.0) -> str | None:
    """None when some endpoint reports healthy; otherwise what each endpoint said."""
    errors = []
    for endpoint in endpoints:
        try:
            resp = sess.request("GET", endpoint.rstrip("/") + "/health", timeout=timeout)
            if resp.status == 200 and resp.json().get("health") == "true":
                return None
            errors.append(f"{endpoint}: HTTP {resp.status}")
        except (*CALL_ERRORS, ValueError) as exc:
            errors.append(f"{endpoint}: {type(exc).__name__}")
    return "; ".join(errors) or "no endpoints"


def delete_tenant(endpoints: list[str], name: str, ca_pem: str, cert_pem: str, key_pem: str,
                  timeout: float = 10.0) -> tuple[int, int]:
    """Delete every key under ``/<name>/`` on the core etcd and revoke every lease the tenant was granted
    (its markers name them); returns (keys deleted, leases revoked).

    Tries each endpoint in turn; raises RuntimeError naming them all if none answered.
    """
    errors = []
    with session(ca_pem, cert_pem, key_pem) as sess:
        for endpoint in endpoints:
            base = endpoint.rstrip("/")
            try:
                deleted = int(post(sess, base + "/v3/kv/deleterange", deleterange_body(name), timeout).get("deleted")
                              or 0)
                return deleted, revoke_leases(sess, base, name, timeout)
            except CALL_ERRORS as exc:
                errors.append(f"{endpoint}: {exc if isinstance(exc, CoreAnswerError) else type(exc).__name__}")
    raise RuntimeError("no core etcd endpoint answered: " + "; ".join(errors))


def revoke_leases(sess: Any, base: str, name: str, timeout: float) -> int:
    """Revoke the tenant's leases, a page of markers at a time (a revoked lease takes its marker along)."""
    revoked, after = 0, b""
    while True:
        page = post(sess, base + "/v3/kv/range", lease_markers_body(name, after), timeout)
        for lease in lease_ids(page):
            try:
                post(sess, base + "/v3/lease/revoke", {"ID": str(lease)}, timeout)
                revoked += 1
            except CoreAnswerError as exc:
                if "lease not found" not in exc.text:  # expired meanwhile: nothing to do
                    raise
        if not page.get("more") or not page.get("kvs"):
            return revoked
        after = base64.b64decode(page["kvs"][-1]["key"])
