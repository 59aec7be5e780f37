"""Network containment: nothing the harness starts can send a packet off this machine. Everything runs in
a network namespace the harness made, whose only interfaces are loopback, the node's bridge and the pods'
veths, with no route out; pods route only to that namespace; cluster DNS forwards nothing."""

from __future__ import annotations

import errno
import os
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from localcp.config import BRIDGE, CLUSTER_DNS, NODE_IP

from .conftest import container_pid

# Addresses a leak would go to: the machine's resolver and gateway, and a public address.
OUTSIDE = ["1.1.1.1", "8.8.8.8"] + [line.split()[1] for line in Path("/etc/resolv.conf").read_text().splitlines()
                                     if line.startswith("nameserver") and "." in line.split()[1]]


def test_the_harness_runs_in_its_own_namespace_with_no_route_out():
    name = os.environ.get("ETCDPROXY_NETNS", "")
    assert name, "tests must run through hack/in-netns.sh"
    assert os.stat(f"/run/netns/{name}").st_ino == os.stat("/proc/self/ns/net").st_ino
    links = [line.split(":")[1].strip().split("@")[0] for line in
             subprocess.run(["ip", "-o", "link"], check=True, capture_output=True, text=True).stdout.splitlines()]
    assert all(link in ("lo", BRIDGE) or link.startswith("veth") for link in links), links
    routes = subprocess.run(["ip", "route"], check=True, capture_output=True, text=True).stdout
    assert "default" not in routes, routes
    for addr in OUTSIDE:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(OSError) as exc:
            s.sendto(b"x", (addr, 53))
        assert exc.value.errno == errno.ENETUNREACH, (addr, exc.value)
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("example.com", 443)


def in_netns_of(pid: int, code: str) -> str:
    out = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "python3", "-c", code],
                         capture_output=True, text=True, timeout=30)
    return (out.stdout + out.stderr).strip()


def test_a_pod_reaches_its_cluster_but_nothing_outside(node):
    node.tenant("contain", "contain")
    pid = container_pid(node.ready_pods("contain")[0])
    routes = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "route"], check=True,
                            capture_output=True, text=True).stdout
    assert f"default via {NODE_IP}" in routes, routes
    probe = (f"import socket\nfor a in {OUTSIDE!r}:\n s=socket.socket(); s.settimeout(5)\n"
             " try: s.connect((a, 443)); print(a, 'CONNECTED')\n"
             " except OSError as e: print(a, type(e).__name__, e.errno)\n")
    out = in_netns_of(pid, probe)
    assert "CONNECTED" not in out, out
    # The pod's only way is the harness's namespace, and there no route leads to any of them (the kernel
    # answers "unreachable" to the pod, within its ICMP rate limit; a connect may also just time out).
    for addr in OUTSIDE:
        res = subprocess.run(["ip", "route", "get", addr], capture_output=True, text=True)
        assert res.returncode != 0 and "unreachable" in res.stderr, (addr, res.stdout, res.stderr)


def dns_query(name: str) -> tuple[int, int]:
    """One A query to the cluster DNS Service: (rcode, answer count)."""
    header = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00" + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(header + question, (CLUSTER_DNS, 53))
        reply = s.recv(4096)
    flags, _, answers = struct.unpack(">HHH", reply[2:8])
    return flags & 0xF, answers


def test_cluster_dns_answers_for_services_and_forwards_nothing(node):
    node.tenant("dnsq", "dnsq")
    rcode, answers = dns_query("etcd-dnsq.kube-apiserver-storage.svc.cluster.local")
    assert (rcode, answers) == (0, 1)
    rcode, answers = dns_query("example.com")
    assert answers == 0 and rcode != 0, "the cluster DNS must not resolve names outside the cluster"
