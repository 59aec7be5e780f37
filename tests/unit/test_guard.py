"""The guard's decisions and TLS material handling, without a network."""

from __future__ import annotations

import datetime
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from etcdproxy_guard import etcdpb, policy
from etcdproxy_guard.server import forwardable_metadata, status_reply
from etcdproxy_guard.tlsfiles import Material, Reloader, problem

# Every method of etcd's v3 API (rpc.proto, v3election.proto, v3lock.proto in etcd v3.6).
ALL_METHODS = {
    "KV": ["Range", "Put", "DeleteRange", "Txn", "Compact"],
    "Watch": ["Watch"],
    "Lease": ["LeaseGrant", "LeaseRevoke", "LeaseKeepAlive", "LeaseTimeToLive", "LeaseLeases"],
    "Cluster": ["MemberAdd", "MemberRemove", "MemberUpdate", "MemberList", "MemberPromote"],
    "Maintenance": ["Alarm", "Status", "Defragment", "Hash", "HashKV", "Snapshot", "MoveLeader", "Downgrade"],
    "Auth": ["AuthEnable", "AuthDisable", "AuthStatus", "Authenticate", "UserAdd", "UserGet", "UserList",
             "UserDelete", "UserChangePassword", "UserGrantRole", "UserRevokeRole", "RoleAdd", "RoleGet",
             "RoleList", "RoleDelete", "RoleGrantPermission", "RoleRevokePermission"],
}
ALLOWED = {"/etcdserverpb.KV/Range", "/etcdserverpb.KV/Put", "/etcdserverpb.KV/DeleteRange",
           "/etcdserverpb.KV/Txn", "/etcdserverpb.Watch/Watch", "/etcdserverpb.Lease/LeaseGrant"}


def every_method() -> list[str]:
    out = [f"/etcdserverpb.{svc}/{m}" for svc, methods in ALL_METHODS.items() for m in methods]
    out += [f"/v3electionpb.Election/{m}" for m in ("Campaign", "Proclaim", "Leader", "Observe", "Resign")]
    out += ["/v3lockpb.Lock/Lock", "/v3lockpb.Lock/Unlock"]
    return out


def test_only_what_an_api_server_needs_is_forwarded():
    forwarded = {m for m in every_method() if policy.decide(m).action in
                 (policy.Action.FORWARD_UNARY, policy.Action.FORWARD_STREAM)}
    assert forwarded == ALLOWED
    assert policy.decide("/etcdserverpb.Watch/Watch").action is policy.Action.FORWARD_STREAM
    assert policy.decide("/etcdserverpb.Maintenance/Status").action is policy.Action.LOCAL_STATUS


@pytest.mark.parametrize("method", sorted(set(every_method()) - ALLOWED - {"/etcdserverpb.Maintenance/Status"}))
def test_everything_else_is_denied_with_the_method_named(method):
    d = policy.decide(method)
    assert d.action is policy.Action.DENY
    assert method in d.message and "not allowed" in d.message


def test_unknown_and_future_methods_are_denied():
    for method in ("/etcdserverpb.KV/Future", "/grpc.health.v1.Health/Check", "/x.Y/Z", ""):
        assert policy.decide(method).action is policy.Action.DENY


def test_range_stream_is_unimplemented_not_denied():
    d = policy.decide("/etcdserverpb.KV/RangeStream")
    assert d.action is policy.Action.UNIMPLEMENTED and "RangeStream" in d.message


def test_compact_says_which_flag_to_set():
    assert "--etcd-compaction-interval=0" in policy.decide("/etcdserverpb.KV/Compact").message


def test_lease_grant_with_a_chosen_id_is_refused():
    assert policy.lease_grant_refusal(0) == ""
    assert "chosen ID (42)" in policy.lease_grant_refusal(42)


def test_status_reply_has_a_version_and_nothing_else():
    reply = etcdpb.StatusResponse.FromString(status_reply("3.5.0"))
    assert reply.version == "3.5.0"
    blank = etcdpb.StatusResponse(header=etcdpb.ResponseHeader(), version="3.5.0")
    assert reply == blank


def test_status_wire_format_matches_etcd_field_numbers():
    # version is field 2 (string), dbSize field 3: tag bytes 0x12 and 0x18.
    raw = etcdpb.StatusResponse(version="3.5.0", dbSize=7).SerializeToString()
    assert raw == b"\x12\x053.5.0\x18\x07"


class _Md:
    def __init__(self, key: str, value: str) -> None:
        self.key, self.value = key, value


def test_metadata_of_this_hop_is_not_forwarded():
    md = [_Md("hasleader", "true"), _Md("user-agent", "grpc-go"), _Md("grpc-accept-encoding", "gzip"),
          _Md(":authority", "x"), _Md("token", "t")]
    assert forwardable_metadata(md) == (("hasleader", "true"), ("token", "t"))
    assert forwardable_metadata(None) == ()


def _pair(cn: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(hours=1)).sign(key, hashes.SHA256()))
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), pem_key


def test_problem_spots_mismatched_or_broken_material():
    cert, key = _pair("a")
    other_cert, _ = _pair("b")
    assert problem(Material(cert, key, other_cert)) == ""
    assert "does not match" in problem(Material(other_cert, key, cert))
    assert "unreadable" in problem(Material(b"garbage", key, cert))
    assert "unreadable" in problem(Material(cert, key, b""))


def _write(d: Path, cert: bytes, key: bytes, ca: bytes) -> None:
    (d / "tls.crt").write_bytes(cert)
    (d / "tls.key").write_bytes(key)
    (d / "ca.crt").write_bytes(ca)


def test_reloader_hands_grpc_new_material_only_when_it_changed_and_is_sound(tmp_path):
    cert, key = _pair("a")
    ca, _ = _pair("ca")
    _write(tmp_path, cert, key, ca)
    r = Reloader(tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "ca.crt")
    assert isinstance(r.credentials(), grpc.ServerCredentials)
    assert r.fetch() is None  # unchanged
    cert2, key2 = _pair("a2")
    (tmp_path / "tls.crt").write_bytes(cert2)  # half-way through an update: key does not match yet
    assert r.fetch() is None and r.current.cert == cert
    (tmp_path / "tls.key").write_bytes(key2)
    assert isinstance(r.fetch(), grpc.ServerCertificateConfiguration)
    assert r.current.cert == cert2 and r.reloads == 1
    (tmp_path / "ca.crt").unlink()  # volume briefly missing: keep serving
    assert r.fetch() is None and r.current.client_ca == ca


def test_reloader_refuses_to_start_with_bad_material(tmp_path):
    cert, _ = _pair("a")
    _, other_key = _pair("b")
    _write(tmp_path, cert, other_key, cert)
    with pytest.raises(ValueError, match="does not match"):
        Reloader(tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "ca.crt")


def test_cli_refuses_to_start_without_its_material(tmp_path, caplog):
    from etcdproxy_guard.__main__ import main

    rc = main(["--listen=127.0.0.1:0", "--backend=127.0.0.1:1", f"--cert-file={tmp_path}/tls.crt",
               f"--key-file={tmp_path}/tls.key", f"--trusted-ca-file={tmp_path}/ca.crt"])
    assert rc == 1
    assert "cannot start" in caplog.text and "tls.crt" in caplog.text
