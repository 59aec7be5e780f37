"""Keep only the collections the operator uses of the ~100 the `ansible` package bundles.

requirements-runtime.txt pins the `ansible` package because it carries kubernetes.core (there is no
Galaxy here); its other collections are ~490 of the operator image's ~540 MiB, which every node that runs
the operator or a backup Job would pull. The kept ones are requirements.yml's collections that have no
`source` (ours come from collections/). Run by the Dockerfile in the same RUN as pip (a later layer would
not make the image smaller) and by localcp/images.py for the images built here.

usage: bundled_collections.py REQUIREMENTS_YML [BUNDLED_DIR]
  BUNDLED_DIR: the `ansible` package's ansible_collections directory (default: the installed one)
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import yaml


def kept(requirements: Path) -> set[str]:
    """``namespace.name`` of each collection requirements.yml takes from the ansible package."""
    doc = yaml.safe_load(requirements.read_text()) or {}
    return {c["name"] for c in doc.get("collections") or [] if not c.get("source")}


def prune(bundled: Path, keep: set[str]) -> list[str]:
    """Remove every collection under ``bundled`` but ``keep``, and the namespaces left empty; the removed
    ones. A kept collection that is not there is an error (the image would be broken)."""
    missing = sorted(c for c in keep if not (bundled / c.replace(".", "/")).is_dir())
    if missing:
        raise SystemExit(f"{bundled} has no {', '.join(missing)}: requirements.yml names a collection the "
                         f"pinned ansible package does not bundle")
    removed = []
    for namespace in sorted(d for d in bundled.iterdir() if d.is_dir() and d.name != "__pycache__"):
        for collection in sorted(d for d in namespace.iterdir() if d.is_dir()):
            if f"{namespace.name}.{collection.name}" not in keep:
                shutil.rmtree(collection)
                removed.append(f"{namespace.name}.{collection.name}")
        if not any(namespace.iterdir()):
            namespace.rmdir()
    return removed


def installed_bundle() -> Path:
    spec = importlib.util.find_spec("ansible_collections.ansible_release")  # a module of the ansible package
    if spec is None or spec.origin is None:
        raise SystemExit("the ansible package is not installed")
    return Path(spec.origin).parent


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 3):
        raise SystemExit(__doc__)
    keep = kept(Path(argv[1]))
    bundled = Path(argv[2]) if len(argv) == 3 else installed_bundle()
    removed = prune(bundled, keep)
    print(f"kept {', '.join(sorted(keep))}; removed {len(removed)} other collections from {bundled}")


if __name__ == "__main__":
    main(sys.argv)
