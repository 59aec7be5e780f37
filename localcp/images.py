"""Container images built from the repo's own sources, with no registry: layer tarballs written
from staging directories, packed as docker-archives and imported into the node's containerd.

Why not the Dockerfiles: their FROM lines name registry images (golang, distroless, the
ansible-operator base) that this machine cannot pull, and no Docker engine runs here. Each image
is built from the same sources and pins as its Dockerfile; ``tests/unit/test_images.py`` holds
the two to the same entrypoint, user, paths and environment (docs/node.md, "Images").
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import debs
from .config import BIN_DIR, REPO

CACHE = REPO / ".cache" / "images"
# One name per image, as the shipped manifests spell them (containerd adds docker.io/library/).
PAUSE_IMAGE = "etcdproxy.local/pause:3.10.1"
GUARD_IMAGE = "etcdproxy-guard:0.1.0"
OPERATOR_IMAGE = "etcdproxy-operator:0.1.0"
SAMPLE_APISERVER_IMAGE = "etcdproxy.local/sample-apiserver:v1.34.4"
COREDNS_IMAGE = "etcdproxy.local/coredns:1.15.0"
# distroless static-debian12: its users, PATH and /tmp.
DISTROLESS_PASSWD = ("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
                     "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
DISTROLESS_GROUP = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The upstream ansible-operator base image (ansible-operator-plugins images/ansible-operator/Dockerfile).
ANSIBLE_HOME = "/opt/ansible"
ANSIBLE_UID = 1001
ANSIBLE_ENTRYPOINT = ["/tini", "--", "/usr/local/bin/ansible-operator", "run", "--watches-file=./watches.yaml"]
PYTHON = "python3.11"  # Debian bookworm's, from hack/packages/operator-base.txt
SITE_PACKAGES = f"/usr/local/lib/{PYTHON}/dist-packages"  # Debian's Python reads this one


@dataclass
class Image:
    name: str
    layers: list[Path] = field(default_factory=list)  # uncompressed layer tarballs, bottom first
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    user: str = ""
    env: list[str] = field(default_factory=lambda: [PATH_ENV])
    workdir: str = ""
    exposed_ports: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)

    def config(self) -> dict:
        cfg: dict = {"Env": self.env, "Entrypoint": self.entrypoint or None, "Cmd": self.cmd or None,
                     "User": self.user, "WorkingDir": self.workdir}
        if self.exposed_ports:
            cfg["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.labels:
            cfg["Labels"] = self.labels
        return cfg

    def archive(self) -> Path:
        """A docker-archive tarball (what `ctr images import` and `docker load` read)."""
        diff_ids = [layer_digest(layer) for layer in self.layers]
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": self.config(),
                             "rootfs": {"type": "layers", "diff_ids": diff_ids},
                             "history": [{"created_by": "localcp.images"} for _ in self.layers]},
                            sort_keys=True).encode()
        config_name = hashlib.sha256(config).hexdigest() + ".json"
        layer_names = [d.split(":")[1] + "/layer.tar" for d in diff_ids]
        manifest = json.dumps([{"Config": config_name, "RepoTags": [self.name], "Layers": layer_names}]).encode()
        out = archive_path(self.name)
        out.parent.mkdir(parents=True, exist_ok=True)
        image_id = "sha256:" + hashlib.sha256(config).hexdigest()
        if out.exists() and image_id_of(self.name) == image_id:
            return out
        with tarfile.open(out, "w") as tar:
            for name, layer in zip(layer_names, self.layers, strict=True):
                tar.add(layer, arcname=name)
            for name, data in ((config_name, config), ("manifest.json", manifest)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        out.with_suffix(".id").write_text(image_id)
        return out


def image_id_of(name: str) -> str:
    """The ID (config digest) of the archive `make images` last wrote for ``name``, or ""."""
    stamp = archive_path(name).with_suffix(".id")
    return stamp.read_text() if stamp.exists() else ""


def layer_digest(layer: Path) -> str:
    """The layer's diff ID, recorded beside it when it was written (``cached_layer``)."""
    return layer.with_suffix(".sha256").read_text()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(*parts: str | Path) -> str:
    """What a cached layer was built from: this recipe, file contents (a directory's, recursively), strings."""
    h = hashlib.sha256(Path(__file__).read_bytes())  # a change to how layers are made rebuilds them
    for part in parts:
        if isinstance(part, Path):
            files = sorted(p for p in part.rglob("*") if p.is_file()) if part.is_dir() else [part]
            for f in files:
                if "__pycache__" not in f.parts:
                    h.update(str(f.relative_to(part.parent)).encode() + bytes.fromhex(_sha256_file(f)))
        else:
            h.update(part.encode())
    return h.hexdigest()[:20]


def cached_layer(name: str, key: str, fill: Callable[[Path], None], owners: dict[str, int] | None = None) -> Path:
    """The layer tarball for ``key``: ``fill`` writes its files into a staging directory once."""
    out = CACHE / "layers" / f"{name}-{key}.tar"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    for old in out.parent.glob(f"{name}-*"):
        old.unlink()
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        root = Path(tmp)
        fill(root)
        _tar_tree(root, out.with_suffix(".partial"), owners or {})
    out.with_suffix(".sha256").write_text("sha256:" + _sha256_file(out.with_suffix(".partial")))
    out.with_suffix(".partial").rename(out)
    return out


def _tar_tree(root: Path, out: Path, owners: dict[str, int]) -> None:
    """Tar ``root``'s contents as a layer: numeric root ownership but for ``owners`` (path prefix -> uid,
    gid 0), fixed times, sorted, so the same files give the same digest."""
    def meta(info: tarfile.TarInfo) -> tarfile.TarInfo:
        path = "/" + info.name
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        for prefix, uid in owners.items():
            if path == prefix or path.startswith(prefix + "/"):
                info.uid = uid
        info.mtime = 0
        return info

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                full = Path(dirpath) / name
                tar.add(full, arcname=str(full.relative_to(root)), recursive=False, filter=meta)


def put_file(root: Path, path: str, data: bytes | Path, mode: int = 0o644) -> None:
    dest = root / path.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, Path):
        shutil.copyfile(data, dest)
    else:
        dest.write_bytes(data)
    dest.chmod(mode)


# ---- static images (a Go or C binary on a distroless-like base) -----------------------------------------
def distroless_base(root: Path) -> None:
    put_file(root, "/etc/passwd", DISTROLESS_PASSWD.encode())
    put_file(root, "/etc/group", DISTROLESS_GROUP.encode())
    put_file(root, "/etc/nsswitch.conf", b"hosts: files dns\n")
    for d, mode in (("tmp", 0o1777), ("home/nonroot", 0o700)):
        (root / d).mkdir(parents=True)
        (root / d).chmod(mode)


def static_image(image: Image, binary: Path) -> Image:
    """``image`` (its config) with one layer: ``binary`` at its entrypoint on a distroless-like base."""
    dest = image.entrypoint[0]

    def fill(root: Path) -> None:
        distroless_base(root)
        put_file(root, dest, binary, 0o755)

    image.layers = [cached_layer(image.name.split("/")[-1].split(":")[0], fingerprint(binary, dest), fill,
                                 {"/home/nonroot": 65532})]
    return image


def guard_config() -> Image:
    """guard/Dockerfile: the static guard binary, run as 65534 (distroless static)."""
    return Image(name=GUARD_IMAGE, user="65534:65534", entrypoint=["/usr/local/bin/etcdproxy-guard"],
                 exposed_ports=["2379/tcp", "2381/tcp"])


def guard_image() -> Image:
    return static_image(guard_config(), BIN_DIR / "etcdproxy-guard")


def sample_apiserver_image() -> Image:
    """k8s.io/sample-apiserver (the demo's tenant API server), built at the pinned Kubernetes version."""
    return static_image(Image(name=SAMPLE_APISERVER_IMAGE, user="65532:65532",
                              entrypoint=["/usr/local/bin/sample-apiserver"]), BIN_DIR / "sample-apiserver")


def coredns_image() -> Image:
    """CoreDNS from its Go module (hack/tools/coredns), the node's cluster DNS (localcp/dns.py)."""
    return static_image(Image(name=COREDNS_IMAGE, user="65532:65532", entrypoint=["/coredns"]), BIN_DIR / "coredns")


def pause_binary() -> Path:
    """Kubernetes' pause, compiled static from the pinned k8s.io/kubernetes module's own source."""
    out = BIN_DIR / "pause"
    if out.exists():
        return out
    mod = subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes"], cwd=REPO / "hack/tools/kube",
                         check=True, capture_output=True, text=True,
                         env={**os.environ, "GOFLAGS": "-mod=mod"}).stdout.strip()
    src = Path(mod) / "build/pause/linux/pause.c"
    subprocess.run(["gcc", "-Os", "-Wall", "-Werror", "-static", "-DVERSION=v3.10.1-localcp", "-o", str(out),
                    str(src)], check=True)
    return out


def pause_image() -> Image:
    return static_image(Image(name=PAUSE_IMAGE, user="65535:65535", entrypoint=["/pause"]), pause_binary())


# ---- the operator image ---------------------------------------------------------------------------------
def _fill_operator_base(root: Path) -> None:
    """The ansible-operator base image's contents on Debian: Python 3.11, tini at /tini, the pinned
    ansible-operator binary, /etc/ansible, and the user 1001 (group 0) with HOME /opt/ansible."""
    debs.unpack(debs.pins(REPO / "hack/packages/operator-base.txt"), root)
    for d in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian"):
        shutil.rmtree(root / d, ignore_errors=True)
    subprocess.run(["ldconfig", "-r", str(root)], check=True)
    compile_python(root, f"/usr/lib/{PYTHON}")  # Debian compiles the stdlib in a maintainer script
    (root / "usr/bin/python3").symlink_to(PYTHON)
    put_file(root, "/tini", root / "usr/bin/tini-static", 0o755)
    put_file(root, "/usr/local/bin/ansible-operator", BIN_DIR / "ansible-operator", 0o755)
    put_file(root, "/etc/passwd", f"root:x:0:0:root:/root:/bin/sh\nansible:x:{ANSIBLE_UID}:0:ansible user:"
                              f"{ANSIBLE_HOME}:/sbin/nologin\n".encode())
    put_file(root, "/etc/group", b"root:x:0:\n")
    put_file(root, "/etc/ansible/hosts", b"localhost ansible_connection=local\n")
    put_file(root, "/etc/ansible/ansible.cfg", b"[defaults]\nroles_path = /opt/ansible/roles\n"
                                           b"library = /usr/share/ansible/openshift\n")
    (root / "tmp").mkdir(exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / ANSIBLE_HOME.lstrip("/") / ".ansible/tmp").mkdir(parents=True)
    for d in (root / ANSIBLE_HOME.lstrip("/")).rglob("*"):
        d.chmod(0o775)
    (root / ANSIBLE_HOME.lstrip("/")).chmod(0o775)


# Dockerfile: removes the bundled collections the operator does not use, in the pip layer.
BUNDLED_COLLECTIONS = REPO / "hack" / "bundled_collections.py"


def _fill_python_deps(root: Path) -> None:
    """Dockerfile: `pip install -r requirements-runtime.txt` and our runner-http plugin, into the
    image's Python (console scripts get the image's interpreter)."""
    target = root / SITE_PACKAGES.lstrip("/")
    pip = [str(REPO / ".venv/bin/pip"), "install", "-q", "--disable-pip-version-check", "--no-compile",
           "--target", str(target)]
    subprocess.run([*pip, "-r", str(REPO / "requirements-runtime.txt")], check=True)
    subprocess.run([*pip, "--no-deps", str(REPO / "runner-http")], check=True)
    bin_dir = root / "usr/local/bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for script in (target / "bin").iterdir():
        text = script.read_bytes()
        if text.startswith(b"#!"):
            text = f"#!/usr/bin/{PYTHON}".encode() + text[text.index(b"\n"):]
        (bin_dir / script.name).write_bytes(text)
        (bin_dir / script.name).chmod(0o755)
    shutil.rmtree(target / "bin")
    # Of the ~100 collections the ansible package bundles, the operator uses those requirements.yml names.
    subprocess.run([sys.executable, str(BUNDLED_COLLECTIONS), str(REPO / "requirements.yml"),
                    str(target / "ansible_collections")], check=True, stdout=subprocess.DEVNULL)
    compile_python(root, SITE_PACKAGES)


def compile_python(root: Path, path: str) -> None:
    """Byte-compile ``path`` inside the image's root. The operator runs as a user who cannot write there, so
    without this every ansible process would compile ansible from source again. Hash-checked, since the
    layers' file times are fixed (mtime-checked caches would always look stale)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "checked-hash",
                    "-s", str(root), "-p", "/", str(root / path.lstrip("/"))],
                   check=True)


APP_FILES = ("ansible.cfg", "watches.yaml", "requirements.yml", "requirements-runtime.txt")
APP_DIRS = ("collections", "roles", "playbooks")


def _fill_app(root: Path) -> None:
    """Dockerfile: our collections, roles, playbooks and config under HOME."""
    home = root / ANSIBLE_HOME.lstrip("/")
    for f in APP_FILES:
        put_file(root, f"{ANSIBLE_HOME}/{f}", REPO / f)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in APP_DIRS:
        shutil.copytree(REPO / d, home / d, ignore=ignore)


def operator_config() -> Image:
    """What the operator's Dockerfile and its base declare: entrypoint, user, workdir, environment
    (tests/unit/test_images.py compares the two); ``operator_image`` adds the layers."""
    home = ANSIBLE_HOME
    return Image(name=OPERATOR_IMAGE, entrypoint=ANSIBLE_ENTRYPOINT, user=str(ANSIBLE_UID), workdir=home,
                 env=[PATH_ENV, f"HOME={home}", "USER_NAME=ansible", f"USER_UID={ANSIBLE_UID}",
                      f"ANSIBLE_CONFIG={home}/ansible.cfg", "ANSIBLE_GATHERING=explicit",
                      f"ANSIBLE_COLLECTIONS_PATH={home}/collections:/usr/share/ansible/collections"])


def operator_image() -> Image:
    """Dockerfile (the operator): the ansible-operator base, our Python pins, our collections and roles."""
    image = operator_config()
    base = cached_layer("operator-base", fingerprint(REPO / "hack/packages/operator-base.txt",
                                                     BIN_DIR / "ansible-operator"),
                        _fill_operator_base, {ANSIBLE_HOME: ANSIBLE_UID})
    deps = cached_layer("operator-deps", fingerprint(REPO / "requirements-runtime.txt", REPO / "runner-http",
                                                     REPO / "requirements.yml", BUNDLED_COLLECTIONS),
                        _fill_python_deps)
    app = cached_layer("operator-app", fingerprint(*(REPO / f for f in APP_FILES + APP_DIRS)), _fill_app,
                       {ANSIBLE_HOME: ANSIBLE_UID})
    image.layers = [base, deps, app]
    return image


IMAGES: dict[str, Callable[[], Image]] = {
    PAUSE_IMAGE: pause_image, GUARD_IMAGE: guard_image, OPERATOR_IMAGE: operator_image,
    SAMPLE_APISERVER_IMAGE: sample_apiserver_image, COREDNS_IMAGE: coredns_image,
}


def archive_path(name: str) -> Path:
    return CACHE / (name.replace("/", "_").replace(":", "_") + ".tar")


def main() -> None:
    """`make images` (outside the harness's network namespace: it reads Debian's and PyPI's archives)."""
    for name, build in IMAGES.items():
        t0 = time.monotonic()
        build().archive()
        print(f"   image {name} ready in {time.monotonic() - t0:.1f}s ({archive_path(name).stat().st_size >> 20} MiB)")


if __name__ == "__main__":
    main()
