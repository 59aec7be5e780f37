"""`make cluster-down` (and a finished `make demo`) leaves nothing behind: no process, mount, cgroup or
kernel setting of the node, and no network namespace (with it go its interfaces, routes, iptables rules
and per-namespace sysctls). Run the way the Makefile does: hack/in-netns.sh, then --delete."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from localcp.config import REPO
from localcp.node import CGROUP_ROOT, KUBELET_SYSCTLS, SYSCTL_RECORD, Node, mounts_under

KEY = "cleanup-test"


def sysctls() -> dict[str, str]:
    return {k: Path("/proc/sys", k).read_text().strip() for k in KUBELET_SYSCTLS}


def test_cluster_down_leaves_nothing_behind(tmp_path):
    workdir = REPO / ".cache" / "test-cleanup"
    node = Node(workdir / "node", {}, {})
    before = sysctls()
    others = SYSCTL_RECORD.exists() and any((SYSCTL_RECORD / "holders").iterdir())
    script = ("from pathlib import Path\nfrom localcp.cluster import ControlPlane\n"
              "from localcp.dns import install_dns\n"
              f"cp = ControlPlane(workdir=Path({str(workdir)!r}), node='real')\ncp.start()\ninstall_dns(cp)\n"
              "print('NODE UP', flush=True)\ncp.stop()\n")
    env = {k: v for k, v in os.environ.items() if k != "ETCDPROXY_NETNS"}  # a namespace of its own
    netns = REPO / "hack/in-netns.sh"
    out = subprocess.run([str(netns), KEY, sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=300)
    subprocess.run([str(netns), "--delete", KEY], env=env, check=True, timeout=60)
    assert "NODE UP" in out.stdout, out.stdout + out.stderr[-3000:]
    assert out.returncode == 0, out.stderr[-3000:]

    assert not [n for n in os.listdir("/run/netns") if n.startswith(f"epo-{KEY}-")]
    leftovers = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(workdir).encode() in (entry / "cmdline").read_bytes():
                leftovers.append((entry / "cmdline").read_bytes().replace(b"\0", b" ")[:200])
        except OSError:
            continue
    assert leftovers == []
    assert mounts_under(workdir) == []
    assert not [h for h in Path(CGROUP_ROOT).iterdir() if (h / node.cgroup).exists()]
    assert not (SYSCTL_RECORD / "holders" / node.cgroup).exists()
    if not others:  # no other real node of ours runs: the machine's values are back
        assert sysctls() == before
