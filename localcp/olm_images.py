"""Images of the OLM path (docs/olm.md), built like the project's own (localcp/images.py) and pushed to
the cluster's registry: OLM's image and opm's, from the modules pinned in hack/tools/olm, laid out as
their upstream Dockerfiles say (OLM's Dockerfile, operator-registry's release/goreleaser.opm.Dockerfile),
and the operator's bundle and file-based catalog images (bundle.Dockerfile; what `opm generate
dockerfile` writes)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import yaml

from . import debs, registry
from .config import BIN_DIR, REGISTRY, REPO
from .images import Image, cached_layer, distroless_base, fingerprint, put_file
from .registry import PINS

OLM_MODULE = "github.com/operator-framework/operator-lifecycle-manager"
OPM_MODULE = "github.com/operator-framework/operator-registry"
# The label opm reads to find a catalog's configs (containertools.ConfigsLocationLabel).
CONFIGS_LABEL = "operators.operatorframework.io.index.configs.v1"
UPSTREAM_UID = "1001"  # both upstream images run as 1001


def module_version(module: str, tooldir: str = "olm") -> str:
    """The version of ``module`` pinned in hack/tools/<tooldir>/go.mod (one home for each pin)."""
    gomod = (REPO / "hack" / "tools" / tooldir / "go.mod").read_text()
    found = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", gomod, re.M)
    if not found:
        raise LookupError(f"{module} is not pinned in hack/tools/{tooldir}/go.mod")
    return found.group(1)


OLM_IMAGE = f"{REGISTRY}/operator-framework/olm:{module_version(OLM_MODULE)}"
OPM_IMAGE = f"{REGISTRY}/operator-framework/opm:{module_version(OPM_MODULE)}"
OLM_BINARIES = ("olm", "catalog", "package-server", "copy-content", "cpb")


def olm_image() -> Image:
    """OLM's Dockerfile: its five binaries in /bin and a /bin/cp (busybox's, as upstream's distroless
    debug base has) that bundle-unpack Jobs run; user 1001; entrypoint /bin/olm."""
    busybox = [p for p in debs.pins(PINS) if p.startswith("busybox-static=")]

    def fill(root: Path) -> None:
        distroless_base(root)
        for name in OLM_BINARIES:
            put_file(root, f"/bin/{name}", BIN_DIR / name, 0o755)
        debs.unpack(busybox, root / "busybox-deb")
        put_file(root, "/bin/busybox", root / "busybox-deb/bin/busybox", 0o755)
        shutil.rmtree(root / "busybox-deb")
        os.symlink("busybox", root / "bin/cp")

    layer = cached_layer("olm", fingerprint(Path(__file__), *(BIN_DIR / n for n in OLM_BINARIES), *busybox), fill)
    return Image(name=OLM_IMAGE, layers=[layer], entrypoint=["/bin/olm"], user=UPSTREAM_UID,
                 exposed_ports=["8080/tcp", "5443/tcp"])


def _opm_layer() -> Path:
    def fill(root: Path) -> None:
        distroless_base(root)
        put_file(root, "/bin/opm", BIN_DIR / "opm", 0o755)
        put_file(root, "/bin/grpc_health_probe", BIN_DIR / "grpc_health_probe", 0o755)

    return cached_layer("opm", fingerprint(Path(__file__), BIN_DIR / "opm", BIN_DIR / "grpc_health_probe"), fill)


def opm_image() -> Image:
    """operator-registry's opm image: /bin/opm and /bin/grpc_health_probe (OLM probes catalog pods with it)."""
    return Image(name=OPM_IMAGE, layers=[_opm_layer()], entrypoint=["/bin/opm"], user=UPSTREAM_UID)


def bundle_config(bundle_dir: Path, ref: str) -> Image:
    """bundle.Dockerfile: FROM scratch, labelled with the bundle's annotations.yaml."""
    labels = yaml.safe_load((bundle_dir / "metadata" / "annotations.yaml").read_text())["annotations"]
    return Image(name=ref, env=[], labels=labels)


def bundle_image(bundle_dir: Path, ref: str) -> Image:
    """``bundle_config`` with one layer: /manifests and /metadata."""
    def fill(root: Path) -> None:
        shutil.copytree(bundle_dir / "manifests", root / "manifests")
        shutil.copytree(bundle_dir / "metadata", root / "metadata")

    image = bundle_config(bundle_dir, ref)
    key = fingerprint(Path(__file__), bundle_dir / "manifests", bundle_dir / "metadata")
    image.layers = [cached_layer(f"bundle-{ref.rsplit('/', 1)[1].replace(':', '-')}", key, fill)]
    return image


def catalog_config(ref: str) -> Image:
    """What `opm generate dockerfile` writes: FROM the opm image, `opm serve /configs
    --cache-dir=/tmp/cache`, the label that says where the configs are."""
    return Image(name=ref, entrypoint=["/bin/opm"], cmd=["serve", "/configs", "--cache-dir=/tmp/cache"],
                 user=UPSTREAM_UID, labels={CONFIGS_LABEL: "/configs"})


def catalog_image(configs: Path, ref: str) -> Image:
    """``catalog_config`` on the opm image's layer, with the file-based catalog at /configs and opm's serve
    cache built at image build time (as the generated Dockerfile's RUN does)."""
    def fill(root: Path) -> None:
        shutil.copytree(configs, root / "configs")
        subprocess.run([str(BIN_DIR / "opm"), "serve", str(root / "configs"), f"--cache-dir={root / 'tmp/cache'}",
                        "--cache-only"], check=True, capture_output=True)

    image = catalog_config(ref)
    key = fingerprint(Path(__file__), configs, BIN_DIR / "opm")
    layer = cached_layer(f"catalog-{ref.rsplit('/', 1)[1].replace(':', '-')}", key, fill,
                         {"/tmp/cache": int(UPSTREAM_UID)})
    image.layers = [_opm_layer(), layer]
    return image

def main() -> None:
    """`make olm-images` (outside the harness's network namespace: it reads Debian's archive): the OLM and
    opm images, and the registry's binary. Bundles and catalogs are built where they are pushed."""
    registry.install()
    for build in (olm_image, opm_image):
        t0 = time.monotonic()
        image = build()
        image.archive()
        print(f"   image {image.name} ready in {time.monotonic() - t0:.1f}s")


if __name__ == "__main__":
    main()
