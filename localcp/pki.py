"""The control plane's certificate files: its CAs and every certificate issued from them."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from ansible_collections.etcdproxy.operator.plugins.module_utils.x509 import (
    CertSpec,
    cert_pem,
    key_pem,
    make_ca,
    make_leaf,
    new_private_key,
)

from localcp.config import NODE_IP, NODE_NAME, OPERATOR_USER


@dataclass
class Pki:
    """Files of the control plane's two CAs and the certs issued from them."""

    dir: Path

    def path(self, name: str, ext: str = "crt") -> Path:
        return self.dir / f"{name}.{ext}"

    def write(self, name: str, cert, key) -> None:
        self.path(name).write_text(cert_pem(cert))
        kp = self.path(name, "key")
        kp.write_text(key_pem(key))
        kp.chmod(0o600)

    def generate(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        year = datetime.timedelta(days=365)
        cas = {}
        for ca in ("etcd-ca", "kube-ca", "front-proxy-ca"):
            key = new_private_key()
            cert = make_ca(CertSpec(common_name=f"localcp {ca}", usage="ca"), key, now, year)
            self.write(ca, cert, key)
            cas[ca] = (cert, key)
        leaves = {
            # name: (ca, spec)
            "etcd-server": ("etcd-ca", CertSpec(common_name="etcd", usage="peer",
                                                dns_names=("localhost",), ip_addresses=("127.0.0.1", NODE_IP))),
            "apiserver-etcd-client": ("etcd-ca", CertSpec(common_name="kube-apiserver", usage="client")),
            # etcd grpc-proxy refuses a backend client cert with a Common Name.
            "operator-etcd-client": ("etcd-ca", CertSpec(organization="etcdproxy-operator", usage="client")),
            "apiserver": ("kube-ca", CertSpec(common_name="kube-apiserver", usage="server",
                                              dns_names=("localhost", "kubernetes", "kubernetes.default",
                                                         "kubernetes.default.svc"),
                                              ip_addresses=("127.0.0.1", "10.96.0.1", NODE_IP))),
            "admin": ("kube-ca", CertSpec(common_name="admin", organization="system:masters", usage="client")),
            "controller-manager": ("kube-ca", CertSpec(common_name="system:kube-controller-manager",
                                                       usage="client")),
            "scheduler": ("kube-ca", CertSpec(common_name="system:kube-scheduler", usage="client")),
            # The operator runs as its ServiceAccount's user name, so config/rbac is what authorizes it
            # (and its requests are countable in the audit log).
            "operator": ("kube-ca", CertSpec(common_name=OPERATOR_USER, organization="system:serviceaccounts",
                                             usage="client")),
            "kwok": ("kube-ca", CertSpec(common_name="kwok", organization="system:masters", usage="client")),
            "front-proxy-client": ("front-proxy-ca", CertSpec(common_name="front-proxy-client", usage="client")),
            # The real node: kubelet and kube-proxy as the users the Node authorizer and the default
            # RBAC expect, kubelet's serving cert, and kube-apiserver's client cert towards kubelet.
            "node": ("kube-ca", CertSpec(common_name=f"system:node:{NODE_NAME}", organization="system:nodes",
                                         usage="client")),
            "kube-proxy": ("kube-ca", CertSpec(common_name="system:kube-proxy", usage="client")),
            "kubelet-serving": ("kube-ca", CertSpec(common_name=NODE_NAME, usage="server", dns_names=(NODE_NAME,),
                                                    ip_addresses=(NODE_IP,))),
            "apiserver-kubelet-client": ("kube-ca", CertSpec(common_name="kube-apiserver-kubelet-client",
                                                             organization="system:masters", usage="client")),
            # The cluster's image registry (localcp/registry.py), which the node's containerd pulls from.
            "registry": ("kube-ca", CertSpec(common_name="registry", usage="server", ip_addresses=(NODE_IP,))),
            # The S3-compatible server of the backup tests (localcp/s3server.py): on loopback, or on the node
            # IP where backup Jobs' pods reach it.
            "s3": ("kube-ca", CertSpec(common_name="s3", usage="server", dns_names=("localhost",),
                                       ip_addresses=("127.0.0.1", NODE_IP))),
            "serving-localhost": ("kube-ca", CertSpec(common_name="localhost", usage="server",
                                                      dns_names=("localhost",), ip_addresses=("127.0.0.1",))),
        }
        for name, (ca, spec) in leaves.items():
            ca_cert, ca_key = cas[ca]
            key = new_private_key()
            self.write(name, make_leaf(spec, key.public_key(), ca_cert, ca_key, now, year), key)
        sa = new_private_key("rsa")
        self.path("sa", "key").write_text(key_pem(sa))
        self.path("sa", "key").chmod(0o600)
        from cryptography.hazmat.primitives import serialization

        self.path("sa", "pub").write_bytes(sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
