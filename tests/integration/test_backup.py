"""Backup of one tenant at one revision and restore as a clone, with real etcd and real tenant
kube-apiservers, through the one-off playbook (playbooks/backup.yml) and the module's library."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import threading
from pathlib import Path

import pytest
import zstandard
from ansible_collections.etcdproxy.operator.plugins.module_utils import etcdpb, keyspace, prefixcopy
from ansible_collections.etcdproxy.operator.plugins.module_utils.backup import Reader
from ansible_collections.etcdproxy.operator.plugins.module_utils.coregrpc import CoreKV
from ansible_collections.etcdproxy.operator.plugins.module_utils.s3store import (
    DestinationError,
    Location,
    check,
    upload,
)

from localcp.admin import OPERATOR_NAMESPACE, apply
from localcp.config import BIN_DIR, REPO
from localcp.etcdclient import Client
from localcp.probes import free_port, wait_for
from localcp.processes import stop_pid
from localcp.s3server import S3Server
from localcp.tenant import delivered_files, start_proxy
from localcp.tenant_apiserver import start_tenant_apiserver

from .conftest import Storages

OBJECTS = 300


def run_backup(cp, name: str, where: Path | dict, action: str = "backup", check: bool = True) -> tuple[int, str]:
    """playbooks/backup.yml; ``where``: a file, or the ``backup_s3`` settings."""
    env = dict(os.environ, KUBECONFIG=str(cp.kubeconfig), K8S_AUTH_KUBECONFIG=str(cp.kubeconfig),
               ETCDPROXY_CORE_ENDPOINTS=",".join(cp.etcd_endpoints), ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_NOCOLOR="1")
    target = json.dumps({"backup_s3": where}) if isinstance(where, dict) else f"backup_path={where}"
    out = subprocess.run([str(REPO / ".venv/bin/ansible-playbook"), "playbooks/backup.yml",
                          "-e", f"etcdstorage_name={name}", "-e", target,
                          "-e", f"backup_action={action}"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    if check:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    return out.returncode, out.stdout + out.stderr


def core_kvs(core: Client, name: str, revision: int = 0) -> list[etcdpb.KeyValue]:
    key, end = keyspace.prefix_range(keyspace.tenant_prefix(name))
    raw = core.unary("/etcdserverpb.KV/Range", etcdpb.RangeRequest(key=key, range_end=end, revision=revision)
                     .SerializeToString())
    return list(etcdpb.RangeResponse.FromString(raw).kvs)


def artifact(path: Path) -> tuple[dict, list[tuple[bytes, bytes]], dict]:
    with open(path, "rb") as f:
        reader = Reader(f)
        records = list(reader.records())
        return reader.header, records, reader.trailer or {}


@pytest.fixture(scope="module")
def tenant(api, operator, cp, tmp_path_factory):
    """A Ready tenant with a real kube-apiserver holding OBJECTS ConfigMaps, and a neighbour whose name
    extends the tenant's (``/<name>x/`` starts like ``/<name>``) with an object of its own. Shared by this
    module's tests (they only read it, or write ConfigMaps named otherwise)."""
    tmp_path = tmp_path_factory.mktemp("tenant")
    storages = Storages(api, operator, cp.kubeconfig)
    name, _ = storages.create_ready_tenant("bk")
    neighbour, ns = name + "x", name + "x-ns"
    storages.create(neighbour, {"replicas": 1, "caCertConfigMap": [{"name": "etcd-ca", "namespace": ns}],
                                "clientCertSecret": [{"name": "etcd-client", "namespace": ns}]})
    storages.wait_condition(neighbour, "Ready", "True")
    made, started = {}, []
    try:
        for label, n in (("bk", name), ("neighbour", neighbour)):
            proxy = start_proxy(storages.core, storages.deployment(n), cp.logs)
            started.append(proxy)
            server = start_tenant_apiserver(cp, proxy, delivered_files(storages.core, f"{n}-ns", tmp_path), tmp_path,
                                            n)
            started.append(server)
            made[label] = (n, server, proxy)
        made["neighbour"][1].core().create_namespaced_config_map(
            "default", {"metadata": {"name": "only-in-the-neighbour"}, "data": {"k": "v"}})
        api = made["bk"][1].core()
        for i in range(OBJECTS):
            api.create_namespaced_config_map("default", {"metadata": {"name": f"cm-{i:04d}"}, "data": {"i": str(i)}})
        yield made
    finally:
        for process in reversed(started):
            process.stop()
        storages.cleanup()


def test_backup_holds_exactly_the_tenants_keys_at_its_revision_while_writes_go_on(cp, tenant, tmp_path):
    name, server, _ = tenant["bk"]
    api = server.core()
    stop = threading.Event()
    written = []

    def writer() -> None:  # the tenant keeps working during the backup
        i = 0
        while not stop.is_set():
            api.create_namespaced_config_map("default", {"metadata": {"name": f"during-{i}"}})
            written.append(i)
            i += 1

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        _, out = run_backup(cp, name, tmp_path / "bk.etcdbackup")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert written, "the writer made no progress during the backup"
    assert "PRIVATE KEY" not in out
    header, records, trailer = artifact(tmp_path / "bk.etcdbackup")
    with cp.core_client() as core:
        at_revision = core_kvs(core, name, header["revision"])
        now = core_kvs(core, name)
    prefix = f"/{name}/".encode()
    expected = [(kv.key[len(prefix):], kv.value) for kv in at_revision if not kv.lease]
    assert records == expected  # exactly the keys at the recorded revision, relative to the prefix
    assert len(now) > len(at_revision)  # writes went on after it
    assert trailer["keys"] == len(expected) and header["storage"] == name and header["restarts"] == 0
    assert trailer["leasedKeysSkipped"] == sum(1 for kv in at_revision if kv.lease)
    configmaps = {k for k, _ in records if k.startswith(b"/registry/configmaps/default/cm-")}
    assert len(configmaps) == OBJECTS
    assert not any(b"only-in-the-neighbour" in k for k, _ in records)  # never another tenant's keys


def test_a_clone_serves_the_same_objects_and_the_original_is_untouched(cp, storages, tenant, tmp_path):
    name, server, _ = tenant["bk"]
    run_backup(cp, name, tmp_path / "bk.etcdbackup")
    _, records, _ = artifact(tmp_path / "bk.etcdbackup")
    def originals(core: Client) -> list[tuple[bytes, bytes, int]]:  # (its API server renews leases itself)
        return [(kv.key, kv.value, kv.mod_revision) for kv in core_kvs(core, name)
                if kv.key.startswith(f"/{name}//registry/configmaps/default/".encode())]

    with cp.core_client() as core:
        original_before = originals(core)
    clone, ns = storages.create_ready_tenant("clone")
    _, out = run_backup(cp, clone, tmp_path / "bk.etcdbackup", "restore")
    assert f"/{clone}/" in out
    with cp.core_client() as core:
        assert originals(core) == original_before
        assert len(core_kvs(core, clone)) == len(records)
    proxy = start_proxy(storages.core, storages.deployment(clone), cp.logs)
    clone_server = None
    try:
        clone_server = start_tenant_apiserver(cp, proxy, delivered_files(storages.core, ns, tmp_path), tmp_path,
                                              clone)
        listed = sorted(c.metadata.name for c in clone_server.core().list_namespaced_config_map("default").items)
        in_backup = sorted(k.rsplit(b"/", 1)[1].decode() for k, _ in records
                           if k.startswith(b"/registry/configmaps/default/"))
        assert listed == in_backup and len([n for n in listed if n.startswith("cm-")]) == OBJECTS
        original = {c.metadata.name: c.data for c in server.core().list_namespaced_config_map("default").items}
        cloned = {c.metadata.name: c.data for c in clone_server.core().list_namespaced_config_map("default").items}
        assert all(cloned[n] == original[n] for n in cloned)
    finally:
        if clone_server:
            clone_server.stop()
        proxy.stop()


def test_damaged_artifacts_and_a_used_prefix_write_nothing(cp, storages, tenant, tmp_path):
    name = tenant["bk"][0]
    good = tmp_path / "bk.etcdbackup"
    run_backup(cp, name, good)
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(good.read_bytes())).read()
    cases = {
        "truncated": good.read_bytes()[: len(good.read_bytes()) // 2],
        "altered": zstandard.ZstdCompressor().compress(raw.replace(b"cm-0001", b"cm-9999", 1)),
        "not a backup": b"hello",
    }
    target, _ = storages.create_ready_tenant("target")
    for label, data in cases.items():
        bad = tmp_path / f"{label.replace(' ', '-')}.etcdbackup"
        bad.write_bytes(data)
        rc, out = run_backup(cp, target, bad, "restore", check=False)
        assert rc != 0, label
        assert re.search(r"is not a usable backup: .+; nothing was written", out), (label, out)
    rc, out = run_backup(cp, target, tmp_path / "missing.etcdbackup", "restore", check=False)
    assert rc != 0 and "no artifact at" in out
    with cp.core_client() as core:
        assert core_kvs(core, target) == []
        before = unchanged_by_its_server(core_kvs(core, name))
    # The source itself already has keys: a restore never overwrites a tenant in place.
    rc, out = run_backup(cp, name, good, "restore", check=False)
    assert rc != 0 and "already has keys" in out
    with cp.core_client() as core:
        assert unchanged_by_its_server(core_kvs(core, name)) == before


def unchanged_by_its_server(kvs: list) -> list[tuple[bytes, int]]:
    """(key, mod_revision) of every key but those the tenant's own kube-apiserver rewrites on a timer (its
    leases, renewed every few seconds), so a comparison sees only what someone else wrote."""
    return [(kv.key, kv.mod_revision) for kv in kvs if b"/registry/leases/" not in kv.key]


class CompactingKV(CoreKV):
    """The core KV client, but the etcd it talks to is compacted once, right after the backup's second page
    at its revision (a write outside the tenant first, so the revision moves past the backup's)."""

    def __init__(self, endpoint: str, material: tuple[str, str, str], admin: Client) -> None:
        super().__init__(endpoint, *material)
        self.admin, self.ranges = admin, 0

    def range(self, prefix: bytes, start: bytes | None = None, limit: int = 0, revision: int = 0):
        page = super().range(prefix, start, limit, revision)
        if revision:
            self.ranges += 1
            if self.ranges == 2:
                self.admin.put(b"\x00compaction-test", b"")
                revision_now = etcdpb.RangeResponse.FromString(self.admin.unary(
                    "/etcdserverpb.KV/Range", etcdpb.RangeRequest(key=b"\x00compaction-test").SerializeToString())
                ).header.revision
                self.admin.unary("/etcdserverpb.KV/Compact",
                                 etcdpb.CompactionRequest(revision=revision_now).SerializeToString())
        return page


@pytest.fixture
def own_etcd(cp, tmp_path):
    """An etcd of this test's own (TLS with the core's CA and certificates, on loopback): compacting the shared
    core would break every later test that watches from an old revision."""
    client_port, peer_port = free_port(), free_port()
    log = tmp_path / "etcd.log"
    p = cp.pki
    with open(log, "ab") as fh:
        proc = subprocess.Popen([str(BIN_DIR / "etcd"), f"--data-dir={tmp_path / 'etcd'}",
                                 f"--listen-client-urls=https://127.0.0.1:{client_port}",
                                 f"--advertise-client-urls=https://127.0.0.1:{client_port}",
                                 f"--cert-file={p.path('etcd-server')}", f"--key-file={p.path('etcd-server', 'key')}",
                                 f"--trusted-ca-file={p.path('etcd-ca')}", "--client-cert-auth",
                                 f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                                 f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                                 f"--initial-cluster=default=http://127.0.0.1:{peer_port}"],
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        endpoint = f"https://127.0.0.1:{client_port}"
        with Client(endpoint, *cp.core_files()) as admin:

            def answers() -> bool:
                try:
                    admin.range(b"health")
                    return True
                except Exception:
                    return False

            wait_for("etcd", answers, 30, proc, log)
            yield endpoint, admin
    finally:
        stop_pid(proc.pid)


def test_a_compaction_mid_backup_starts_it_again_at_a_newer_revision(cp, own_etcd, tmp_path, monkeypatch):
    endpoint, admin = own_etcd
    monkeypatch.setattr(prefixcopy, "PAGE_KEYS", 50)  # several pages of these small keys
    for i in range(300):
        for tenant_name in ("bk", "bkx"):
            admin.put(f"/{tenant_name}//registry/things/{i:04d}".encode(), b"v" * i)
    kv = CompactingKV(endpoint, cp.core_material(), admin)
    try:
        summary = prefixcopy.backup(kv, "bk", str(tmp_path / "c.etcdbackup"), first_keys=50)
    finally:
        kv.close()
    assert summary["restarts"] == 1
    header, records, _ = artifact(tmp_path / "c.etcdbackup")
    assert header["restarts"] == 1
    at_revision = [(k[len(b"/bk/"):], v) for k, v in admin.range(b"/bk/", b"/bk0", revision=header["revision"])]
    assert records == at_revision and len(records) == 300  # the neighbour /bkx/ is not in it
    assert not list(tmp_path.glob(".backup-*"))  # the abandoned attempt left no file


@pytest.fixture
def s3(cp, api, tmp_path):
    """versitygw over TLS with a bucket; its credentials and CA where the module reads them."""
    server = S3Server(tmp_path / "s3", cp.pki).start()
    try:
        server.client().create_bucket(Bucket="etcd-backups")
        apply(api, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "backup-s3", "namespace":
                                                                      OPERATOR_NAMESPACE},
                    "stringData": {"AWS_ACCESS_KEY_ID": server.access_key,
                                   "AWS_SECRET_ACCESS_KEY": server.secret_key}})
        apply(api, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "backup-s3-wrong", "namespace":
                                                                      OPERATOR_NAMESPACE},
                    "stringData": {"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": "not-it"}})
        apply(api, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "backup-s3-ca", "namespace":
                                                                         OPERATOR_NAMESPACE},
                    "data": {"ca.crt": server.ca.read_text()}})
        yield server
    finally:
        server.stop()


def test_backup_to_s3_and_a_clone_from_it(cp, storages, tenant, s3, tmp_path):
    name = tenant["bk"][0]
    where = {"endpoint": s3.endpoint, "bucket": "etcd-backups", "key": f"{name}/one.etcdbackup",
             "credentials_secret": "backup-s3", "ca_configmap": "backup-s3-ca"}
    _, out = run_backup(cp, name, where)
    assert "PRIVATE KEY" not in out and s3.secret_key not in out
    fetched = tmp_path / "fetched.etcdbackup"
    s3.client().download_file("etcd-backups", f"{name}/one.etcdbackup", str(fetched))
    header, records, _ = artifact(fetched)
    with cp.core_client() as core:
        at_revision = core_kvs(core, name, header["revision"])
    assert records == [(kv.key[len(f"/{name}/"):], kv.value) for kv in at_revision if not kv.lease]
    clone, _ = storages.create_ready_tenant("s3clone")
    run_backup(cp, clone, where, "restore")
    with cp.core_client() as core:
        assert [(kv.key[len(f"/{clone}/"):], kv.value) for kv in core_kvs(core, clone)] == records


@pytest.mark.parametrize("size", [1000, 9 << 20], ids=["one PutObject", "multipart"])
def test_two_backups_that_found_the_key_free_store_one_object(s3, tmp_path, size):
    """Two backup requests to one key both pass the check before either has stored its artifact: the
    server stores the first and answers the second 412 (S3 conditional writes), so the first request's
    status still describes what is there. A retried attempt of a request replaces its own object, and only
    the one its check saw."""
    loc = Location(s3.endpoint, "etcd-backups", f"same-{size}.etcdbackup")
    access, ca = (s3.access_key, s3.secret_key), str(s3.ca)
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(b"1" * size)
    second.write_bytes(b"2" * size)

    def stored() -> tuple[bytes, str]:
        obj = s3.client().get_object(Bucket=loc.bucket, Key=loc.key)
        return obj["Body"].read(), obj["Metadata"].get("etcdproxy-backup", "")

    assert check(loc, access, ca, owner="uid-a") is None and check(loc, access, ca, owner="uid-b") is None
    upload(str(first), loc, access, ca, owner="uid-a")
    with pytest.raises(DestinationError, match=r"stored while this backup ran.*choose another key"):
        upload(str(second), loc, access, ca, owner="uid-b")
    assert stored() == (first.read_bytes(), "uid-a")
    # A retry of uid-a: its check answers the ETag of its own object, which the upload may replace ...
    seen = check(loc, access, ca, owner="uid-a")
    assert seen
    upload(str(second), loc, access, ca, owner="uid-a", replaces=seen)
    assert stored() == (second.read_bytes(), "uid-a")
    # ... and only that object: another put there after the check stays. (It names its writer: versitygw
    # keeps an overwritten object's metadata keys that the new object does not set.)
    seen = check(loc, access, ca, owner="uid-a")
    s3.client().put_object(Bucket=loc.bucket, Key=loc.key, Body=b"another", Metadata={"etcdproxy-backup": "uid-c"})
    with pytest.raises(DestinationError, match="stored while this backup ran"):
        upload(str(first), loc, access, ca, owner="uid-a", replaces=seen)
    assert stored() == (b"another", "uid-c")


def test_s3_faults_name_the_problem_and_write_nothing(cp, storages, tenant, s3):
    name = tenant["bk"][0]
    good = {"endpoint": s3.endpoint, "bucket": "etcd-backups", "key": "x.etcdbackup",
            "credentials_secret": "backup-s3", "ca_configmap": "backup-s3-ca"}
    target, _ = storages.create_ready_tenant("s3target")
    cases = [
        ("backup", name, {**good, "bucket": "no-such-bucket"}, "the bucket no-such-bucket does not exist"),
        ("backup", name, {**good, "bucket": "Backups_UPPER"}, "check the bucket name"),  # not an S3 name
        ("backup", name, {**good, "credentials_secret": "backup-s3-wrong"}, "refused the credentials"),
        ("backup", name, {**good, "ca_configmap": None}, "TLS with"),
        ("restore", target, {**good, "key": "never-written.etcdbackup"}, "no backup at"),
        ("restore", target, {**good, "credentials_secret": "backup-s3-wrong"}, "refused the credentials"),
    ]
    for action, who, where, expected in cases:
        rc, out = run_backup(cp, who, {k: v for k, v in where.items() if v is not None}, action, check=False)
        assert rc != 0 and expected in out, (action, where, out[-1500:])
        assert s3.secret_key not in out
    listed = s3.client().list_objects_v2(Bucket="etcd-backups").get("Contents", [])
    assert listed == []  # no backup stored by a failed one
    with cp.core_client() as core:
        assert core_kvs(core, target) == []
