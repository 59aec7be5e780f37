"""Filters for the role's templates, so that names and defaults have one home (module_utils).

``{% set names = name | etcdproxy.operator.etcdstorage_names %}``: ``names.proxy``, ``names.serving``,
``names.client_ca``, ``names.ca_store``, ``names.storage_label``, ``names.component`` (managed-by),
``names.container`` (the guard's), ``names.client_port``,
``names.health_port`` (module_utils/names.py).
``{% set spec = cr.spec | etcdproxy.operator.etcdstorage_spec %}``: the spec with every default filled
in (module_utils/spec.py).
"""

from __future__ import annotations

from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils.names import (
    COMPONENT,
    GUARD_CONTAINER,
    STORAGE_LABEL,
    object_names,
)
from ansible_collections.etcdproxy.operator.plugins.module_utils.spec import with_defaults


def etcdstorage_names(name: str) -> dict[str, Any]:
    return {**object_names(name), "storage_label": STORAGE_LABEL, "component": COMPONENT,
            "container": GUARD_CONTAINER}


def etcdstorage_spec(spec: dict[str, Any] | None) -> dict[str, Any]:
    return with_defaults(spec)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"etcdstorage_names": etcdstorage_names, "etcdstorage_spec": etcdstorage_spec}
