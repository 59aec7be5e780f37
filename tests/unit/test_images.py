"""The images built here (localcp/images.py) describe the same thing as the Dockerfiles they stand in
for: entrypoint, user, workdir, environment, ports and where each copied source lands."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

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
    installed = {"requirements-runtime.txt": None, "runner-http": None, "hack/bundled_collections.py": None}
    for src, dest in copies.items():
        if src not in installed:
            assert app.get(src) == dest, f"Dockerfile copies {src} to {dest}; the image puts it at {app.get(src)}"
    assert set(app) <= set(copies), f"the image adds {set(app) - set(copies)}, which the Dockerfile does not"
    runs = " ".join(rest for word, rest in instructions(REPO / "Dockerfile") if word == "RUN")
    assert "pip install --no-cache-dir -r ${HOME}/requirements-runtime.txt" in runs
    assert "pip install --no-cache-dir /tmp/runner-http/" in runs
    # the bundled collections are pruned in pip's own layer, or the image would not be any smaller
    (pip_run,) = [rest for word, rest in instructions(REPO / "Dockerfile")
                  if word == "RUN" and "requirements-runtime.txt" in rest]
    assert "python3 /tmp/bundled_collections.py ${HOME}/requirements.yml" in pip_run


def bundled_collections():
    spec = importlib.util.spec_from_file_location("bundled_collections", images.BUNDLED_COLLECTIONS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_only_the_bundled_collections_requirements_names_stay(tmp_path: Path):
    pruner = bundled_collections()
    keep = pruner.kept(REPO / "requirements.yml")
    assert keep == {"kubernetes.core"}  # operator_sdk.util is ours (a source in collections/)
    bundled = tmp_path / "ansible_collections"
    for collection in ("kubernetes/core", "community/general", "community/crypto", "ansible/posix"):
        (bundled / collection / "plugins").mkdir(parents=True)
    (bundled / "__pycache__").mkdir()
    (bundled / "ansible_release.py").write_text("")
    assert pruner.prune(bundled, keep) == ["ansible.posix", "community.crypto", "community.general"]
    assert sorted(p.name for p in bundled.iterdir()) == ["__pycache__", "ansible_release.py", "kubernetes"]
    assert (bundled / "kubernetes" / "core" / "plugins").is_dir()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=r"has no kubernetes\.core"):  # a broken image is not built
        pruner.prune(tmp_path / "empty", keep)
