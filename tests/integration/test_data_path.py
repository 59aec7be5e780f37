"""The real data path: the operator's proxy (as its Deployment describes it) with the material it delivered."""

from __future__ import annotations

import subprocess

from localcp.config import BIN_DIR
from localcp.tenant import delivered_files, etcdctl, start_proxy


def test_delivered_material_works_through_the_real_proxy(storages, cp, tmp_path):
    a, b = storages.unique("dpa"), storages.unique("dpb")
    for name in (a, b):
        ns = f"{name}-ns"
        storages.create(name, {"replicas": 1, "caCertConfigMap": [{"name": "etcd-ca", "namespace": ns}],
                               "clientCertSecret": [{"name": "etcd-client", "namespace": ns}]})
    for name in (a, b):
        storages.wait_condition(name, "Ready", "True")
    proxies = {name: start_proxy(storages.core, storages.deployment(name), cp.logs) for name in (a, b)}
    try:
        a_files = delivered_files(storages.core, f"{a}-ns", tmp_path)
        put = etcdctl(proxies[a].endpoint, *a_files, "put", "/registry/configmaps/x", "hello")
        assert put.returncode == 0, put.stderr
        got = etcdctl(proxies[a].endpoint, *a_files, "get", "/registry/configmaps/x", "--print-value-only")
        assert got.stdout.strip() == "hello"
        # In the core the key lives under the tenant's prefix, and nowhere else. The proxy prepends "/<name>/"
        # to the client's key, so an API server's "/registry/..." lands at "/<name>//registry/...".
        core = (",".join(cp.etcd_endpoints), *cp.core_files())
        assert etcdctl(*core, "get", f"/{a}//registry/configmaps/x", "--print-value-only").stdout.strip() == "hello"
        assert etcdctl(*core, "get", "/registry/configmaps/x", "--print-value-only").stdout.strip() == ""
        # Tenant B's proxy refuses tenant A's client certificate (B trusts only its own client CA).
        b_bundle = delivered_files(storages.core, f"{b}-ns", tmp_path)[0]
        refused = etcdctl(proxies[b].endpoint, b_bundle, a_files[1], a_files[2], "get", "/registry/configmaps/x")
        assert refused.returncode != 0
        # A client without any certificate is refused too.
        anonymous = subprocess.run([str(BIN_DIR / "etcdctl"), f"--endpoints={proxies[a].endpoint}",
                                    f"--cacert={a_files[0]}", "--dial-timeout=5s", "--command-timeout=10s",
                                    "get", "/registry/configmaps/x"], capture_output=True, text=True, timeout=60)
        assert anonymous.returncode != 0 and "hello" not in anonymous.stdout
        # And B's own client sees none of A's keys.
        b_files = delivered_files(storages.core, f"{b}-ns", tmp_path)
        own = etcdctl(proxies[b].endpoint, *b_files, "get", "--prefix", "/registry/", "--keys-only")
        assert own.returncode == 0, own.stderr
        assert "configmaps/x" not in own.stdout
    finally:
        for proxy in proxies.values():
            proxy.stop()
