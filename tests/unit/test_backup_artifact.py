"""The backup artifact (module_utils/backup.py): what is written reads back exactly, and every kind of
damage is refused with a message saying what is wrong, before the caller could act on the records."""

from __future__ import annotations

import io
import json

import pytest
import zstandard
from ansible_collections.etcdproxy.operator.plugins.module_utils.backup import MAGIC, ArtifactError, Reader, Writer

KEYS = [(b"registry/configmaps/default/a", b"x" * 100), (b"registry/configmaps/default/b", b""),
        (b"registry/secrets/ns/\xff\x00binary", bytes(range(256)) * 10)]


def z(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(write_checksum=True).compress(data)


def unz(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()


def artifact(keys=KEYS) -> bytes:
    out = io.BytesIO()
    w = Writer(out, {"storage": "foo", "prefix": "/foo/", "revision": 42})
    for k, v in keys:
        w.add(k, v)
    w.close({"finishedAt": "now"})
    return out.getvalue()


def read_all(data: bytes) -> tuple[dict, list[tuple[bytes, bytes]], dict | None]:
    r = Reader(io.BytesIO(data))
    records = list(r.records())
    return r.header, records, r.trailer


def test_what_is_written_reads_back_with_its_header_and_counts():
    header, records, trailer = read_all(artifact())
    assert records == KEYS
    assert header["revision"] == 42 and header["prefix"] == "/foo/" and header["format"] == "etcdproxy-backup/v1"
    assert trailer["keys"] == 3 and trailer["bytes"] == sum(len(k) + len(v) for k, v in KEYS)
    assert len(trailer["sha256"]) == 64


def test_an_empty_tenant_is_a_valid_artifact():
    assert read_all(artifact([]))[1] == []


@pytest.mark.parametrize("cut", [5, 40, 200, -30, -1])
def test_a_truncated_artifact_is_refused(cut: int):
    data = artifact()
    with pytest.raises(ArtifactError, match=r"truncated|damaged"):
        read_all(data[:cut])


def test_a_flipped_byte_in_the_compressed_stream_is_refused():
    data = bytearray(artifact())
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(ArtifactError):
        read_all(bytes(data))


def test_records_altered_under_a_valid_compression_fail_the_checksum():
    raw = unz(artifact())
    altered = raw.replace(b"x" * 100, b"y" * 100)  # same lengths, so only the checksum can tell
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        read_all(z(altered))


def test_a_trailer_with_wrong_counts_is_refused_even_with_a_matching_checksum():
    raw = unz(artifact())
    body_at = raw.rindex(b"E" + len(raw[raw.rindex(b'{"bytes"'):]).to_bytes(4, "big"))
    trailer = json.loads(raw[body_at + 5:])
    trailer["keys"] = 2
    body = json.dumps(trailer).encode()
    with pytest.raises(ArtifactError, match="counts disagree"):
        read_all(z(raw[:body_at] + b"E" + len(body).to_bytes(4, "big") + body))


def test_something_else_is_not_taken_for_a_backup():
    with pytest.raises(ArtifactError, match=r"damaged or truncated|not an etcdproxy backup"):
        read_all(b"PK\x03\x04 a zip file")
    with pytest.raises(ArtifactError, match="not an etcdproxy backup"):
        read_all(z(b"hello world, not a backup at all"))
    with pytest.raises(ArtifactError, match="unsupported format"):
        read_all(z(MAGIC + b'{"format": "etcdproxy-backup/v9"}\n'))


def test_data_after_the_trailer_is_refused():
    with pytest.raises(ArtifactError, match="after the trailer"):
        read_all(z(unz(artifact()) + b"K"))


def test_records_across_many_compressed_chunks_read_back():
    import os

    keys = [(f"registry/k/{i:06d}".encode(), os.urandom(i % 700)) for i in range(20000)]  # ~7 MB, incompressible
    assert read_all(artifact(keys))[1] == keys


def test_an_intact_artifact_that_is_not_the_recorded_one_is_refused(tmp_path):
    """A clone checks the artifact against the sha256 its backup recorded: a valid artifact put in its place
    (another backup's) is refused, the recorded one passes."""
    from ansible_collections.etcdproxy.operator.plugins.module_utils.prefixcopy import verify

    mine, other = tmp_path / "mine", tmp_path / "other"
    mine.write_bytes(artifact())
    other.write_bytes(artifact(KEYS[:1]))
    recorded = verify(str(mine))["sha256"]
    assert verify(str(mine), recorded)["keys"] == len(KEYS)
    with pytest.raises(ArtifactError, match="not the artifact its backup recorded"):
        verify(str(other), recorded)
