"""What the demos print: a heading per step and each kubectl command they show with its output."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

from kubernetes import client

from .cluster import ControlPlane
from .config import BIN_DIR
from .probes import StartError


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def kubectl(cp: ControlPlane, *args: str, check: bool = False) -> str:
    print(f"$ kubectl {' '.join(args)}", flush=True)
    out = subprocess.run([str(BIN_DIR / "kubectl"), f"--kubeconfig={cp.kubeconfig}", *args],
                         capture_output=True, text=True)
    print((out.stdout + out.stderr).rstrip(), flush=True)
    if check and out.returncode != 0:
        raise StartError(f"kubectl {' '.join(args)} failed")
    return out.stdout


def run_demo(what: str, cp: ControlPlane, body: Callable[[], None], looks: list[str]) -> int:
    """Run a demo's ``body`` on ``cp``; stop the cluster after, unless KEEP=1 and it succeeded (then say
    how to look at it: ``looks`` are commands run inside the demo's network namespace)."""
    keep = os.environ.get("KEEP") == "1"
    t0 = time.monotonic()
    succeeded = False
    try:
        body()
        print(f"\n{what} finished in {time.monotonic() - t0:.1f}s", flush=True)
        succeeded = True
        if keep:
            netns = os.environ.get("ETCDPROXY_NETNS", "")
            print(f"\nKEEP=1: still running, inside network namespace {netns}. Look at it with\n"
                  + "".join(f"  hack/in-netns.sh demo {cmd}\n" for cmd in looks)
                  + "stop it with `make cluster-down`")
        return 0
    except (StartError, RuntimeError, client.ApiException) as exc:
        print(f"\n{what} failed: {exc}", file=sys.stderr)
        print(cp.log_tails(), file=sys.stderr)
        return 1
    finally:
        if not (keep and succeeded):  # a failed demo cleans up after itself, KEEP=1 or not
            cp.stop()
            print("stopped the local cluster", flush=True)
