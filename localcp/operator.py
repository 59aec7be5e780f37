"""Run the real ansible-operator binary out-of-cluster against a kubeconfig."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import BIN_DIR, REPO
from .probes import StartError, accepts, free_port, http_get, wait_for
from .processes import stop_pid

# ansible-operator's caching API proxy always listens here (hard-coded upstream).
PROXY_PORT = 8888
VENV = Path(os.environ.get("VIRTUAL_ENV") or REPO / ".venv")


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def completed_runs(log: str, name: str) -> int:
    """Completed ansible-runner runs (reconciles) of EtcdStorage ``name`` in an operator's log."""
    return sum(1 for line in log.splitlines() if '"Ansible-runner exited' in line and f'"name":"{name}"' in line)


def go_runtime_env() -> dict[str, str]:
    """The Go runtime settings the shipped manager container sets (GOGC, ...), so an operator the harness
    starts out of cluster runs as the shipped one does."""
    manager = yaml.safe_load((REPO / "config/manager/manager.yaml").read_text())
    (container,) = manager["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("GO")}


def operator_env(kubeconfig: Path, namespace: str, core_endpoints: str, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update(go_runtime_env())
    env.update({
        "KUBECONFIG": str(kubeconfig),
        "VIRTUAL_ENV": str(VENV),
        "PATH": f"{VENV / 'bin'}:{BIN_DIR}:{env.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_GATHERING": "explicit",
        "ANSIBLE_PYTHON_INTERPRETER": str(VENV / "bin" / "python"),
        "ETCDPROXY_NAMESPACE": namespace,
        "ETCDPROXY_CORE_ENDPOINTS": core_endpoints,
        # Tests shorten the wait for material outside our watches.
        "ETCDPROXY_RETRY_PERIOD": os.environ.get("ETCDPROXY_RETRY_PERIOD", "30s"),
        # Cache (and watch dependents) only in the operator namespace: the EtcdStorage is cluster-scoped
        # and still watched; no cluster-wide Secret informer, so no cluster-wide Secret RBAC.
        "WATCH_NAMESPACE": namespace,
    })
    env.pop("PYTHONPATH", None)
    if extra:
        env.update(extra)
    return env


@dataclass
class Operator:
    proc: subprocess.Popen
    log: Path
    health_port: int
    restart_args: tuple = ()

    def stop(self) -> None:
        stop_pid(self.proc.pid)

    def crash(self) -> None:
        """SIGKILL the operator and every ansible-runner/ansible process it started (a node dying)."""
        # ansible-runner runs ansible-playbook under a pty in a session of its own, so a process
        # group kill would miss it; a pod's death takes every descendant at once.
        victims = [self.proc.pid, *descendants(self.proc.pid)]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)

    def restart(self) -> None:
        """Start a new operator process in place of this one (same settings, same log)."""
        fresh = start_operator(*self.restart_args)
        self.proc, self.health_port = fresh.proc, fresh.health_port

    @contextlib.contextmanager
    def restarted(self, core_endpoints: str | None = None, extra_env: dict | None = None) -> Iterator[Operator]:
        """This operator, stopped and started with other core endpoints or more environment for a while, then
        as it was (one ansible-operator per machine: its API proxy port is fixed)."""
        original = self.restart_args
        kubeconfig, endpoints, log, namespace, max_concurrent, env, watches = original
        self.stop()
        self.restart_args = (kubeconfig, core_endpoints or endpoints, log, namespace, max_concurrent,
                             {**(env or {}), **(extra_env or {})}, watches)
        self.restart()
        try:
            yield self
        finally:
            self.stop()
            self.restart_args = original
            self.restart()


def start_operator(kubeconfig: Path, core_endpoints: str, log: Path, namespace: str = "kube-apiserver-storage",
                   max_concurrent: int = 2, extra_env: dict | None = None,
                   watches: Path = REPO / "watches.yaml") -> Operator:
    if accepts("127.0.0.1", PROXY_PORT):
        raise StartError(f"127.0.0.1:{PROXY_PORT} is in use: ansible-operator's API proxy needs it (the port is "
                         f"fixed in its code). Is another operator running? `make cluster-down` stops a kept demo.")
    health = free_port()
    argv = [
        str(BIN_DIR / "ansible-operator"), "run",
        f"--watches-file={watches}",
        "--leader-elect=false",
        "--metrics-bind-address=0",
        f"--health-probe-bind-address=127.0.0.1:{health}",
        f"--max-concurrent-reconciles={max_concurrent}",
    ]
    fh = open(log, "ab")
    proc = subprocess.Popen(argv, cwd=REPO, env=operator_env(kubeconfig, namespace, core_endpoints, extra_env),
                            stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    fh.close()

    def ready() -> bool:
        return http_get(health, "/readyz", timeout=1)[0] == 200

    wait_for("ansible-operator", ready, 60, proc, log)
    return Operator(proc, log, health, (kubeconfig, core_endpoints, log, namespace, max_concurrent, extra_env, watches))


def main() -> None:
    """`make run`: the operator in the foreground against $KUBECONFIG."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        sys.exit("KUBECONFIG is not set")
    endpoints = os.environ.get("ETCDPROXY_CORE_ENDPOINTS", "")
    env = operator_env(Path(kubeconfig), os.environ.get("ETCDPROXY_NAMESPACE", "kube-apiserver-storage"),
                       endpoints)
    argv = [str(BIN_DIR / "ansible-operator"), "run", f"--watches-file={REPO / 'watches.yaml'}",
            "--leader-elect=false", "--max-concurrent-reconciles=2"]
    os.execve(argv[0], argv, env)
