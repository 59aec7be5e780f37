"""Runs last: a certificate that comes due with no event at all is renewed at its due time, although the
periodic reconcile (watches.yaml) is hours away. The shortest serving certificate admission allows (10 min,
dated 5 min back) comes due 5 min after it is issued; nothing touches the EtcdStorage meanwhile, and the
operator is not restarted (a restart reconciles everything, so the suite's restarts would blur the check:
this test waits on its own)."""

from __future__ import annotations

import base64
import datetime

from ansible_collections.etcdproxy.operator.plugins.module_utils import names
from ansible_collections.etcdproxy.operator.plugins.module_utils.certs.decide import renewal_time
from ansible_collections.etcdproxy.operator.plugins.module_utils.x509 import CLOCK_SKEW
from cryptography import x509
from kubernetes import client

from localcp.admin import OPERATOR_NAMESPACE
from localcp.probes import wait_for


def serving_certificate(api: client.ApiClient, name: str) -> x509.Certificate:
    secret = client.CoreV1Api(api).read_namespaced_secret(names.serving(name), OPERATOR_NAMESPACE)
    return x509.load_pem_x509_certificate(base64.b64decode(secret.data["tls.crt"]))


def test_a_certificate_coming_due_is_renewed_at_its_due_time(storages, api):
    name = storages.unique("duesoon")
    storages.create(name, {"replicas": 1, "servingCertificateValidity": "10m"})
    storages.wait_condition(name, "Ready", "True")
    old = serving_certificate(api, name)
    due = renewal_time(old)  # certs/decide.py: two thirds of its life
    left = (due - datetime.datetime.now(datetime.UTC)).total_seconds() + 90
    wait_for(f"the serving certificate due at {due} renewed", lambda: serving_certificate(
        api, name).serial_number != old.serial_number, max(left, 1), None, None, interval=1)
    new = serving_certificate(api, name)
    # Issued at its due time (a certificate is dated CLOCK_SKEW before its issue), not by some later sweep.
    issued = new.not_valid_before_utc + CLOCK_SKEW
    assert due <= issued <= due + datetime.timedelta(seconds=90), (due, issued)
