"""Where the Kubernetes API server is and how to authenticate to it, without importing the kubernetes client.

Importing the ``kubernetes`` package costs ~0.2 s of CPU (it loads every generated model and API class), and
a new EtcdStorage pays it in each of its two reconcile runs, on the path to Ready (docs/design.md, "Our own
HTTP calls to the API"). What a reconcile is given covers almost every kubeconfig: ansible-operator's (its
proxy on localhost, basic auth naming the owner), in-cluster service account credentials, and the usual
kubeconfig of a person (server, CA, client certificate, token, basic auth). Those are read here. Anything
else (an exec plugin, an auth provider, a proxy URL, impersonation, several files in KUBECONFIG) is resolved
by the kubernetes client's own loader, imported only then, and the API is called the same way after it.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import yaml

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"

# kubeconfig fields this file does not read: the kubernetes client's loader resolves them
CLUSTER_DELEGATED = ("proxy-url",)
USER_DELEGATED = ("exec", "auth-provider", "as", "as-groups", "as-uid", "as-user-extra")


class KubeconfigError(ValueError):
    """A kubeconfig (or in-cluster environment) that names no usable API server."""


@dataclass(frozen=True)
class Endpoint:
    """``server``: scheme://host[:port][/path], without credentials. ``ssl_context``: for https. ``headers``:
    the authentication headers, asked for on each request (token files rotate, exec tokens expire)."""

    server: str
    ssl_context: ssl.SSLContext | None = None
    server_hostname: str | None = None
    proxy: str | None = None
    headers: Callable[[], dict[str, str]] = field(default=dict)


def endpoint(kubeconfig: str | None = None, context: str | None = None) -> Endpoint:
    """From ``kubeconfig``, else K8S_AUTH_KUBECONFIG (what ansible-operator exports), else KUBECONFIG, else the
    pod's service account."""
    path = kubeconfig or os.environ.get("K8S_AUTH_KUBECONFIG") or os.environ.get("KUBECONFIG")
    if not path:
        return in_cluster()
    if os.pathsep in path:
        return delegated(path, context)
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    cluster, user = selected(config, context, path)
    if any(k in cluster for k in CLUSTER_DELEGATED) or any(k in user for k in USER_DELEGATED):
        return delegated(path, context)
    return from_kubeconfig(cluster, user, os.path.dirname(os.path.abspath(path)))


def selected(config: dict[str, Any], context: str | None, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cluster and user entries of ``context`` (default: the current context)."""
    name = context or config.get("current-context")
    if not name:
        raise KubeconfigError(f"{path}: no context given and no current-context")

    def entry(section: str, key: str, wanted: str) -> dict[str, Any]:
        for item in config.get(section) or []:
            if item.get("name") == wanted:
                return item.get(key) or {}
        raise KubeconfigError(f"{path}: no {key} named {wanted!r}")

    ctx = entry("contexts", "context", name)
    if not ctx.get("cluster"):
        raise KubeconfigError(f"{path}: context {name!r} names no cluster")
    user = entry("users", "user", ctx["user"]) if ctx.get("user") else {}
    return entry("clusters", "cluster", ctx["cluster"]), user


def from_kubeconfig(cluster: dict[str, Any], user: dict[str, Any], base: str) -> Endpoint:
    """``base``: the kubeconfig's directory, which relative file names in it are relative to (as kubectl)."""
    if not cluster.get("server"):
        raise KubeconfigError("the kubeconfig's cluster has no server")
    parts = urlsplit(cluster["server"])
    server = urlunsplit((parts.scheme, host_port(parts), parts.path.rstrip("/"), "", ""))

    def path_of(name: str) -> str:
        return os.path.join(base, os.path.expanduser(name))

    headers: Callable[[], dict[str, str]] = dict
    if user.get("token"):
        token = str(user["token"])
        headers = lambda: {"Authorization": f"Bearer {token}"}  # noqa: E731
    elif user.get("tokenFile"):
        token_file = path_of(user["tokenFile"])
        headers = lambda: {"Authorization": f"Bearer {read_text(token_file)}"}  # noqa: E731
    elif user.get("username") or parts.username:  # the user's entry first, else the server URL's (kubectl)
        pair = (f"{user['username']}:{user.get('password') or ''}" if user.get("username")
                else f"{unquote(parts.username or '')}:{unquote(parts.password or '')}")
        basic = base64.b64encode(pair.encode()).decode()
        headers = lambda: {"Authorization": f"Basic {basic}"}  # noqa: E731

    if parts.scheme != "https":
        return Endpoint(server=server, headers=headers)
    ca_data = decoded(cluster.get("certificate-authority-data"))
    ca_file = path_of(cluster["certificate-authority"]) if cluster.get("certificate-authority") else None
    context = tls_context(ca_file, ca_data, insecure=bool(cluster.get("insecure-skip-tls-verify")))
    cert = decoded(user.get("client-certificate-data")) or (
        read_text(path_of(user["client-certificate"])) if user.get("client-certificate") else None)
    key = decoded(user.get("client-key-data")) or (
        read_text(path_of(user["client-key"])) if user.get("client-key") else None)
    if cert and key:
        load_client_certificate(context, cert, key)
    return Endpoint(server=server, ssl_context=context, server_hostname=cluster.get("tls-server-name") or None,
                    headers=headers)


def host_port(parts: Any) -> str:
    """host[:port] of a URL, without the user information (bracketed if IPv6)."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def in_cluster() -> Endpoint:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeconfigError("no kubeconfig given (K8S_AUTH_KUBECONFIG, KUBECONFIG) and not in a pod "
                              "(KUBERNETES_SERVICE_HOST/PORT are not set)")
    if ":" in host:
        host = f"[{host}]"
    token_file = os.path.join(SERVICE_ACCOUNT, "token")
    return Endpoint(server=f"https://{host}:{port}",
                    ssl_context=tls_context(os.path.join(SERVICE_ACCOUNT, "ca.crt"), None, insecure=False),
                    headers=lambda: {"Authorization": f"Bearer {read_text(token_file)}"})


def delegated(path: str, context: str | None) -> Endpoint:
    """What the kubernetes client's own loader makes of a kubeconfig this file does not read."""
    from kubernetes import client, config  # only here: ~0.2 s

    cfg = client.Configuration()
    config.load_kube_config(config_file=path, context=context, client_configuration=cfg, persist_config=False)

    def headers() -> dict[str, str]:
        out = {}
        for auth in cfg.auth_settings().values():
            if auth.get("in") == "header" and auth.get("value"):
                out[auth["key"]] = auth["value"]
        return out

    server = cfg.host.rstrip("/")
    if not server.startswith("https"):
        return Endpoint(server=server, proxy=cfg.proxy, headers=headers)
    context_ = tls_context(cfg.ssl_ca_cert, None, insecure=not cfg.verify_ssl)
    if cfg.cert_file and cfg.key_file:
        context_.load_cert_chain(cfg.cert_file, cfg.key_file)
    return Endpoint(server=server, ssl_context=context_, server_hostname=cfg.tls_server_name, proxy=cfg.proxy,
                    headers=headers)


def tls_context(ca_file: str | None, ca_data: str | None, insecure: bool) -> ssl.SSLContext:
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=ca_file, cadata=ca_data)


def load_client_certificate(context: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    """ssl loads a certificate and key only from files. On Linux they are anonymous memory files
    (memfd_create, opened through /proc/self/fd): the key never reaches a filesystem, and a process killed
    while loading it leaves nothing behind. Elsewhere a private directory, removed after loading."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fds = []
        try:
            for name, text in (("tls.crt", cert_pem), ("tls.key", key_pem)):
                fds.append(os.memfd_create(name, os.MFD_CLOEXEC))
                with os.fdopen(fds[-1], "wb", closefd=False) as f:
                    f.write(text.encode())
            context.load_cert_chain(f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}")
        finally:
            for fd in fds:
                os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="etcdproxy-kube-") as d:
        cert_file, key_file = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
        for name, text in ((cert_file, cert_pem), (key_file, key_pem)):
            with open(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as f:
                f.write(text)
        context.load_cert_chain(cert_file, key_file)


def decoded(data: str | None) -> str | None:
    return base64.b64decode(data).decode() if data else None


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read().strip()
