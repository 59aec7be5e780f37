"""Serving TLS material read from files and re-read when they change (kubelet swaps Secret volumes).

gRPC asks ``fetch()`` on every new handshake; it re-reads the three files and hands gRPC a new
configuration only when their bytes changed and the key matches the certificate. A half-written
or mismatched pair keeps the previous configuration, so a rotation never breaks new connections.
Established connections keep the credentials they were made with.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

log = logging.getLogger("etcdproxy_guard.tls")


@dataclass(frozen=True)
class Material:
    cert: bytes
    key: bytes
    client_ca: bytes


def read(cert_file: Path, key_file: Path, client_ca_file: Path) -> Material:
    return Material(cert_file.read_bytes(), key_file.read_bytes(), client_ca_file.read_bytes())


def problem(material: Material) -> str:
    """Why this material cannot serve, or "" if it can. Never includes key bytes."""
    try:
        certs = x509.load_pem_x509_certificates(material.cert)
        key = serialization.load_pem_private_key(material.key, password=None)
        cas = x509.load_pem_x509_certificates(material.client_ca)
    except ValueError as exc:
        return f"unreadable PEM ({type(exc).__name__})"
    if not cas:
        return "client CA bundle is empty"
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if certs[0].public_key().public_bytes(enc, pub) != key.public_key().public_bytes(enc, pub):
        return "private key does not match the serving certificate"
    return ""


class Reloader:
    def __init__(self, cert_file: Path, key_file: Path, client_ca_file: Path) -> None:
        self._files = (cert_file, key_file, client_ca_file)
        self._lock = threading.Lock()
        self.current = read(*self._files)
        bad = problem(self.current)
        if bad:
            raise ValueError(f"serving TLS material in {cert_file.parent}: {bad}")
        self.reloads = 0

    def configuration(self, material: Material) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(material.key, material.cert)],
                                                         root_certificates=material.client_ca)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's certificate_configuration_fetcher: None keeps the current configuration."""
        try:
            fresh = read(*self._files)
        except OSError as exc:
            log.warning("keeping current TLS material: %s", exc.strerror)
            return None
        with self._lock:
            if fresh == self.current:
                return None
            bad = problem(fresh)
            if bad:
                log.warning("keeping current TLS material: %s", bad)
                return None
            self.current = fresh
            self.reloads += 1
        log.info("serving TLS material reloaded (%d)", self.reloads)
        return self.configuration(fresh)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(self.configuration(self.current), self.fetch,
                                                   require_client_authentication=True)
