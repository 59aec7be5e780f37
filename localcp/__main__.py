"""`python -m localcp up|down|env|run-operator`."""

from __future__ import annotations

import argparse
import json
import sys

from .admin import install_crds, install_rbac, seed_operator_namespace
from .cluster import ControlPlane
from .config import DEFAULT_WORKDIR
from .operator import start_operator
from .probes import StartError
from .processes import Process


def core_endpoints(cp: ControlPlane) -> list[str]:
    """The core etcd as the operator should pass it on: proxy pods on a real node reach the node IP."""
    return cp.pod_etcd_endpoints if cp.node == "real" else cp.etcd_endpoints


def main() -> int:
    parser = argparse.ArgumentParser(prog="localcp")
    parser.add_argument("command", choices=["up", "down", "env", "run-operator"])
    parser.add_argument("--etcd-members", type=int, default=1)
    parser.add_argument("--node", choices=["kwok", "real"], default="kwok",
                        help="kwok's fake node, or a real one (containerd, kubelet, kube-proxy, CoreDNS)")
    parser.add_argument("--with-operator", action="store_true",
                        help="also run the operator out-of-cluster (stopped by `down`)")
    args = parser.parse_args()
    if args.command == "up":
        try:
            cp = ControlPlane(etcd_members=args.etcd_members, node=args.node).start()
            if args.node == "real":
                from .dns import install_dns

                install_dns(cp)
            install_crds(cp)
            seed_operator_namespace(cp)
            install_rbac(cp)
            if args.with_operator:
                op = start_operator(cp.operator_kubeconfig, ",".join(core_endpoints(cp)), cp.logs / "operator.log")
                cp.processes.append(Process("ansible-operator", op.proc.pid, str(op.log)))
                cp.save()
                print(f"operator running, log: {op.log}")
        except StartError as exc:
            print(f"local control plane failed: {exc}", file=sys.stderr)
            return 1
        print(json.dumps({"timings": cp.timings, "etcd": cp.etcd_endpoints}, indent=1))
        print(f"export KUBECONFIG={cp.kubeconfig}")
        print(f"export ETCDPROXY_CORE_ENDPOINTS={','.join(core_endpoints(cp))}")
        print(f"logs: {cp.logs}")
    elif args.command == "down":
        if (DEFAULT_WORKDIR / "state.json").exists():
            ControlPlane.load(DEFAULT_WORKDIR).stop()
            print("local control plane stopped")
    elif args.command == "env":
        cp = ControlPlane.load(DEFAULT_WORKDIR)
        print(f"export KUBECONFIG={cp.kubeconfig}")
        print(f"export ETCDPROXY_CORE_ENDPOINTS={','.join(core_endpoints(cp))}")
    elif args.command == "run-operator":
        from .operator import main as run_main

        run_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
