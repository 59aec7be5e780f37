"""Crash safety: SIGKILL the operator (and every process it started) at random points of reconciles.

Each iteration starts a reconcile (create, leaf rotation, CA rotation, or delete), kills the operator
after a random delay, restarts it, and asserts convergence: every EtcdStorage Ready, every delivered
chain verifies against the bundle its peer uses, every CA in a bundle is one the CA store still
accounts for (signing, next, or retired with leaves still valid), nothing left of deleted ones.
"""

from __future__ import annotations

import base64
import json
import os
import random
import time

from ansible_collections.etcdproxy.operator.plugins.module_utils.x509 import fingerprint, load_certs, signed_by
from kubernetes.client.rest import ApiException

from localcp.admin import OPERATOR_NAMESPACE

ITERATIONS = int(os.environ.get("ETCDPROXY_CRASH_ITERATIONS", "20"))


def text(data: dict, key: str) -> str:
    return base64.b64decode(data[key]).decode()


def check_converged(storages, name: str, ns: str) -> None:
    core = storages.core
    ca_secret = core.read_namespaced_secret(f"etcd-{name}-ca", OPERATOR_NAMESPACE).data
    state = json.loads(text(ca_secret, "state.json"))
    for kind in ("client", "serving"):
        known = {fingerprint(load_certs(text(ca_secret, f"{kind}-ca.crt"))[0])}
        if f"{kind}-ca-next.crt" in ca_secret:
            known.add(fingerprint(load_certs(text(ca_secret, f"{kind}-ca-next.crt"))[0]))
        known |= {fingerprint(load_certs(r["cert"])[0]) for r in state[kind]["retired"]}
        if kind == "client":
            bundle = load_certs(core.read_namespaced_config_map(f"etcd-{name}-client-ca",
                                                                OPERATOR_NAMESPACE).data["ca.crt"])
            leaf = load_certs(text(core.read_namespaced_secret("c", ns).data, "tls.crt"))[0]
        else:
            bundle = load_certs(core.read_namespaced_config_map("ca", ns).data["serving-ca.crt"])
            leaf = load_certs(text(core.read_namespaced_secret(f"etcd-{name}-serving", OPERATOR_NAMESPACE).data,
                                   "tls.crt"))[0]
        assert {fingerprint(c) for c in bundle} <= known, f"{name}: a {kind} CA in the bundle is unaccounted for"
        assert any(signed_by(leaf, ca) for ca in bundle), f"{name}: {kind} leaf does not verify against its bundle"


def gone(storages, name: str) -> bool:
    if storages.get(name) is not None or storages.deployment(name) is not None:
        return False
    try:
        storages.core.read_namespaced_secret(f"etcd-{name}-ca", OPERATOR_NAMESPACE)
        return False
    except ApiException as exc:
        return exc.status == 404


def test_operator_killed_at_random_points_converges(storages, operator):
    seed = int(os.environ.get("ETCDPROXY_CRASH_SEED", str(int(time.time()))))
    rng = random.Random(seed)
    live: dict[str, str] = {}
    deleted: list[str] = []
    print(f"crash-safety seed {seed}")
    for i in range(ITERATIONS):
        actions = ["create"] + (["rotate", "rotate-ca", "delete"] if live else [])
        action = rng.choice(actions)
        if action == "create":
            name = storages.unique(f"crash{i}")
            ns = f"{name}-ns"
            storages.create(name, {"replicas": 1, "caCertConfigMap": [{"name": "ca", "namespace": ns}],
                                   "clientCertSecret": [{"name": "c", "namespace": ns}]})
            live[name] = ns
        else:
            name = rng.choice(sorted(live))
            if action == "delete":
                storages.delete(name)
                deleted.append(name)
                del live[name]
            else:
                key = "etcd.etcdproxy.dev/rotate" if action == "rotate" else "etcd.etcdproxy.dev/rotate-ca"
                storages.patch(name, {"metadata": {"annotations": {key: f"crash-{i}"}}})
        # A random point inside the reconcile(s) this started (one takes ~1-3 s here).
        time.sleep(rng.uniform(0.0, 2.5))
        operator.crash()
        operator.restart()
        for name, ns in live.items():
            storages.wait_condition(name, "Ready", "True")
            storages.wait(f"{name} chains verify after iteration {i} ({action})",
                          lambda name=name, ns=ns: _converged(storages, name, ns))
        for name in deleted:
            storages.wait(f"{name} fully removed after iteration {i}", lambda name=name: gone(storages, name))
    assert len(live) + len(deleted) >= 1


def _converged(storages, name: str, ns: str) -> bool:
    try:
        check_converged(storages, name, ns)
        return True
    except (ApiException, KeyError, ValueError, AssertionError):
        return False
