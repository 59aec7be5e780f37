"""A real Kubernetes control plane on 127.0.0.1, started from binaries the project built.

etcd (TLS, client-cert auth; also the "core etcd" tenants share), kube-apiserver
(RBAC, client-cert authn, service-account keys, audit log), kube-controller-manager,
kube-scheduler, and a node: kwok's fake one (pods are only marked Ready; for scale figures) or a
real one (``node="real"``: containerd, kubelet, kube-proxy, localcp/node.py). Every
process is started with free ports, waited on through its health endpoint (never
a sleep), logged to ``<workdir>/logs`` and stopped by PID. ``state.json`` in the
workdir lets another process (``make cluster-down``) find and stop them.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import BIN_DIR, DEFAULT_WORKDIR, NODE_IP, REPO, SERVICE_CIDR
from .etcdclient import Client
from .fakenode import create_fake_node
from .kubeconfigs import write_kubeconfig
from .node import Node, wait_node_ready
from .pki import Pki
from .probes import StartError, free_port, http_get, https_get, wait_for
from .processes import Process, stop_pid
from .registry import Registry


@dataclass
class ControlPlane:
    """Start/stop the whole local control plane. ``etcd_members`` > 1 makes a loopback etcd cluster."""

    workdir: Path = DEFAULT_WORKDIR
    etcd_members: int = 1
    # The core's --quota-backend-bytes (etcd's own default, 2 GiB; tests of the core's headroom use less).
    etcd_quota_bytes: int = 2 << 30
    # "kwok" (fake pods) or "real" (containerd + kubelet + kube-proxy in the harness's network namespace).
    node: str = "kwok"
    # With a real node: the cluster's image registry on the node IP (localcp/registry.py; OLM pulls from it).
    registry: bool = False
    bin_dir: Path = BIN_DIR
    processes: list[Process] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    # ---- paths -----------------------------------------------------------------
    @property
    def pki(self) -> Pki:
        return Pki(self.workdir / "pki")

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def operator_kubeconfig(self) -> Path:
        return self.workdir / "operator.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.logs / "audit.log"

    @property
    def etcd_endpoints(self) -> list[str]:
        return [f"https://127.0.0.1:{self.ports[f'etcd{i}']}" for i in range(self.etcd_members)]

    @property
    def pod_etcd_endpoints(self) -> list[str]:
        """The core etcd as pods on the real node reach it (the node IP on the bridge)."""
        return [f"https://{NODE_IP}:{self.ports[f'etcd{i}']}" for i in range(self.etcd_members)]

    def core_files(self) -> tuple[str, str, str]:
        """The core etcd's CA and the main cluster's own etcd client certificate and key (paths): what an
        admin holds; the operator's core material is the same CA and a certificate like it."""
        p = self.pki
        return str(p.path("etcd-ca")), str(p.path("apiserver-etcd-client")), str(p.path("apiserver-etcd-client", "key"))

    def core_material(self) -> tuple[str, str, str]:
        """The same as PEM text."""
        ca, cert, key = self.core_files()
        return Path(ca).read_text(), Path(cert).read_text(), Path(key).read_text()

    def core_client(self, member: int = 0) -> Client:
        """A gRPC client of the core etcd with the admin's material (core_files)."""
        return Client(self.etcd_endpoints[member], *self.core_files())

    @property
    def real_node(self) -> Node:
        return Node(self.workdir / "node", self.ports, self.timings)

    @property
    def image_registry(self) -> Registry:
        return Registry(self.workdir / "registry", self.pki)

    @property
    def state_file(self) -> Path:
        return self.workdir / "state.json"

    # ---- lifecycle ---------------------------------------------------------------
    def start(self) -> ControlPlane:
        t0 = time.monotonic()
        node_bins = ("kubelet", "kube-proxy") if self.node == "real" else ("kwok",)
        missing = [b for b in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", *node_bins)
                   if not (self.bin_dir / b).exists()]
        if missing:
            raise StartError(f"missing binaries {missing} in {self.bin_dir}; run `make tools`")
        if self.state_file.exists():
            ControlPlane.load(self.workdir).stop()
        for sub in ("etcd", "logs", "node"):
            d = self.workdir / sub
            if d.exists():
                subprocess.run(["rm", "-rf", str(d)], check=True)
        self.logs.mkdir(parents=True)
        self.pki.generate()
        try:
            if self.node == "real":
                self.real_node.setup_network()
            self._start_etcd()
            self._start_apiserver()
            self._write_kubeconfigs()
            self._start_controllers()
            if self.registry:
                self._start_registry()
            if self.node == "real":
                self._start_real_node()
            else:
                self._start_kwok()
                self._create_fake_node()
        except BaseException:
            self.save()
            self.stop()
            raise
        self.timings["total_s"] = round(time.monotonic() - t0, 3)
        self.save()
        return self

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = self.logs / f"{name}.log"
        fh = open(log, "ab")
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=self.workdir)
        fh.close()
        self.processes.append(Process(name, proc.pid, str(log)))
        self.save()
        return proc

    def _start_etcd(self) -> None:
        t0 = time.monotonic()
        for i in range(self.etcd_members):
            self.ports[f"etcd{i}"] = free_port()
            self.ports[f"etcd{i}-peer"] = free_port()
        procs = [self._spawn(f"etcd{i}", self._etcd_argv(i)) for i in range(self.etcd_members)]
        for i, proc in enumerate(procs):
            self.wait_etcd_member(i, proc)
        self.timings["etcd_s"] = round(time.monotonic() - t0, 3)

    def _etcd_argv(self, i: int) -> list[str]:
        p = self.pki
        cluster = ",".join(f"core{j}=http://127.0.0.1:{self.ports[f'etcd{j}-peer']}"
                           for j in range(self.etcd_members))
        url = f"https://127.0.0.1:{self.ports[f'etcd{i}']}"
        listen = url + (f",https://{NODE_IP}:{self.ports[f'etcd{i}']}" if self.node == "real" else "")
        peer = f"http://127.0.0.1:{self.ports[f'etcd{i}-peer']}"
        return [
            str(self.bin_dir / "etcd"), f"--name=core{i}", f"--data-dir={self.workdir}/etcd/core{i}",
            f"--listen-client-urls={listen}", f"--advertise-client-urls={url}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={cluster}", "--initial-cluster-state=new",
            "--initial-cluster-token=localcp",
            f"--cert-file={p.path('etcd-server')}", f"--key-file={p.path('etcd-server', 'key')}",
            f"--trusted-ca-file={p.path('etcd-ca')}", "--client-cert-auth",
            "--listen-metrics-urls=", "--log-level=warn",
            f"--quota-backend-bytes={self.etcd_quota_bytes}",
        ]

    def stop_etcd_member(self, i: int) -> None:
        for proc in [p for p in self.processes if p.name == f"etcd{i}"]:
            stop_pid(proc.pid)
            self.processes.remove(proc)
        self.save()

    def start_etcd_member(self, i: int) -> None:
        """Start a stopped member again on its ports and data dir (it rejoins the cluster)."""
        proc = self._spawn(f"etcd{i}", self._etcd_argv(i))
        self.wait_etcd_member(i, proc)

    def etcd_member_healthy(self, i: int) -> bool:
        p = self.pki
        status, body = https_get(self.ports[f"etcd{i}"], "/health", p.path("etcd-ca"),
                                 p.path("apiserver-etcd-client"), p.path("apiserver-etcd-client", "key"))
        return status == 200 and json.loads(body).get("health") == "true"

    def wait_etcd_member(self, i: int, proc: subprocess.Popen | None = None, timeout: float = 60) -> None:
        wait_for(f"etcd member {i}", lambda: self.etcd_member_healthy(i), timeout, proc,
                 self.logs / f"etcd{i}.log")

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver and start it again on the same port (kubeconfigs stay valid)."""
        for proc in [p for p in self.processes if p.name == "kube-apiserver"]:
            stop_pid(proc.pid)
            self.processes.remove(proc)
        self._start_apiserver(reuse_port=True)
        self.save()

    def _start_apiserver(self, reuse_port: bool = False) -> None:
        t0 = time.monotonic()
        p = self.pki
        if not (reuse_port and "apiserver" in self.ports):
            self.ports["apiserver"] = free_port()
        policy = self.workdir / "audit-policy.yaml"
        # Log every request that is not a read, at Metadata level: the benchmark
        # counts the operator's writes from it.
        policy.write_text(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n"
            "- level: None\n  verbs: [get, list, watch]\n- level: Metadata\n"
        )
        proc = self._spawn("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={','.join(self.etcd_endpoints)}",
            f"--etcd-cafile={p.path('etcd-ca')}", f"--etcd-certfile={p.path('apiserver-etcd-client')}",
            f"--etcd-keyfile={p.path('apiserver-etcd-client', 'key')}",
            *self._apiserver_network_flags(),
            f"--secure-port={self.ports['apiserver']}",
            f"--tls-cert-file={p.path('apiserver')}", f"--tls-private-key-file={p.path('apiserver', 'key')}",
            f"--client-ca-file={p.path('kube-ca')}",
            "--anonymous-auth=true",
            # Never resolve a node's name through the machine's resolver: talk to its InternalIP.
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={p.path('apiserver-kubelet-client')}",
            f"--kubelet-client-key={p.path('apiserver-kubelet-client', 'key')}",
            f"--kubelet-certificate-authority={p.path('kube-ca')}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={p.path('sa', 'pub')}",
            f"--service-account-signing-key-file={p.path('sa', 'key')}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json", "--audit-log-mode=blocking",
            f"--cert-dir={self.workdir}/apiserver-certs",
            f"--requestheader-client-ca-file={p.path('front-proxy-ca')}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={p.path('front-proxy-client')}",
            f"--proxy-client-key-file={p.path('front-proxy-client', 'key')}",
        ])
        admin = (p.path("admin"), p.path("admin", "key"))

        def ready() -> bool:
            status, _ = https_get(self.ports["apiserver"], "/readyz", p.path("kube-ca"), *admin)
            return status == 200

        wait_for("kube-apiserver", ready, 120, proc, self.logs / "kube-apiserver.log", interval=0.2)
        self.timings["apiserver_s"] = round(time.monotonic() - t0, 3)

    def _apiserver_network_flags(self) -> list[str]:
        if self.node == "real":
            # Inside the harness's namespace 0.0.0.0 is loopback and the bridge: pods reach the
            # `kubernetes` Service, whose endpoint is the node IP.
            return ["--bind-address=0.0.0.0", f"--advertise-address={NODE_IP}", "--endpoint-reconciler-type=lease",
                    "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction"]
        return ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
                "--authorization-mode=RBAC"]

    def _kubeconfig_for(self, user: str) -> Path:
        p = self.pki
        path = self.workdir / ("admin.kubeconfig" if user == "admin" else f"{user}.kubeconfig")
        return write_kubeconfig(path, self.ports["apiserver"], p.path("kube-ca"), p.path(user), p.path(user, "key"),
                                user)

    def _write_kubeconfigs(self) -> None:
        node_users = ("node", "kube-proxy") if self.node == "real" else ("kwok",)
        for user in ("admin", "controller-manager", "scheduler", "operator", *node_users):
            self._kubeconfig_for(user)

    def _start_controllers(self) -> None:
        t0 = time.monotonic()
        p = self.pki
        serving = [f"--tls-cert-file={p.path('serving-localhost')}",
                   f"--tls-private-key-file={p.path('serving-localhost', 'key')}"]
        self.ports["controller-manager"] = free_port()
        kcm = self._spawn("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={self.workdir}/controller-manager.kubeconfig",
            f"--authentication-kubeconfig={self.workdir}/controller-manager.kubeconfig",
            f"--authorization-kubeconfig={self.workdir}/controller-manager.kubeconfig",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['controller-manager']}", *serving,
            "--leader-elect=false", "--use-service-account-credentials=true",
            f"--controllers={','.join(self._controllers())}",
            f"--service-account-private-key-file={p.path('sa', 'key')}",
            f"--root-ca-file={p.path('kube-ca')}",
            "--concurrent-gc-syncs=5",
        ])
        self.ports["scheduler"] = free_port()
        sched = self._spawn("kube-scheduler", [
            str(self.bin_dir / "kube-scheduler"),
            f"--kubeconfig={self.workdir}/scheduler.kubeconfig",
            f"--authentication-kubeconfig={self.workdir}/scheduler.kubeconfig",
            f"--authorization-kubeconfig={self.workdir}/scheduler.kubeconfig",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['scheduler']}", *serving,
            "--leader-elect=false",
        ])
        for name, proc in (("kube-controller-manager", kcm), ("kube-scheduler", sched)):
            port = self.ports["controller-manager" if name == "kube-controller-manager" else "scheduler"]
            wait_for(name, lambda port=port: https_get(port, "/healthz", None)[0] == 200, 60, proc,
                     self.logs / f"{name}.log")
        self.timings["controllers_s"] = round(time.monotonic() - t0, 3)

    def _controllers(self) -> list[str]:
        base = ["garbage-collector-controller", "deployment-controller", "replicaset-controller",
                "serviceaccount-controller", "serviceaccount-token-controller", "namespace-controller"]
        if self.node == "real":
            # What real pods behind Services need: endpoints, the kube-root-ca.crt ConfigMap that service
            # account token volumes project, and the node's not-ready taint lifted once it is Ready.
            base += ["endpoints-controller", "endpointslice-controller", "root-ca-certificate-publisher-controller",
                     "node-lifecycle-controller", "pod-garbage-collector-controller", "job-controller",
                     "ttl-after-finished-controller"]
        return base

    def _start_kwok(self) -> None:
        t0 = time.monotonic()
        stages = REPO / "localcp" / "kwok-stages.yaml"
        self.ports["kwok"] = free_port()
        kwok = self._spawn("kwok", [
            str(self.bin_dir / "kwok"), f"--kubeconfig={self.workdir}/kwok.kubeconfig",
            f"--config={stages}", "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--cidr=10.0.0.0/16", "--node-ip=10.0.0.1",
            f"--server-address=127.0.0.1:{self.ports['kwok']}",
        ])

        def kwok_ok() -> bool:
            return http_get(self.ports["kwok"], "/healthz")[0] == 200

        wait_for("kwok", kwok_ok, 60, kwok, self.logs / "kwok.log")
        self.timings["kwok_s"] = round(time.monotonic() - t0, 3)

    def _start_registry(self) -> None:
        t0 = time.monotonic()
        reg = self.image_registry
        proc = self._spawn("registry", reg.argv())
        wait_for("registry", reg.ready, 30, proc, self.logs / "registry.log")
        self.timings["registry_s"] = round(time.monotonic() - t0, 3)

    def _start_real_node(self) -> None:
        t0 = time.monotonic()
        self.real_node.start(self._spawn, self.pki, self._kubeconfig_for)
        wait_node_ready(self.api(), self.logs / "kubelet.log")
        self.timings["node_s"] = round(time.monotonic() - t0, 3)

    def api(self):
        """A kubernetes ApiClient for the admin user."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def _create_fake_node(self) -> None:
        t0 = time.monotonic()
        create_fake_node(self.api(), self.logs / "kwok.log")
        self.timings["node_s"] = round(time.monotonic() - t0, 3)

    def save(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps({
            "etcd_members": self.etcd_members, "etcd_quota_bytes": self.etcd_quota_bytes, "node": self.node,
            "registry": self.registry, "ports": self.ports, "timings": self.timings,
            "processes": [p.__dict__ for p in self.processes],
        }, indent=1))

    @classmethod
    def load(cls, workdir: Path = DEFAULT_WORKDIR) -> ControlPlane:
        state = json.loads((workdir / "state.json").read_text())
        cp = cls(workdir=workdir, etcd_members=state["etcd_members"],
                 etcd_quota_bytes=state.get("etcd_quota_bytes", 2 << 30), node=state.get("node", "kwok"),
                 registry=state.get("registry", False))
        cp.ports = state["ports"]
        cp.timings = state.get("timings", {})
        cp.processes = [Process(**p) for p in state["processes"]]
        return cp

    def stop(self) -> None:
        """Stop every process we started, newest first; SIGKILL what ignores SIGTERM."""
        node_procs = [p for p in self.processes if p.name in ("kube-proxy", "kubelet")]
        for proc in node_procs:
            stop_pid(proc.pid)
        if self.node == "real":
            self.real_node.kill_workloads()
        for proc in reversed(self.processes):
            if proc not in node_procs:
                stop_pid(proc.pid)
        self.processes = []
        if self.node == "real":
            leftovers = self.real_node.cleanup()
            if leftovers:
                raise RuntimeError("the node left things behind: " + "; ".join(leftovers))
        if self.state_file.exists():
            self.state_file.unlink()

    def log_tails(self, lines: int = 20) -> str:
        out = []
        for proc in self.processes:
            text = Path(proc.log).read_text(errors="replace").splitlines()[-lines:]
            out.append(f"==> {proc.log} <==\n" + "\n".join(text))
        return "\n".join(out)
