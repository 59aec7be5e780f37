"""The operator as config/default installs it: its ServiceAccount, the shipped settings, the image's user,
and an image whose Python does not recompile ansible at every reconcile."""

from __future__ import annotations

import subprocess

from localcp.admin import OPERATOR_NAMESPACE
from localcp.config import BIN_DIR
from localcp.incluster import DEPLOYMENT


def exec_in_operator(node, *argv: str) -> str:
    out = subprocess.run([str(BIN_DIR / "kubectl"), f"--kubeconfig={node.cp.kubeconfig}", "-n", OPERATOR_NAMESPACE,
                          "exec", f"deploy/{DEPLOYMENT}", "--", *argv], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_operator_runs_as_config_default_says(node):
    selector = f"app.kubernetes.io/name={DEPLOYMENT}"
    (pod,) = node.core.list_namespaced_pod(OPERATOR_NAMESPACE, label_selector=selector).items
    assert pod.spec.service_account_name == "etcdproxy-operator"
    env = {e.name: e for e in pod.spec.containers[0].env}
    assert env["WATCH_NAMESPACE"].value_from.field_ref.field_path == "metadata.namespace"
    assert exec_in_operator(node, "id", "-u") == "1001"  # the image's user; runAsNonRoot holds


def test_the_operator_image_carries_compiled_python(node):
    """The operator's user cannot write the image's site-packages or stdlib: bytecode missing there would be
    compiled anew by every ansible process (a reconcile on the real node took 11-14 s instead of 5 s)."""
    code = ("import importlib.util, os, json, ansible.cli.playbook, ansible_runner, kubernetes.client\n"
            "for m in (json, ansible.cli.playbook, ansible_runner, kubernetes.client):\n"
            "    print(m.__name__, os.path.exists(importlib.util.cache_from_source(m.__file__)))\n")
    out = exec_in_operator(node, "python3", "-c", code)
    assert "False" not in out and out.count("True") == 4, out
