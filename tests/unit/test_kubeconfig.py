"""Where our modules find the API server and how they authenticate, for each kind of kubeconfig they meet."""

from __future__ import annotations

import base64
import datetime
import json
import os
import ssl
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from ansible_collections.etcdproxy.operator.plugins.module_utils import kubeconfig
from ansible_collections.etcdproxy.operator.plugins.module_utils.kubeconfig import KubeconfigError, endpoint
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def write(tmp_path: Path, cluster: dict, user: dict | None = None, extra_contexts: list | None = None) -> str:
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "main",
        "clusters": [{"name": "c", "cluster": cluster}, {"name": "other", "cluster": {"server": "http://127.0.0.9"}}],
        "users": [{"name": "u", "user": user or {}}],
        "contexts": [{"name": "main", "context": {"cluster": "c", "user": "u"}},
                     {"name": "second", "context": {"cluster": "other"}}] + (extra_contexts or []),
    }
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def pem_pair() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_ansible_operators_kubeconfig_basic_auth_naming_the_owner(tmp_path: Path):
    owner = b64(json.dumps({"kind": "EtcdStorage", "name": "a"}))
    path = write(tmp_path, {"server": f"http://{owner}@localhost:8888", "insecure-skip-tls-verify": True},
                 {"username": owner, "password": "unused"})
    where = endpoint(path)
    assert where.server == "http://localhost:8888" and where.ssl_context is None  # no credentials in the URL
    assert where.headers() == {"Authorization": "Basic " + b64(f"{owner}:unused")}


def test_credentials_in_the_server_url_only_are_used_as_kubectl_does(tmp_path: Path):
    where = endpoint(write(tmp_path, {"server": "http://me:s%40cret@127.0.0.1:8080/"}))
    assert where.server == "http://127.0.0.1:8080"
    assert where.headers() == {"Authorization": "Basic " + b64("me:s@cret")}


def test_tokens_and_token_files_relative_to_the_kubeconfig(tmp_path: Path):
    assert endpoint(write(tmp_path, {"server": "http://[::1]:6443"}, {"token": "t1"})).headers() == {
        "Authorization": "Bearer t1"}
    (tmp_path / "token").write_text("t2\n")
    where = endpoint(write(tmp_path, {"server": "http://[::1]:6443"}, {"tokenFile": "token"}))
    assert where.server == "http://[::1]:6443" and where.headers() == {"Authorization": "Bearer t2"}
    (tmp_path / "token").write_text("t3\n")
    assert where.headers() == {"Authorization": "Bearer t3"}  # read on each request: token files rotate


@pytest.mark.parametrize("memory_files", [True, False], ids=["memfd", "temporary directory"])
def test_tls_with_embedded_ca_and_client_certificate(tmp_path: Path, monkeypatch, memory_files: bool):
    cert, key = pem_pair()
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    if not memory_files:  # not Linux
        monkeypatch.delattr(os, "memfd_create")
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *a, **kw: opened.append(str(path)) or real_open(path, *a, **kw))
    where = endpoint(write(tmp_path, {"server": "https://127.0.0.1:6443", "certificate-authority-data": b64(cert),
                                      "tls-server-name": "kubernetes"},
                           {"client-certificate-data": b64(cert), "client-key-data": b64(key)}))
    assert where.ssl_context is not None and where.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert where.ssl_context.get_ca_certs()[0]["subject"] == ((("commonName", "test"),),)
    assert where.server_hostname == "kubernetes" and where.headers() == {}
    assert list(temporary.iterdir()) == []  # the key's temporary copy, if any, is gone
    # with memory files the key is never written to a file system at all
    assert any(p.startswith(str(temporary)) for p in opened) is not memory_files, opened


def test_tls_with_files_relative_to_the_kubeconfig_and_insecure(tmp_path: Path):
    cert, _ = pem_pair()
    (tmp_path / "ca.crt").write_text(cert)
    where = endpoint(write(tmp_path, {"server": "https://h:1", "certificate-authority": "ca.crt"}))
    assert where.ssl_context.get_ca_certs()[0]["subject"] == ((("commonName", "test"),),)
    insecure = endpoint(write(tmp_path, {"server": "https://h:1", "insecure-skip-tls-verify": True}))
    assert insecure.ssl_context.verify_mode == ssl.CERT_NONE and not insecure.ssl_context.check_hostname


def test_contexts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = write(tmp_path, {"server": "http://127.0.0.1:1"}, extra_contexts=[{"name": "bad", "context": {}}])
    assert endpoint(path, "second").server == "http://127.0.0.9"
    with pytest.raises(KubeconfigError, match="no context named 'nope'"):
        endpoint(path, "nope")
    with pytest.raises(KubeconfigError, match="names no cluster"):
        endpoint(path, "bad")
    monkeypatch.setenv("K8S_AUTH_KUBECONFIG", path)
    assert endpoint().server == "http://127.0.0.1:1"  # what ansible-operator exports


def test_an_exec_plugin_is_resolved_by_the_kubernetes_clients_loader(tmp_path: Path):
    plugin = tmp_path / "plugin.py"
    plugin.write_text("import json\nprint(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1', "
                      "'kind': 'ExecCredential', 'status': {'token': 'from-exec'}}))\n")
    path = write(tmp_path, {"server": "http://127.0.0.1:6443"},
                 {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": sys.executable,
                           "args": [str(plugin)], "interactiveMode": "Never"}})
    where = endpoint(path)
    assert where.server == "http://127.0.0.1:6443"
    assert where.headers()["authorization"] == "Bearer from-exec"


def test_in_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cert, _ = pem_pair()
    (tmp_path / "ca.crt").write_text(cert)
    (tmp_path / "token").write_text("sa-1")
    monkeypatch.setattr(kubeconfig, "SERVICE_ACCOUNT", str(tmp_path))
    for name in ("K8S_AUTH_KUBECONFIG", "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    where = endpoint()
    assert where.server == "https://[fd00::1]:443" and where.headers() == {"Authorization": "Bearer sa-1"}
    (tmp_path / "token").write_text("sa-2")  # the kubelet rotates the projected token
    assert where.headers() == {"Authorization": "Bearer sa-2"}
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(KubeconfigError, match="not in a pod"):
        endpoint()
