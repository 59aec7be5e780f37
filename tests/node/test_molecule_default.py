"""molecule's `default` scenario (the Operator SDK convention: a cluster where the operator is installed)
run against the real-node cluster, where the operator runs in-cluster from config/default."""

from __future__ import annotations

import os
import subprocess

from localcp.config import REPO


def test_molecule_default_scenario_against_the_real_node_cluster(node):
    kubeconfig = str(node.cp.kubeconfig)
    env = {**os.environ, "PATH": f"{REPO / '.venv/bin'}:{os.environ['PATH']}", "KUBECONFIG": kubeconfig,
           "K8S_AUTH_KUBECONFIG": kubeconfig, "MOLECULE_EPHEMERAL_DIRECTORY": str(node.cp.workdir / "molecule")}
    out = subprocess.run([str(REPO / ".venv/bin/molecule"), "test", "-s", "default"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert "idempotence" in out.stdout + out.stderr
