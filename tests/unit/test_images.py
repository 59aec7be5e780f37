"""The images built here (localcp/images.py) describe the same thing as the Dockerfiles they stand in
for: entrypoint, user, workdir, environment, ports and where each copied source lands."""

from __future__ import annotations

import re
from pathlib import Path

from localcp import images

REPO = Path(__file__).resolve().parents[2]


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = dockerfile.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def env_of(dockerfile: Path, home: str) -> dict[str, str]:
    env = {}
    for word, rest in instructions(dockerfile):
        if word == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", rest):
                env[key] = value.replace("${HOME}", home)
    return env


def test_operator_image_has_the_dockerfiles_environment_and_the_bases_entrypoint():
    image = images.operator_config()
    env = dict(e.split("=", 1) for e in image.env)
    for key, value in env_of(REPO / "Dockerfile", images.ANSIBLE_HOME).items():
        assert env.get(key) == value, f"Dockerfile sets {key}={value}, the image {env.get(key)}"
    # The upstream base image's (ansible-operator-plugins images/ansible-operator/Dockerfile).
    assert env["HOME"] == "/opt/ansible" and image.workdir == "/opt/ansible" and image.user == "1001"
    assert image.entrypoint == ["/tini", "--", "/usr/local/bin/ansible-operator", "run",
                                "--watches-file=./watches.yaml"]


def test_operator_image_copies_what_the_dockerfile_copies_to_the_same_place():
    copies = {}
    for word, rest in instructions(REPO / "Dockerfile"):
        if word == "COPY":
            src, dest = rest.split()
            copies[src.rstrip("/")] = dest.rstrip("/").replace("${HOME}", images.ANSIBLE_HOME)
    app = {f: f"{images.ANSIBLE_HOME}/{f}" for f in images.APP_FILES + images.APP_DIRS}
    # The Dockerfile copies these two only to pip-install them; the image pip-installs them directly.
    installed = {"requirements-runtime.txt": None, "runner-http": None}
    for src, dest in copies.items():
        if src not in installed:
            assert app.get(src) == dest, f"Dockerfile copies {src} to {dest}; the image puts it at {app.get(src)}"
    assert set(app) <= set(copies), f"the image adds {set(app) - set(copies)}, which the Dockerfile does not"
    runs = " ".join(rest for word, rest in instructions(REPO / "Dockerfile") if word == "RUN")
    assert "pip install --no-cache-dir -r ${HOME}/requirements-runtime.txt" in runs
    assert "pip install --no-cache-dir /tmp/runner-http/" in runs


def test_guard_image_matches_guard_dockerfile():
    image = images.guard_config()
    lines = instructions(REPO / "guard/Dockerfile")
    final = lines[max(i for i, (w, _) in enumerate(lines) if w == "FROM"):]
    (user,) = [rest for w, rest in final if w == "USER"]
    (entrypoint,) = [rest for w, rest in final if w == "ENTRYPOINT"]
    (expose,) = [rest for w, rest in final if w == "EXPOSE"]
    (copy,) = [rest for w, rest in final if w == "COPY"]
    assert image.user == user
    assert entrypoint == "[" + ", ".join(f'"{a}"' for a in image.entrypoint) + "]"
    assert copy.split()[-1] == image.entrypoint[0]
    assert sorted(image.exposed_ports) == sorted(f"{p}/tcp" for p in expose.split())
    assert "distroless/static" in final[0][1], "the image stands in for distroless static"


def test_the_manifests_name_the_images_built_here():
    defaults = (REPO / "roles/etcdstorage/defaults/main.yml").read_text()
    assert f"default('{images.GUARD_IMAGE}', true)" in defaults
    manager = (REPO / "config/manager/manager.yaml").read_text()
    assert f"value: {images.GUARD_IMAGE}" in manager
    assert f"image: {images.SAMPLE_APISERVER_IMAGE}" in (REPO / "config/samples/wardle/deployment.yaml").read_text()


def test_layers_are_reproducible(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "CACHE", tmp_path)
    (tmp_path / "bin").write_bytes(b"\x7fELF pretend")
    first = images.static_image(images.Image(name="x:1", entrypoint=["/x"]), tmp_path / "bin").layers[0]
    digest = images._sha256_file(first)
    first.unlink()
    again = images.static_image(images.Image(name="x:1", entrypoint=["/x"]), tmp_path / "bin").layers[0]
    assert images._sha256_file(again) == digest
