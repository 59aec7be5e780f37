"""The operator's OLM bundle and file-based catalog: one recipe for `make bundle` (bundle/, as shipped)
and for the OLM harness (a bundle per version with the registry's image, and catalogs of them).

A bundle is config/manifests (CSV base, CRD, RBAC, manager, samples) through kustomize, optionally with
the operator image renamed, through `operator-sdk generate bundle`, then validated. A catalog is what
`opm` serves: the package, one channel whose entries each replace the one before, and `opm render` of
every bundle (docs/olm.md)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from .config import BIN_DIR, REPO

PACKAGE = "etcdproxy-operator"
CHANNEL = "alpha"
SHIPPED_VERSION = "0.1.0"
MANIFESTS = REPO / "config" / "manifests"


def csv_name(version: str) -> str:
    return f"{PACKAGE}.v{version}"


def _run(*argv: str, cwd: Path = REPO, stdin: str | None = None) -> str:
    res = subprocess.run(argv, cwd=cwd, input=stdin, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed: {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


def generate(version: str, out: Path, image: str = "", dockerfile: Path | None = None) -> Path:
    """Write the bundle of ``version`` in ``out``; ``image`` (name:tag) replaces the
    operator image config/manager names; ``dockerfile``: where to put the bundle.Dockerfile written with it."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        overlay = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                   "resources": [os.path.relpath(MANIFESTS, work)]}
        if image:
            name, tag = image.rsplit(":", 1)
            overlay["images"] = [{"name": "etcdproxy-operator", "newName": name, "newTag": tag}]
        (work / "kustomization.yaml").write_text(json.dumps(overlay))
        manifests = _run(str(BIN_DIR / "kustomize"), "build", str(work))
        # operator-sdk reads PROJECT and writes bundle.Dockerfile in its working directory.
        shutil.copy(REPO / "PROJECT", work / "PROJECT")
        shutil.rmtree(out, ignore_errors=True)
        _run(str(BIN_DIR / "operator-sdk"), "generate", "bundle", "-q", "--overwrite", "--version", version,
             "--package", PACKAGE, "--channels", CHANNEL, "--default-channel", CHANNEL,
             "--output-dir", str(out.resolve()), cwd=work, stdin=manifests)
        if dockerfile:
            shutil.copy(work / "bundle.Dockerfile", dockerfile)
    return out


def validate(bundle_dir: Path) -> str:
    """operator-sdk's validation of a bundle (with the operatorframework suite); its report."""
    res = subprocess.run([str(BIN_DIR / "operator-sdk"), "bundle", "validate", str(bundle_dir),
                          "--select-optional", "suite=operatorframework"], capture_output=True, text=True)
    report = (res.stdout + res.stderr).strip()
    if res.returncode != 0 or "level=error" in report:
        raise RuntimeError(f"bundle {bundle_dir} is not valid:\n{report}")
    return report


def write_catalog(out: Path, bundles: dict[str, Path], bundle_ref: str) -> Path:
    """A file-based catalog of ``bundles`` (version -> bundle dir, oldest first) in ``out``; ``bundle_ref``
    is the bundle image reference with ``{version}`` in it. Validated with `opm validate`."""
    shutil.rmtree(out, ignore_errors=True)
    pkg = out / PACKAGE
    pkg.mkdir(parents=True)
    entries, previous = [], ""
    for version in bundles:
        entries.append({"name": csv_name(version), **({"replaces": previous} if previous else {})})
        previous = csv_name(version)
    docs: list[dict] = [{"schema": "olm.package", "name": PACKAGE, "defaultChannel": CHANNEL},
                        {"schema": "olm.channel", "package": PACKAGE, "name": CHANNEL, "entries": entries}]
    for version, bundle_dir in bundles.items():
        template = bundle_ref.format(version=version)
        rendered = _run(str(BIN_DIR / "opm"), "render", str(bundle_dir), "--output", "yaml",
                        "--alpha-image-ref-template", template)
        docs.extend(d for d in yaml.safe_load_all(rendered) if d)
    (pkg / "catalog.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    _run(str(BIN_DIR / "opm"), "validate", str(out))
    return out


def main() -> None:
    """`make bundle`: bundle/ and bundle.Dockerfile as shipped (the image config/manager names)."""
    parser = argparse.ArgumentParser(prog="python -m localcp.bundles")
    parser.add_argument("--version", default=SHIPPED_VERSION)
    args = parser.parse_args()
    out = generate(args.version, REPO / "bundle", dockerfile=REPO / "bundle.Dockerfile")
    print(validate(out))
    print(f"bundle/ written and validated ({csv_name(args.version)})")


if __name__ == "__main__":
    main()
