"""What the demos print: a heading per step and each kubectl command they show with its output."""

from __future__ import annotations

import subprocess

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
