"""Runs last: a certificate that comes due with no event at all is renewed at its due time, although the
periodic reconcile (watches.yaml) is hours away. The EtcdStorage was created at the start of the suite
(conftest.py, ``due_soon``) so this wait overlaps every other test."""

from __future__ import annotations

import base64
import datetime

from ansible_collections.etcdproxy.operator.plugins.module_utils.certs.decide import renewal_time
from ansible_collections.etcdproxy.operator.plugins.module_utils.x509 import CLOCK_SKEW
from cryptography import x509
from kubernetes import client

from localcp.admin import OPERATOR_NAMESPACE
from localcp.probes import wait_for

from .conftest import DueSoon, names


def serving_certificate(api: client.ApiClient, name: str) -> x509.Certificate:
    secret = client.CoreV1Api(api).read_namespaced_secret(names.serving(name), OPERATOR_NAMESPACE)
    return x509.load_pem_x509_certificate(base64.b64decode(secret.data["tls.crt"]))


def test_a_certificate_coming_due_is_renewed_at_its_due_time(api, due_soon: DueSoon):
    old = x509.load_pem_x509_certificate(due_soon.serving_pem)
    due = renewal_time(old)
    left = (due - datetime.datetime.now(datetime.UTC)).total_seconds() + 90
    wait_for(f"the serving certificate due at {due} renewed", lambda: serving_certificate(
        api, due_soon.name).serial_number != old.serial_number, max(left, 1), None, None, interval=1)
    new = serving_certificate(api, due_soon.name)
    # Issued at its due time (a certificate is dated CLOCK_SKEW before its issue), not by some later sweep.
    issued = new.not_valid_before_utc + CLOCK_SKEW
    assert due <= issued <= due + datetime.timedelta(seconds=90), (due, issued)
