"""One backup or restore of one tenant, end to end, and what to say when it fails.

The one recipe for the module ``etcdstorage_backup`` (one-off playbook) and for the backup and restore Jobs
(``backupjob``): check the destination before any work, then read or fill the prefix on the first core
endpoint that answers, through a local file (an S3 object is uploaded once complete, or downloaded before a
restore). The callers differ only in where the core material and credentials come from (Secrets read with
the API, or files a Job mounts).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils import keyspace
from ansible_collections.etcdproxy.operator.plugins.module_utils.backup import ArtifactError
from ansible_collections.etcdproxy.operator.plugins.module_utils.backupjob import (
    ARTIFACT_DAMAGED,
    CORE_FAILED,
    DESTINATION_FAILED,
    PREFIX_NOT_EMPTY,
)
from ansible_collections.etcdproxy.operator.plugins.module_utils.coregrpc import connect
from ansible_collections.etcdproxy.operator.plugins.module_utils.prefixcopy import (
    PrefixNotEmptyError,
    Progress,
    backup,
    count,
    restore,
    verify,
)
from ansible_collections.etcdproxy.operator.plugins.module_utils.s3store import (
    DestinationError,
    Location,
    ca_file,
    check,
    download,
    upload,
)


@dataclass(frozen=True)
class Core:
    """The core etcd: client URLs, and the CA, certificate and key as PEM text."""

    endpoints: list[str]
    ca: str
    cert: str
    key: str


@dataclass(frozen=True)
class Destination:
    """A local file (``path``) or an S3 object (``s3`` with ``access`` = key ID and secret, ``s3_ca`` = the
    endpoint's CA as PEM text when it is private). ``owner``: the backup request (uid) whose object this is; a
    backup then never replaces another's object. ``sha256``: what a restored artifact must hash to (its
    backup's record)."""

    path: str | None = None
    s3: Location | None = None
    access: tuple[str, str] | None = None
    s3_ca: str | None = None
    owner: str | None = None
    sha256: str | None = None

    def where(self) -> str:
        return self.s3.url() if self.s3 else str(self.path)


def execute(action: str, name: str, core: Core, dest: Destination, check_mode: bool = False,
            progress: Progress | None = None) -> dict[str, Any]:
    """Back up tenant ``name`` to ``dest``, or restore ``dest`` into its empty prefix. Returns the artifact's
    summary. Raises ArtifactError, DestinationError, PrefixNotEmptyError, or RuntimeError (no core answered)."""
    if not core.endpoints:
        raise ValueError("no core etcd endpoints: set the core etcd client URLs (ETCDPROXY_CORE_ENDPOINTS)")
    if not (core.ca and core.cert and core.key):
        raise ValueError("the core etcd CA, client certificate or key is missing")
    if action == "backup" and check_mode:
        return {}
    if not dest.s3 and action == "restore" and not os.path.isfile(str(dest.path)):
        raise ValueError(f"no artifact at {dest.path}")
    with tempfile.TemporaryDirectory(prefix="etcdproxy-backup-") as tmp, ca_file(dest.s3_ca) as s3_ca:
        replaces = None  # the ETag of an earlier attempt's object, which the backup may replace
        if dest.s3:
            assert dest.access is not None
            replaces = check(dest.s3, dest.access, s3_ca, need_object=action == "restore",
                             owner=dest.owner if action == "backup" else None)
        path = os.path.join(tmp, "artifact") if dest.s3 else str(dest.path)
        if dest.s3 and action == "restore":
            download(dest.s3, dest.access, path, s3_ca)
        summary = _on_core(action, name, core, path, check_mode, progress, dest.sha256)
        if dest.s3 and action == "backup":
            upload(path, dest.s3, dest.access, s3_ca, owner=dest.owner, replaces=replaces)
    return summary


def _on_core(action: str, name: str, core: Core, path: str, check_mode: bool,
             progress: Progress | None, expect_sha256: str | None) -> dict[str, Any]:
    errors = []
    for endpoint in core.endpoints:
        try:
            with connect(endpoint, core.ca, core.cert, core.key) as kv:
                if action == "backup":
                    return backup(kv, name, path, progress=progress)
                if check_mode:
                    summary = verify(path, expect_sha256)
                    if count(kv, keyspace.tenant_prefix(name)):
                        raise PrefixNotEmptyError(f"the prefix /{name}/ already has keys")
                    return summary
                return restore(kv, name, path, progress=progress, expect_sha256=expect_sha256)
        except (ArtifactError, PrefixNotEmptyError):
            raise
        except Exception as exc:  # this endpoint failed: try the next one
            errors.append(f"{endpoint}: {exc}")
    raise RuntimeError("no core etcd endpoint answered: " + "; ".join(errors))


def explain(action: str, name: str, where: str, exc: BaseException) -> tuple[str, str]:
    """(reason, message) for a failed ``execute``: what went wrong, what was (not) written, what to do."""
    if isinstance(exc, ArtifactError):
        return ARTIFACT_DAMAGED, f"{where} is not a usable backup: {exc}; nothing was written"
    if isinstance(exc, DestinationError):
        outcome = "nothing was written" if action == "restore" else "no artifact was stored"
        return DESTINATION_FAILED, f"{action} of {name}: {exc}; {outcome}"
    if isinstance(exc, PrefixNotEmptyError):
        return PREFIX_NOT_EMPTY, (f"{exc}; nothing was written (restore into a new EtcdStorage, or delete the "
                                  "keys first: deletionPolicy Delete)")
    return CORE_FAILED, f"{action} of {name}: {exc}"
