"""The real node's guard rails that need no cluster: it refuses to start outside the harness's network
namespace, and its cgroup names are stable and distinct."""

from __future__ import annotations

from pathlib import Path

import pytest

from localcp import node
from localcp.cluster import ControlPlane


def test_a_real_node_refuses_to_start_outside_the_harness_namespace(monkeypatch, tmp_path):
    monkeypatch.delenv("ETCDPROXY_NETNS", raising=False)
    with pytest.raises(node.NotContainedError, match=r"hack/in-netns\.sh"):
        node.require_own_netns()
    monkeypatch.setenv("ETCDPROXY_NETNS", "no-such-namespace")
    with pytest.raises(node.NotContainedError):
        node.require_own_netns()
    # Nothing was started: the refusal comes before any process or interface.
    cp = ControlPlane(workdir=tmp_path, node="real")
    with pytest.raises(node.NotContainedError):
        cp.start()
    assert cp.processes == []


def test_each_work_dir_gets_its_own_cgroup():
    a = node.Node(Path("/x/a/node"), {}, {})
    b = node.Node(Path("/x/b/node"), {}, {})
    assert a.cgroup != b.cgroup and a.cgroup == node.Node(Path("/x/a/node"), {}, {}).cgroup

