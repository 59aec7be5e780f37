"""A real node: containerd + runc + the CNI bridge plugin (Debian packages), kubelet and kube-proxy
(built from the pinned k8s.io/kubernetes), running pods from images built here (localcp/images.py).

Everything runs inside the network namespace the harness made (hack/in-netns.sh): its only
interfaces are loopback and the bridge below, and it has no route out of the machine. The
bridge carries the node IP; pods hang off it; the control plane listens on it too, so pods reach
kube-apiserver (the ``kubernetes`` Service) and the core etcd. What the node changes outside that
namespace (mounts, cgroups, six kernel settings kubelet insists on) is recorded and undone by
``stop`` (docs/node.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .config import (
    BIN_DIR,
    BRIDGE,
    CLUSTER_DNS,
    CLUSTER_DOMAIN,
    NODE_IP,
    NODE_NAME,
    POD_CIDR,
    REGISTRY,
    SERVICE_CIDR,
)
from .images import IMAGES, PAUSE_IMAGE, archive_path, image_id_of
from .probes import StartError, free_port, http_get, wait_for
from .processes import pid_alive

CNI_BIN_DIR = "/usr/lib/cni"
# Kernel settings kubelet sets at start (pkg/kubelet/cm: setupKernelTunables); stop() puts them back.
KUBELET_SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
                   "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")
CGROUP_ROOT = "/sys/fs/cgroup"
# Machine-wide (sysctls are): the values before any of our nodes started, and which nodes run.
SYSCTL_RECORD = Path("/run/etcdproxy-node")


class NotContainedError(StartError):
    """Refused: a real node only starts inside the harness's own network namespace."""


def require_own_netns() -> str:
    """The harness's namespace we run in; refuse to start anything networked outside one."""
    name = os.environ.get("ETCDPROXY_NETNS", "")
    if not name or not Path("/run/netns", name).exists() or (
            os.stat(Path("/run/netns", name)).st_ino != os.stat("/proc/self/ns/net").st_ino):
        raise NotContainedError("a real node runs only inside the harness's network namespace: "
                                "run it through `hack/in-netns.sh` (the make targets do)")
    return name


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@dataclass
class Node:
    """The node's files live in ``dir``; ``cgroup`` names its own subtree in every hierarchy."""

    dir: Path
    ports: dict[str, int]
    timings: dict[str, float]

    @property
    def socket(self) -> Path:
        return self.dir / "containerd.sock"

    @property
    def cgroup(self) -> str:
        return "epo-" + hashlib.sha256(self.dir.resolve().as_posix().encode()).hexdigest()[:12]

    # ---- network: the bridge, before anything listens on the node IP ------------------------------
    def setup_network(self) -> None:
        require_own_netns()
        links = sh("ip", "-o", "link", "show")
        if f": {BRIDGE}:" not in links:
            sh("ip", "link", "add", BRIDGE, "type", "bridge")
            sh("ip", "addr", "add", f"{NODE_IP}/{POD_CIDR.split('/')[1]}", "dev", BRIDGE)
            sh("ip", "link", "set", BRIDGE, "up")
            # Service IPs from the netns itself (tests, the control plane) go to the bridge, where
            # kube-proxy's rules rewrite them; nothing else is routable.
            sh("ip", "route", "add", SERVICE_CIDR, "dev", BRIDGE)
        # A pod reaching a Service backed by a pod on the same bridge: its reply must pass the netns's
        # conntrack, or the client sees the pod's address instead of the Service's.
        Path("/proc/sys/net/bridge/bridge-nf-call-iptables").write_text("1")

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self, spawn, pki, kubeconfig_for) -> None:
        """containerd (and the images), kubelet, kube-proxy; ``spawn`` starts and records a process."""
        t0 = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._save_sysctls()
        self._make_cgroups()
        containerd = spawn("containerd", ["containerd", "--config", str(self._containerd_config(pki))])
        wait_for("containerd", lambda: self._ctr("version").returncode == 0, 30, containerd,
                 self.dir.parent / "logs" / "containerd.log")
        self.import_images(list(IMAGES))
        self.forget_pulled_images()
        # `ctr` answers before containerd's CRI plugin has initialized; a kubelet started then exits at once
        # ("server is not initialized yet"), which failed a whole node suite once (session 21).
        wait_for("containerd's CRI", self._cri_answers, 30, containerd, self.dir.parent / "logs" / "containerd.log")
        kubelet = spawn("kubelet", [str(BIN_DIR / "kubelet"), f"--config={self._kubelet_config(pki)}",
                                    f"--kubeconfig={kubeconfig_for('node')}", f"--root-dir={self.dir / 'kubelet'}",
                                    f"--node-ip={NODE_IP}", f"--hostname-override={NODE_NAME}", "--v=1"])
        wait_for("kubelet", lambda: http_get(self.ports["kubelet-healthz"], "/healthz")[0] == 200, 60, kubelet,
                 self.dir.parent / "logs" / "kubelet.log")
        proxy = spawn("kube-proxy", [str(BIN_DIR / "kube-proxy"), f"--config={self._proxy_config(kubeconfig_for)}"])
        wait_for("kube-proxy", lambda: http_get(self.ports["kube-proxy-healthz"], "/healthz")[0] == 200, 60,
                 proxy, self.dir.parent / "logs" / "kube-proxy.log")
        self.timings["node processes_s"] = round(time.monotonic() - t0, 3)

    def _cri_answers(self) -> bool:
        """The CRI RuntimeService answers Version, as kubelet asks first (an empty request is a valid one)."""
        import grpc

        with grpc.insecure_channel(f"unix://{self.socket}") as channel:
            version = channel.unary_unary("/runtime.v1.RuntimeService/Version",
                                          request_serializer=bytes, response_deserializer=bytes)
            try:
                version(b"", timeout=2)
            except grpc.RpcError:
                return False
        return True

    def _ctr(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
                              capture_output=True, text=True)

    @property
    def image_store(self) -> Path:
        """containerd's root (content, snapshots, metadata): kept between clusters, so an unchanged
        image is not imported again (the operator's takes ~10 s)."""
        return self.dir.parent / "containerd-root"

    def forget_pulled_images(self) -> None:
        """Drop what earlier clusters pulled from the cluster's registry: the store outlives clusters, and a
        tag pushed again with new content (a rebuilt operator, a new bundle) would otherwise be served
        stale to every pull with IfNotPresent. Layers shared with imported images stay unpacked."""
        listed = self._ctr("images", "ls", "-q")
        stale = [name for name in listed.stdout.split() if name.startswith(f"{REGISTRY}/")]
        if stale:
            res = self._ctr("images", "rm", *stale)
            if res.returncode != 0:
                raise StartError(f"removing images pulled by an earlier cluster failed: {res.stderr.strip()}")

    def import_images(self, images: list[str]) -> None:
        """Import the archives `make images` built (building needs the package archives; this does not)."""
        stamps = self.image_store / "imported.json"
        imported = json.loads(stamps.read_text()) if stamps.exists() else {}
        for name in images:
            t0 = time.monotonic()
            tar, want = archive_path(name), image_id_of(name)
            if not want:
                raise StartError(f"no image archive {tar}: run `make images` first")
            if imported.get(name) == want:  # the record lives in the store it describes
                continue
            res = self._ctr("images", "import", str(tar))
            if res.returncode != 0:
                raise StartError(f"importing {name} into containerd failed: {res.stderr.strip()}")
            imported[name] = want
            stamps.write_text(json.dumps(imported, indent=1))
            self.timings[f"import {name}_s"] = round(time.monotonic() - t0, 3)

    # ---- config files -------------------------------------------------------------------------------
    def _containerd_config(self, pki) -> Path:
        d = self.dir
        # The cluster's registry (localcp/registry.py), over TLS with the cluster CA: the only host
        # containerd knows how to reach (any other image must already be in its store).
        hosts = d / "certs.d" / REGISTRY / "hosts.toml"
        hosts.parent.mkdir(parents=True, exist_ok=True)
        hosts.write_text(f"""server = "https://{REGISTRY}"
[host."https://{REGISTRY}"]
  capabilities = ["pull", "resolve"]
  ca = "{pki.path('kube-ca')}"
""")
        cni = d / "cni"
        cni.mkdir(exist_ok=True)
        (cni / "10-bridge.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": "localcp",
            "plugins": [
                {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP,
                                                             "rangeStart": _offset(POD_CIDR, 256)}]],
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(d / "cni-ipam")}},
            ],
        }, indent=1))
        path = d / "containerd.toml"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        path.write_text(f"""version = 2
root = "{self.image_store}"
state = "{d / 'containerd/state'}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[metrics]
  address = ""
[debug]
  level = "warn"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # root here lacks CAP_SYS_RESOURCE: without this every sandbox fails to start.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  # Pod network namespaces under the node's own state dir (not /var/run/netns): cleanup finds them.
  netns_mounts_under_state_dir = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [{cri}.registry]
    config_path = "{d / 'certs.d'}"
  [{cri}.cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni}"
""")
        return path

    def _kubelet_config(self, pki) -> Path:
        self.ports.setdefault("kubelet-healthz", free_port())
        self.ports.setdefault("kubelet", free_port())
        resolv = self.dir / "resolv.conf"
        resolv.write_text("")  # pods with dnsPolicy Default get no resolver of the machine's
        cfg = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": NODE_IP, "port": self.ports["kubelet"], "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": self.ports["kubelet-healthz"],
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                               "x509": {"clientCAFile": str(pki.path("kube-ca"))}},
            "authorization": {"mode": "AlwaysAllow"},
            "tlsCertFile": str(pki.path("kubelet-serving")),
            "tlsPrivateKeyFile": str(pki.path("kubelet-serving", "key")),
            "cgroupDriver": "cgroupfs", "cgroupRoot": f"/{self.cgroup}", "failCgroupV1": False, "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "clusterDNS": [CLUSTER_DNS], "clusterDomain": CLUSTER_DOMAIN, "resolvConf": str(resolv),
            # Local images cannot be pulled again: never collect them.
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            # Secret and ConfigMap volumes follow their objects within seconds (default 1m).
            "syncFrequency": "10s",
            "serializeImagePulls": False, "registerNode": True,
            "localStorageCapacityIsolation": True,
        }
        path = self.dir / "kubelet.yaml"
        path.write_text(json.dumps(cfg, indent=1))
        return path

    def _proxy_config(self, kubeconfig_for) -> Path:
        self.ports.setdefault("kube-proxy-healthz", free_port())
        self.ports.setdefault("kube-proxy-metrics", free_port())
        cfg = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig_for("kube-proxy"))},
            "mode": "iptables", "clusterCIDR": POD_CIDR, "hostnameOverride": NODE_NAME,
            "healthzBindAddress": f"127.0.0.1:{self.ports['kube-proxy-healthz']}",
            "metricsBindAddress": f"127.0.0.1:{self.ports['kube-proxy-metrics']}",
            # Leave the machine-wide conntrack table size and timeouts alone.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"localhostNodePorts": False},
        }
        path = self.dir / "kube-proxy.yaml"
        path.write_text(json.dumps(cfg, indent=1))
        return path

    # ---- what the node changes outside its namespace, and undoing it ------------------------------
    def _save_sysctls(self) -> None:
        """Record the machine's values before the first of our kubelets changes them; every running node
        holds a claim, and the last one to stop puts the values back (``_restore_sysctls``)."""
        (SYSCTL_RECORD / "holders").mkdir(parents=True, exist_ok=True)
        originals = SYSCTL_RECORD / "originals.json"
        if not originals.exists():
            originals.write_text(json.dumps({k: Path("/proc/sys", k).read_text().strip() for k in KUBELET_SYSCTLS}))
        (SYSCTL_RECORD / "holders" / self.cgroup).write_text(str(self.dir))

    def _restore_sysctls(self) -> None:
        holders = SYSCTL_RECORD / "holders"
        (holders / self.cgroup).unlink(missing_ok=True)
        originals = SYSCTL_RECORD / "originals.json"
        if not originals.exists() or (holders.exists() and any(holders.iterdir())):
            return
        for key, value in json.loads(originals.read_text()).items():
            Path("/proc/sys", key).write_text(value)
        originals.unlink()
        holders.rmdir()
        SYSCTL_RECORD.rmdir()

    def _make_cgroups(self) -> None:
        for hierarchy in _hierarchies():
            d = hierarchy / self.cgroup
            d.mkdir(exist_ok=True)
            if hierarchy.name == "cpuset":
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (d / f).write_text((hierarchy / f).read_text())

    def kill_workloads(self, timeout: float = 15) -> None:
        """Kill every container (everything in the node's cgroups) and every shim of its containerd."""
        pids: set[int] = set()
        for hierarchy in _hierarchies():
            top = hierarchy / self.cgroup
            if top.exists():
                for procs in top.rglob("cgroup.procs"):
                    pids |= {int(x) for x in procs.read_text().split()}
        address = str(self.socket).encode()
        for entry in Path("/proc").iterdir():
            try:
                cmd = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
            except OSError:
                continue
            if b"containerd-shim" in cmd and address in cmd:
                pids.add(int(entry.name))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while any(pid_alive(pid) for pid in pids):
            if time.monotonic() > deadline:
                raise StartError(f"node processes survived SIGKILL: {sorted(pids)}")
            time.sleep(0.05)

    def cleanup(self) -> list[str]:
        """After every node process is gone: unmount, remove cgroups, restore sysctls. Returns leftovers."""
        problems = []
        for mnt in reversed(mounts_under(self.dir)):
            res = subprocess.run(["umount", "-l", mnt], capture_output=True, text=True)
            if res.returncode != 0:
                problems.append(f"umount {mnt}: {res.stderr.strip()}")
        for hierarchy in _hierarchies():
            top = hierarchy / self.cgroup
            if top.exists():
                for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                    _rmdir(d, problems)
                _rmdir(top, problems)
        self._restore_sysctls()
        return problems


def wait_node_ready(api, log: Path, name: str = NODE_NAME, timeout: float = 90) -> None:
    """Until node ``name`` is registered, Ready and without the not-ready taint admission puts on new nodes."""
    from kubernetes import client

    core = client.CoreV1Api(api)

    def ready() -> bool:
        try:
            node = core.read_node(name)
        except client.ApiException as exc:
            if exc.status == 404:  # kubelet has not registered it yet
                return False
            raise
        conds = {c.type: c.status for c in (node.status.conditions or [])}
        return conds.get("Ready") == "True" and not any(
            t.key == "node.kubernetes.io/not-ready" for t in (node.spec.taints or []))

    wait_for(f"node {name} Ready", ready, timeout, None, log, interval=0.2)


def _rmdir(d: Path, problems: list[str]) -> None:
    try:
        d.rmdir()
    except OSError as exc:
        problems.append(f"rmdir {d}: {exc}")


def _hierarchies() -> list[Path]:
    return [p for p in Path(CGROUP_ROOT).iterdir() if p.is_dir() and (p / "cgroup.procs").exists()]


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, in mount order."""
    prefix = str(path.resolve())
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mnt = line.split()[4].encode().decode("unicode_escape")
        if mnt == prefix or mnt.startswith(prefix + "/"):
            out.append(mnt)
    return out


def _offset(cidr: str, n: int) -> str:
    import ipaddress

    return str(ipaddress.ip_network(cidr)[n])
