"""The cluster's image registry: Debian's docker-registry (distribution 2.8, hack/packages/olm.txt) on
the node IP inside the harness's network namespace, serving TLS with a certificate of the cluster CA,
which the node's containerd trusts for that host (localcp/node.py). Images go in with crane (built from
its Go module, hack/tools/olm), as a user pushes to any registry. Its storage is kept between clusters,
so an unchanged layer is not uploaded again."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import debs
from .config import BIN_DIR, REGISTRY, REPO
from .pki import Pki
from .probes import https_get

REGISTRY_BIN = BIN_DIR / "docker-registry"
PINS = REPO / "hack" / "packages" / "olm.txt"


def install() -> None:
    """Put Debian's registry binary in .cache/bin (unpacked from its package, nothing installed)."""
    pin = next(p for p in debs.pins(PINS) if p.startswith("docker-registry="))
    stamp = REGISTRY_BIN.with_name(".docker-registry.stamp")
    if REGISTRY_BIN.exists() and stamp.exists() and stamp.read_text() == pin:
        return
    with tempfile.TemporaryDirectory() as tmp:
        debs.unpack([pin], Path(tmp))
        shutil.copy2(Path(tmp) / "usr/bin/docker-registry", REGISTRY_BIN)
    stamp.write_text(pin)


@dataclass
class Registry:
    """Files under ``dir`` (config, storage); the serving certificate from ``pki``."""

    dir: Path
    pki: Pki

    @property
    def host(self) -> str:
        return REGISTRY

    def argv(self) -> list[str]:
        if not REGISTRY_BIN.exists():
            raise FileNotFoundError(f"{REGISTRY_BIN} missing: run `make olm-images`")
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "config.yml"
        config.write_text(yaml.safe_dump({
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.dir / "storage")}},
            "http": {"addr": REGISTRY, "tls": {"certificate": str(self.pki.path("registry")),
                                                "key": str(self.pki.path("registry", "key"))}},
        }))
        return [str(REGISTRY_BIN), "serve", str(config)]

    def ready(self) -> bool:
        host, port = REGISTRY.split(":")
        try:
            return https_get(int(port), "/v2/", self.pki.path("kube-ca"), host=host)[0] == 200
        except OSError:
            return False

    def push(self, archive: Path, ref: str) -> None:
        """Push a docker-archive (localcp/images.py) as ``ref`` (``<registry>/<name>:<tag>``)."""
        env = {**os.environ, "SSL_CERT_FILE": str(self.pki.path("kube-ca"))}
        res = subprocess.run([str(BIN_DIR / "crane"), "push", str(archive), ref], env=env,
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"crane push {ref} failed: {res.stderr.strip()}")
