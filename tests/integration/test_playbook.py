"""The one-off provisioning playbook, run with plain ansible-playbook against the local control plane."""

from __future__ import annotations

import os
import re
import subprocess
import time

import yaml

from localcp.admin import OPERATOR_NAMESPACE, ensure_namespace
from localcp.config import REPO

from .conftest import audit_writes


def run_playbook(cp, manifest, *extra, ok=True):
    env = dict(os.environ, KUBECONFIG=str(cp.kubeconfig), K8S_AUTH_KUBECONFIG=str(cp.kubeconfig),
               ETCDPROXY_CORE_ENDPOINTS=",".join(cp.etcd_endpoints), ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    out = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-playbook"), "playbooks/provision.yml",
                          "-e", f"etcdstorage_manifest={manifest}", *extra],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if not ok:
        assert out.returncode != 0, out.stdout[-3000:]
        return 0, out.stdout + out.stderr
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    recap = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)", out.stdout)
    assert recap, out.stdout[-2000:]
    return int(recap.group(2)), out.stdout


def test_playbook_check_mode_then_real_run_then_idempotent(cp, api, storages, tmp_path):
    name = storages.unique("oneoff")
    ns = f"{name}-ns"
    ensure_namespace(api, ns)
    manifest = tmp_path / "es.yaml"
    manifest.write_text(yaml.safe_dump({
        "apiVersion": "etcd.etcdproxy.dev/v1alpha1", "kind": "EtcdStorage", "metadata": {"name": name},
        "spec": {"replicas": 1, "caCertConfigMap": [{"name": "ca", "namespace": ns}],
                 "clientCertSecret": [{"name": "client", "namespace": ns}]}}))

    since = time.time()
    changed, out = run_playbook(cp, manifest, "--check")
    assert changed >= 1  # it would create things ...
    writes = [w for w in audit_writes(cp.audit_log, "admin", since) if name in w.get("requestURI", "")
              or ns in w.get("requestURI", "")]
    assert writes == []  # ... but check mode wrote nothing
    assert storages.deployment(name) is None
    assert "PRIVATE KEY" not in out

    changed, out = run_playbook(cp, manifest)
    assert changed >= 1
    assert "PRIVATE KEY" not in out
    dep, svc = storages.deployment(name), storages.service(name)
    assert dep is not None and svc is not None
    assert dep["spec"]["template"]["metadata"]["annotations"]["etcd.etcdproxy.dev/client-ca-hash"]
    core = storages.core
    assert core.read_namespaced_secret("client", ns).data["tls.key"]
    assert core.read_namespaced_config_map("ca", ns).data["serving-ca.crt"].startswith("-----BEGIN CERTIFICATE")
    assert core.read_namespaced_secret(f"etcd-{name}-ca", OPERATOR_NAMESPACE).data["client-ca.key"]

    since = time.time()
    changed, _ = run_playbook(cp, manifest)
    assert changed == 0
    assert [w for w in audit_writes(cp.audit_log, "admin", since) if name in w.get("requestURI", "")] == []


def test_playbook_refuses_a_clone_it_could_not_fill_before_serving(cp, api, storages, tmp_path):
    name = storages.unique("oneoffclone")
    manifest = tmp_path / "es.yaml"
    manifest.write_text(yaml.safe_dump({
        "apiVersion": "etcd.etcdproxy.dev/v1alpha1", "kind": "EtcdStorage", "metadata": {"name": name},
        "spec": {"replicas": 1, "restoreFrom": {"backupName": "nightly"}}}))
    _, out = run_playbook(cp, manifest, ok=False)
    assert "spec.restoreFrom needs the operator" in out
    assert storages.deployment(name) is None
