"""Certificate rotation under load through the guard: no failed request, no restart; and the other way
round, a removed client destination's certificate refused by a guard that keeps running.

The guard re-reads its serving cert/key and the tenant client CA when kubelet updates the
volumes (here: ``ProxyProcess.sync_volumes``, which writes them the way kubelet does).
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import grpc
import pytest
from ansible_collections.etcdproxy.operator.plugins.module_utils import names
from cryptography import x509
from kubernetes.client.rest import ApiException

from localcp.admin import OPERATOR_NAMESPACE
from localcp.etcdclient import Client
from localcp.load import Load
from localcp.tenant import delivered_files, start_proxy


def served_serial(port: int, ca: str, cert: str, key: str) -> int:
    """Serial of the certificate the guard presents on a new handshake."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


def test_leaf_rotation_under_load_fails_no_request(storages, cp, tmp_path):
    name, ns = storages.create_ready_tenant("rotload")
    pod = start_proxy(storages.core, storages.deployment(name), cp.logs)
    try:
        old = delivered_files(storages.core, ns, tmp_path)
        old_serial = served_serial(pod.port, *old)
        template = storages.deployment(name)["spec"]["template"]
        with Load(Client(pod.endpoint, *old)) as load:
            load.wait_ops(50)
            storages.patch(name, {"metadata": {"annotations": {"etcd.etcdproxy.dev/rotate": "load-test"}}})
            # New leaves are issued; kubelet then updates the pod's volumes.
            storages.wait("serving leaf renewed", lambda: pod.volumes["serving"].read(
                storages.core, pod.namespace)["tls.crt"] != Path(pod.volumes["serving"].dir / "tls.crt").read_bytes())
            pod.sync_volumes(storages.core)
            new_dir = tmp_path / "new"
            new_dir.mkdir()
            storages.wait("delivered client cert renewed", lambda: Path(
                delivered_files(storages.core, ns, new_dir)[1]).read_bytes() != Path(old[1]).read_bytes())
            new = delivered_files(storages.core, ns, new_dir)
            storages.wait("guard serves the new leaf", lambda: served_serial(pod.port, *new) != old_serial)
            # Old and new client certs both work on new connections; the long-lived client never noticed.
            for files in (old, new):
                with Client(pod.endpoint, *files) as fresh:
                    fresh.put(b"/registry/after-rotation", b"ok")
            load.wait_ops(200)
        assert load.failures == []
        assert load.ok >= 250
        assert pod.metric("etcdproxy_guard_tls_reloads_total") >= 1
        # A leaf renewal does not restart the pod.
        assert storages.deployment(name)["spec"]["template"] == template
        assert pod.proc.poll() is None
    finally:
        pod.stop()


def test_guard_picks_up_a_new_client_ca_without_restart(storages, cp, tmp_path):
    """A CA rotation publishes the next client CA; the guard trusts it as soon as the volume updates."""
    name, ns = storages.create_ready_tenant("carel")
    pod = start_proxy(storages.core, storages.deployment(name), cp.logs)
    try:
        old = delivered_files(storages.core, ns, tmp_path)
        guard_pid = pod.proc.pid
        with Load(Client(pod.endpoint, *old)) as load:
            load.wait_ops(20)
            storages.patch(name, {"metadata": {"annotations": {"etcd.etcdproxy.dev/rotate-ca": "guard"}}})
            new_dir = tmp_path / "new"
            new_dir.mkdir()

            def resigned() -> bool:
                # The delivered client cert is signed by the next CA only after the bundle was published.
                return Path(delivered_files(storages.core, ns, new_dir)[1]).read_bytes() != Path(old[1]).read_bytes()

            while not resigned():
                pod.sync_volumes(storages.core)  # kubelet keeps syncing while the operator works
                time.sleep(0.2)
                assert not load.failures, load.failures[:3]
            pod.sync_volumes(storages.core)
            new = delivered_files(storages.core, ns, new_dir)
            with Client(pod.endpoint, *new) as fresh:
                fresh.put(b"/registry/new-ca", b"ok")
                assert fresh.range(b"/registry/new-ca") == [(b"/registry/new-ca", b"ok")]
            load.wait_ops(50)
        assert load.failures == []
        assert pod.proc.pid == guard_pid and pod.proc.poll() is None
    finally:
        pod.stop()


def test_a_client_destination_taken_out_of_the_spec_is_refused_by_the_endpoint(storages, cp, tmp_path):
    """Removing spec.clientCertSecret[i] is how a platform team cuts an API server off: its certificate (valid
    for months) must stop working, also on a guard that keeps running, and the proxy rolls so that the
    connections it holds end too."""
    name = storages.unique("revoke")
    ns = f"{name}-ns"
    stays, leaves = {"name": "etcd-client", "namespace": ns}, {"name": "leaving-client", "namespace": ns}
    storages.create(name, {"replicas": 1, "caCertConfigMap": [{"name": "etcd-ca", "namespace": ns}],
                           "clientCertSecret": [stays, leaves]})
    storages.wait_condition(name, "Ready", "True")
    pod = start_proxy(storages.core, storages.deployment(name), cp.logs)
    try:
        kept = delivered_files(storages.core, ns, tmp_path)
        gone = delivered_files(storages.core, ns, tmp_path, secret="leaving-client")
        with Client(pod.endpoint, *gone) as client:
            client.put(b"/registry/before", b"ok")
        hash_before = storages.deployment(name)["spec"]["template"]["metadata"]["annotations"]
        storages.patch(name, {"spec": {"clientCertSecret": [stays]}})
        storages.wait("the proxy's pod template changed (a roll)", lambda: storages.deployment(name)["spec"][
            "template"]["metadata"]["annotations"] != hash_before)
        (event,) = storages.events(name, "ClientCertificateRevoked")
        assert f"Secret {ns}/leaving-client left spec.clientCertSecret" in event.message
        pod.sync_volumes(storages.core)  # what kubelet does for a pod that has not been replaced yet
        with Client(pod.endpoint, *gone) as client, pytest.raises(grpc.RpcError) as refused:
            client.put(b"/registry/after", b"no")
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake is refused
        with Client(pod.endpoint, *kept) as client:
            client.put(b"/registry/after", b"ok")
        # The Secret is given back: no certificate, none of our marks, not deleted with the EtcdStorage.
        given_back = storages.core.read_namespaced_secret("leaving-client", ns)
        assert not given_back.data.get("tls.crt") and not given_back.data.get("tls.key")
        assert names.OWNER_ANNOTATION not in (given_back.metadata.annotations or {})
        assert not [r for r in given_back.metadata.owner_references or [] if r.name == name]
        # The CA store keeps the record: the ConfigMap deleted by hand comes back with the revocation in it.
        client_ca = names.client_ca(name)
        storages.core.delete_namespaced_config_map(client_ca, OPERATOR_NAMESPACE)

        def revoked_again() -> bool:
            try:
                data = storages.core.read_namespaced_config_map(client_ca, OPERATOR_NAMESPACE).data or {}
            except ApiException:
                return False
            return f"etcdstorage:{name}:{ns}/leaving-client" in data.get(names.REVOKED_CLIENTS_KEY, "")

        storages.wait("the client CA ConfigMap rebuilt with the revocation", revoked_again)
    finally:
        pod.stop()
