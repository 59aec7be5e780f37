"""The proxy pods, run for real by kubelet from the images built here: security settings as shipped,
probes, certificate rotation through the Service with kubelet's own volume updates, pods lost under a
client, and what deletion leaves."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
from pathlib import Path

import grpc
import pytest
from ansible_collections.etcdproxy.operator.plugins.module_utils import names
from cryptography import x509
from kubernetes import client, watch

from localcp.admin import OPERATOR_NAMESPACE, apply, ensure_namespace
from localcp.config import NODE_IP, POD_CIDR
from localcp.load import Load
from localcp.tenant import delivered_files
from localcp.wardle import GROUP, PLURAL, VERSION, core_keys, etcdstorage, wait_ready

from .conftest import TIMEOUT, container_pid, kill_container


def load(node, name: str, files: tuple[str, str, str], retry: bool = False) -> Load:
    """A long-lived client of the tenant's Service (as an API server is)."""
    return Load(node.client(name, files, retry))


def served_serial(ip: str, server_name: str, files: tuple[str, str, str]) -> int:
    ctx = ssl.create_default_context(cafile=files[0])
    ctx.load_cert_chain(files[1], files[2])
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection((ip, 2379), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=server_name) as t:
        return x509.load_der_x509_certificate(t.getpeercert(binary_form=True)).serial_number


def restarts(pods) -> dict[str, int]:
    return {p.metadata.name: sum(s.restart_count for s in p.status.container_statuses or []) for p in pods}


def test_guard_pods_run_with_the_shipped_security_settings(node):
    node.tenant("secure", "secure")
    pods = node.ready_pods("secure")
    assert len(pods) == 2
    for pod in pods:
        pid = container_pid(pod)
        status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if ":\t" in line)
        assert status["Uid"].split()[:2] == ["65534", "65534"], status["Uid"]  # non-root, as the image says
        assert int(status["CapEff"], 16) == 0, status["CapEff"]  # capabilities: drop ALL
        assert status["NoNewPrivs"].strip() == "1"  # allowPrivilegeEscalation: false
        mounts = [line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]
        (root,) = [m for m in mounts if m[4] == "/"]
        assert "ro" in root[5].split(","), root  # readOnlyRootFilesystem
        assert not [m for m in mounts if "serviceaccount" in m[4]], "a service account token is mounted"


def test_a_new_tenant_is_ready_with_its_usage_in_the_status(node):
    """The Usage column is filled by the reconcile that writes Ready (a guard replica is ready only once its
    usage record is in the core), not hours later by the next one. Every version of the object is watched:
    the first with Ready True must carry the usage."""
    custom = client.CustomObjectsApi(node.api)
    since = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["metadata"]["resourceVersion"]
    node.tenant("usage-at-ready", "usage-at-ready")
    first_ready = None
    for event in watch.Watch().stream(custom.list_cluster_custom_object, GROUP, VERSION, PLURAL,
                                      resource_version=since, field_selector="metadata.name=usage-at-ready",
                                      timeout_seconds=30):
        status = event["object"].get("status") or {}
        if any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []):
            first_ready = status
            break
    assert first_ready is not None, "no version of the EtcdStorage with Ready True was seen"
    assert (first_ready.get("usage") or {}).get("keys") == 0, first_ready.get("usage")
    assert first_ready["usage"]["summary"], first_ready["usage"]


def test_removing_a_client_destination_ends_its_open_connections_and_refuses_new_ones(node, tmp_path):
    """The revocation end to end: kubelet, the rolled pods and kube-proxy's Service. A client holding a
    connection on the removed destination's certificate is cut off when the pods roll, and cannot come back."""
    ns, name = "revoke", "revoke"
    ensure_namespace(node.api, ns, grant_delivery=False)
    # The sample's delivery Role names its own Secret; the second destination needs the same grant.
    apply(node.api, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                     "metadata": {"name": "leaving-cert", "namespace": ns},
                     "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["leaving-cert"],
                                "verbs": ["get", "update", "patch"]}]})
    apply(node.api, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                     "metadata": {"name": "leaving-cert", "namespace": ns},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "leaving-cert"},
                     "subjects": [{"kind": "ServiceAccount", "name": "etcdproxy-operator",
                                   "namespace": OPERATOR_NAMESPACE}]})
    stays = {"name": "etcd-client-cert", "namespace": ns}
    node.tenant(name, ns, {"clientCertSecret": [stays, {"name": "leaving-cert", "namespace": ns}]})
    gone = delivered_files(node.core, ns, tmp_path, configmap="etcd-serving-ca", secret="leaving-cert")
    pods = {p.metadata.name for p in node.ready_pods(name)}
    with load(node, name, gone) as held:
        held.wait_ops(20)
        client.CustomObjectsApi(node.api).patch_cluster_custom_object(
            GROUP, VERSION, PLURAL, name, {"spec": {"clientCertSecret": [stays]}})
        node.wait("the client on the removed destination's certificate cut off", lambda: bool(held.failures), 180)
    node.wait_rolled(name, pods)
    with node.client(name, gone) as refused, pytest.raises(grpc.RpcError):
        refused.put(b"/registry/after", b"no")
    with node.client(name, node.files(ns, tmp_path), retry=True) as kept:
        kept.put(b"/registry/after", b"ok")


def test_readiness_follows_the_core_and_liveness_does_not(node, tmp_path):
    node.tenant("probes", "probes")
    before = restarts(node.proxy_pods("probes"))
    port = node.cp.ports["etcd0"]
    # Cut the pods (only) off from the core etcd: every packet from the pod range to its port is refused.
    rule = ["INPUT", "-s", POD_CIDR, "-d", NODE_IP, "-p", "tcp", "--dport", str(port), "-j", "REJECT",
            "--reject-with", "tcp-reset"]
    subprocess.run(["iptables", "-I", *rule], check=True)
    try:
        node.wait("proxy pods unready while the core is unreachable", lambda: not node.ready_pods("probes"), 120)
        # Liveness is the process, not the core: nothing was restarted.
        assert restarts(node.proxy_pods("probes")) == before
    finally:
        subprocess.run(["iptables", "-D", *rule], check=True)
    node.wait("proxy pods ready again", lambda: len(node.ready_pods("probes")) == 2, 120)
    assert restarts(node.proxy_pods("probes")) == before


def readiness_log(node, pod: str) -> list[str]:
    """What the guard of ``pod`` logged about its readiness, in order."""
    lines = node.core.read_namespaced_pod_log(pod, OPERATOR_NAMESPACE, container="guard").splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    return [e["msg"] + (f": {e['reason']}" if "reason" in e else "") for e in entries if e.get("logger") == "readyz"]


def test_a_replica_cut_off_from_the_core_is_named_and_its_return_is_seen(node):
    """One guard loses the core (a firewall between its node's pods and the core's endpoints) while the other
    serves: ProxyAvailable says how many serve and why the other does not (before: "RollingOut, 2 updated",
    as if a rollout were going on), the guard's log says which check fails, and the replica's return is seen
    without the operator looking every retry period (both are watch events)."""
    name = "cutoff"
    node.tenant(name, name)
    pod = sorted(node.ready_pods(name), key=lambda p: p.metadata.name)[0]
    rule = ["INPUT", "-s", pod.status.pod_ip, "-d", NODE_IP, "-p", "tcp", "--dport", str(node.cp.ports["etcd0"]),
            "-j", "REJECT", "--reject-with", "tcp-reset"]
    subprocess.run(["iptables", "-I", *rule], check=True)
    try:
        node.wait("ProxyAvailable ReplicasUnavailable",
                  lambda: node.condition(name, "ProxyAvailable").get("reason") == "ReplicasUnavailable", 120)
        cond = node.condition(name, "ProxyAvailable")
        assert cond["status"] == "True" and cond["message"].startswith("1/2 proxy replicas available; "), cond
        assert f"pod {pod.metadata.name}: the guard runs but is not ready: it cannot read the core etcd" \
            in cond["message"], cond
        assert node.condition(name, "Ready")["status"] == "True"  # one replica still serves
        said = readiness_log(node, pod.metadata.name)
        assert said and said[-1].startswith("not ready: core etcd not reachable: "), said
    finally:
        subprocess.run(["iptables", "-D", *rule], check=True)
    node.wait("ProxyAvailable MinimumReplicasAvailable again",
              lambda: node.condition(name, "ProxyAvailable").get("reason") == "MinimumReplicasAvailable", 120)
    # Once per change, not per probe (the cut lasted several failed probes): "not ready" once, then "ready".
    said = readiness_log(node, pod.metadata.name)
    assert said[-1] == "ready" and sum(s.startswith("not ready: core etcd not reachable") for s in said) == 1, said
    node.delete_tenant(name)


def test_leaf_rotation_under_load_through_the_service_fails_no_request(node, tmp_path):
    node.tenant("rot", "rot")
    old = node.files("rot", tmp_path)
    pods = node.ready_pods("rot")
    old_serials = {served_serial(p.status.pod_ip, node.server_name("rot"), old) for p in pods}
    with load(node, "rot", old) as writes:
        writes.wait_ops(50)
        node.annotate("rot", "etcd.etcdproxy.dev/rotate", "real-node")

        def every_pod_serves_a_new_leaf() -> bool:
            # kubelet updates the Secret volume; the guard reloads it; no pod restarts.
            return all(served_serial(p.status.pod_ip, node.server_name("rot"), old) not in old_serials for p in pods)

        node.wait("every pod serving the renewed leaf", every_pod_serves_a_new_leaf, 120)
        writes.wait_ops(100)
    assert writes.failures == []
    assert {p.metadata.name for p in node.ready_pods("rot")} == {p.metadata.name for p in pods}
    assert restarts(node.proxy_pods("rot")) == restarts(pods)


def test_client_ca_rotation_rolls_the_pods_without_failing_a_request(node, tmp_path):
    """rotate-ca publishes the next CA beside the current one (the pods roll to trust both), then
    re-signs the client certificate with it. A client on the old certificate keeps working through all of
    that; once the new one is delivered it works too (a client reloads it from its volume)."""
    node.tenant("carot", "carot")
    old = node.files("carot", tmp_path)
    pods = {p.metadata.name for p in node.ready_pods("carot")}
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    with load(node, "carot", old, retry=True) as writes:
        writes.wait_ops(50)
        node.annotate("carot", "etcd.etcdproxy.dev/rotate-ca", "real-node")
        node.wait("client cert re-signed by the next CA",
                  lambda: Path(node.files("carot", new_dir)[1]).read_bytes() != Path(old[1]).read_bytes(), 180)
        writes.wait_ops(20)
    assert writes.failures == []
    node.wait_rolled("carot", pods)
    new = node.files("carot", new_dir)
    with node.client("carot", new, retry=True) as fresh:
        fresh.put(b"/registry/new-ca", b"ok")
        assert fresh.range(b"/registry/new-ca") == [(b"/registry/new-ca", b"ok")]


def test_a_deleted_or_killed_guard_pod_does_not_interrupt_a_client_of_the_service(node, tmp_path):
    node.tenant("loss", "loss")
    files = node.files("loss", tmp_path)
    with load(node, "loss", files, retry=True) as writes:
        writes.wait_ops(50)
        first, second = node.ready_pods("loss")
        node.core.delete_namespaced_pod(first.metadata.name, OPERATOR_NAMESPACE)
        node.wait("a replacement pod Ready", lambda: len(node.ready_pods("loss")) == 2 and first.metadata.name not in {
            p.metadata.name for p in node.proxy_pods("loss")}, 120)
        writes.wait_ops(50)
        kill_container(second)
        node.wait("the killed container restarted and Ready", lambda: len(node.ready_pods("loss")) == 2 and sum(
            restarts([p for p in node.proxy_pods("loss") if p.metadata.name == second.metadata.name]).values()) == 1,
            120)
        writes.wait_ops(50)
    assert writes.failures == [], writes.failures[:5]


def test_deleting_an_etcdstorage_removes_its_pods_service_and_keys(node, tmp_path):
    node.tenant("gone", "gone", {"deletionPolicy": "Delete"})
    files = node.files("gone", tmp_path)
    with node.client("gone", files) as c:
        c.put(b"/registry/x", b"1")
    assert "/gone/" in core_keys(node.cp, "/gone/")
    pods = {p.metadata.name for p in node.proxy_pods("gone")}
    node.delete_tenant("gone")
    node.wait("pods gone", lambda: not node.proxy_pods("gone"), 120)
    assert not pods & {p.metadata.name for p in node.core.list_namespaced_pod(OPERATOR_NAMESPACE).items}
    assert not [s for s in node.core.list_namespaced_service(OPERATOR_NAMESPACE).items
                if s.metadata.name == "etcd-gone"]
    assert core_keys(node.cp, "/gone/") == ""


def test_proxy_pods_that_cannot_run_are_reported_with_the_field_to_change(node):
    """Admission accepts requests no node can hold. The pods say why they do not run; the EtcdStorage says it
    too (ProxyAvailable, Ready and a Warning Event), naming the field, and serves once the field is fixed.
    Before, it said that the pods wait for the core etcd material."""
    name, fix = "huge", "lower spec.resources.requests (cpu: 64)"
    etcdstorage(node.cp, name, name, {"replicas": 1, "resources": {"requests": {"cpu": "64"}}})
    # Seen at the first look after the scheduler gave up, else at the next one (the retry period, 30 s).
    node.wait("ProxyAvailable PodUnschedulable",
              lambda: node.condition(name, "ProxyAvailable").get("reason") == "PodUnschedulable", TIMEOUT + 30)
    cond = node.condition(name, "ProxyAvailable")
    assert cond.get("status") == "False" and fix in cond.get("message", ""), cond
    warnings = [e for e in node.core.list_namespaced_event(names.EVENT_NAMESPACE).items
                if e.involved_object.name == name and e.reason == "PodUnschedulable"]
    assert warnings and warnings[0].type == "Warning" and fix in warnings[0].message
    client.CustomObjectsApi(node.api).patch_cluster_custom_object(GROUP, VERSION, PLURAL, name,
                                                                  {"spec": {"resources": None}})
    wait_ready(node.cp, name)
    node.delete_tenant(name)
