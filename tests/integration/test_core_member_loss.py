"""A 3-member core etcd on loopback loses a member: the tenant's proxy keeps serving; nothing is lost."""

from __future__ import annotations

from localcp.admin import ensure_namespace
from localcp.tenant import delivered_files, etcdctl, start_proxy

from .conftest import another_control_plane


def test_proxy_keeps_serving_while_a_core_member_is_down(operator, tmp_path):
    proxy = None
    with another_control_plane(operator, "test-localcp-3", etcd_members=3) as (cp3, storages):
        try:
            name = storages.unique("ha")
            ns = f"{name}-ns"
            ensure_namespace(cp3.api(), ns)
            storages.create(name, {"replicas": 1, "caCertConfigMap": [{"name": "etcd-ca", "namespace": ns}],
                                   "clientCertSecret": [{"name": "etcd-client", "namespace": ns}]})
            storages.wait_condition(name, "Ready", "True")
            command = storages.deployment(name)["spec"]["template"]["spec"]["containers"][0]["command"]
            assert f"--endpoints={','.join(cp3.etcd_endpoints)}" in command  # every member

            proxy = start_proxy(storages.core, storages.deployment(name), cp3.logs)
            files = delivered_files(storages.core, ns, tmp_path)

            def put(key: str) -> None:
                out = etcdctl(proxy.endpoint, *files, "put", key, "v")
                assert out.returncode == 0, out.stderr

            put("/before")
            cp3.stop_etcd_member(0)  # the first endpoint: the proxy's client must fail over
            for i in range(20):
                put(f"/during/{i}")
            got = etcdctl(proxy.endpoint, *files, "get", "--prefix", "/during/", "--keys-only")
            assert got.returncode == 0 and len(got.stdout.split()) == 20
            cp3.start_etcd_member(0)
            put("/after")
            # Nothing lost: every key is there, also when read from the member that was down.
            member0 = (cp3.etcd_endpoints[0], *cp3.core_files())

            def member0_has_all() -> bool:
                out = etcdctl(*member0, "get", "--prefix", f"/{name}/", "--keys-only", "--consistency=s")
                return len(out.stdout.split()) == 22

            storages.wait("the restarted member holds all 22 keys", member0_has_all, timeout=60)
        finally:
            if proxy is not None:
                proxy.stop()
