"""Many tenants at once, one of them broken."""

from __future__ import annotations

import os
import time

COUNT = int(os.environ.get("ETCDPROXY_MANY_TENANTS", "50"))


def test_many_etcdstorages_at_once_one_broken(storages):
    prefix = storages.unique("many")
    broken = f"{prefix}-broken"
    t0 = time.monotonic()
    storages.create(broken, {"replicas": 1, "clientCertSecret": [{"name": "c", "namespace": f"{broken}-nowhere"}]},
                    make_namespaces=False)
    names = [f"{prefix}-{i}" for i in range(COUNT - 1)]
    for name in names:
        storages.create(name, {"replicas": 1})
    storages.wait(f"{COUNT - 1} EtcdStorages Ready", lambda: all(
        (storages.condition(n, "Ready") or {}).get("status") == "True" for n in names), timeout=600)
    elapsed = time.monotonic() - t0
    cond = storages.wait_condition(broken, "CertificatesReady", "False")
    assert f"namespace {broken}-nowhere does not exist" in cond["message"]
    print(f"{COUNT - 1} EtcdStorages Ready {elapsed:.1f}s after the first create (one broken alongside)")
