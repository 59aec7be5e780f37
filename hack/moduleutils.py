"""Import plugins/module_utils as plain Python under both names Ansible and tests use.

Those files import each other as ``ansible.module_utils.<name>``, the way Ansible bundles them into
modules. :func:`install` serves those names from plugins/module_utils, so tests and the benchmark run
the very same code (``etcdproxy_certs`` and ``ansible.module_utils.etcdproxy_certs`` are one object).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

MODULE_UTILS = Path(__file__).resolve().parents[1] / "plugins" / "module_utils"


class _ModuleUtilsFinder(importlib.abc.MetaPathFinder):
    PREFIX = "ansible.module_utils."

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(self.PREFIX):
            return None
        short = fullname[len(self.PREFIX):]
        if not (MODULE_UTILS / f"{short}.py").exists():
            return None
        module = importlib.import_module(short)  # one module object under both names
        sys.modules[fullname] = module
        return importlib.util.spec_from_loader(fullname, _AliasLoader(module))


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, module):
        self.module = module

    def create_module(self, spec):
        return self.module

    def exec_module(self, module):
        pass



def install() -> None:
    if str(MODULE_UTILS) not in sys.path:
        sys.path.insert(0, str(MODULE_UTILS))
    if not any(isinstance(f, _ModuleUtilsFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _ModuleUtilsFinder())
