"""Every name the operator gives or reads: its API, its objects, their labels and annotations.

The one home of these facts. Python imports them; the role's template gets the object names through
the ``etcdproxy.operator.etcdstorage_names`` filter (plugins/filter/names.py).
"""

from __future__ import annotations

GROUP = "etcd.etcdproxy.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
PLURAL = "etcdstorages"
KIND = "EtcdStorage"
# Backups of one EtcdStorage: namespaced, in the operator namespace (docs/backup.md).
BACKUP_KIND = "EtcdStorageBackup"
BACKUP_PLURAL = "etcdstoragebackups"
COMPONENT = "etcdproxy-operator"
# Events about cluster-scoped objects must be in this namespace (API validation).
EVENT_NAMESPACE = "default"

# On objects we deliver or keep: which EtcdStorage (name, then uid) the material belongs to.
OWNER_ANNOTATION = f"{GROUP}/storage"
UID_ANNOTATION = f"{GROUP}/storage-uid"
# On the proxy pod template: the hash of the client CA bundle it must trust (a change rolls it).
HASH_ANNOTATION = f"{GROUP}/client-ca-hash"
# On the EtcdStorage, set by a person: a new value renews the leaves / rotates the CAs.
ROTATE_ANNOTATION = f"{GROUP}/rotate"
ROTATE_CA_ANNOTATION = f"{GROUP}/rotate-ca"
# Label on the proxy objects and pods: the EtcdStorage they serve.
STORAGE_LABEL = f"{GROUP}/storage"

# The proxy pod's one container, the guard (status/pods.py reads why it does not run).
GUARD_CONTAINER = "guard"

# On backup Jobs and their pods: what they do (backup or restore).
ACTION_LABEL = f"{GROUP}/action"

# The proxy's ports: the tenant endpoint (container and Service) and its health/metrics listener.
# The key of the proxy's client CA ConfigMap listing revoked client certificates ("<notAfter> <CN>" lines),
# read by the guard (--revoked-clients-file); absent while nothing is revoked.
REVOKED_CLIENTS_KEY = "revoked-clients"
CLIENT_PORT = 2379
HEALTH_PORT = 2381


def proxy(name: str) -> str:
    """The proxy Deployment and its Service."""
    return f"etcd-{name}"


def ca_store(name: str) -> str:
    """The Secret holding the EtcdStorage's CAs (private keys: never delivered)."""
    return f"etcd-{name}-ca"


def serving(name: str) -> str:
    """The Secret with the proxy's serving certificate."""
    return f"etcd-{name}-serving"


def client_ca(name: str) -> str:
    """The ConfigMap with the client CA bundle the proxy trusts."""
    return f"etcd-{name}-client-ca"


def backup_job(name: str) -> str:
    """The Job that runs the EtcdStorageBackup ``name`` (a Job name must also be a valid label value, so
    long names end in a hash of the whole instead of being cut)."""
    return bounded(f"etcdproxy-backup-{name}")


def restore_job(name: str) -> str:
    """The Job that fills the EtcdStorage ``name`` from its spec.restoreFrom."""
    return bounded(f"etcdproxy-restore-{name}")


def bounded(text: str, limit: int = 63) -> str:
    if len(text) <= limit:
        return text
    import hashlib

    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{text[:limit - 11].rstrip('-.')}-{digest}"


def endpoint(name: str, namespace: str) -> str:
    """The URL an API server uses (--etcd-servers)."""
    return f"https://{proxy(name)}.{namespace}.svc:{CLIENT_PORT}"


def object_names(name: str) -> dict[str, str]:
    """The names of an EtcdStorage's objects in the operator namespace and the proxy's ports, for the template."""
    return {"proxy": proxy(name), "ca_store": ca_store(name), "serving": serving(name),
            "client_ca": client_ca(name), "client_port": CLIENT_PORT, "health_port": HEALTH_PORT,
            "revoked_clients_key": REVOKED_CLIENTS_KEY}
