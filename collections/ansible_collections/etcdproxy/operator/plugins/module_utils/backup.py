"""The backup artifact of one tenant: its keys at one revision of the core etcd, relative to its prefix.

One gzip stream (compressed; gzip checks each member's CRC) holding, uncompressed:

    ETCDPROXY-BACKUP 1\\n
    <header: one line of JSON>\\n          format, storage, prefix, revision, startedAt, restarts, ...
    records: b"K" <u32 key length> <key> <u32 value length> <value>   (keys relative to the prefix, sorted)
    b"E" <u32 trailer length> <trailer: JSON>                          keys, bytes, sha256, finishedAt, ...

The trailer's sha256 covers every byte before it (magic, header, records), so a reader knows the artifact
is complete and unaltered only once it has read the trailer: ``read`` yields records as it goes and raises
``ArtifactError`` at the first fault, so a restore stages what it read and commits nothing on a fault.
Keys are stored relative to the prefix, so an artifact restores under any name (a clone).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
from collections.abc import Iterator
from typing import IO, Any

MAGIC = b"ETCDPROXY-BACKUP 1\n"
FORMAT = "etcdproxy-backup/v1"
RECORD, END = b"K", b"E"
MAX_KEY = 1 << 20  # etcd's keys are far shorter; a larger length means a damaged artifact
MAX_VALUE = 64 << 20  # above etcd's largest request (--max-request-bytes tops out well below)
_U32 = struct.Struct(">I")


class ArtifactError(ValueError):
    """The artifact is not a complete, unaltered backup (the message says what is wrong)."""


class Writer:
    """Writes an artifact to a binary file object: ``header`` first, then ``add`` per key, then ``close``."""

    def __init__(self, out: IO[bytes], header: dict[str, Any]) -> None:
        self._gz = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0)
        self._sha = hashlib.sha256()
        self.keys = 0
        self.bytes = 0
        self._write(MAGIC + json.dumps({"format": FORMAT, **header}, sort_keys=True).encode() + b"\n")

    def _write(self, data: bytes) -> None:
        self._sha.update(data)
        self._gz.write(data)

    def add(self, key: bytes, value: bytes) -> None:
        """One key, relative to the prefix."""
        self._write(RECORD + _U32.pack(len(key)) + key + _U32.pack(len(value)) + value)
        self.keys += 1
        self.bytes += len(key) + len(value)

    def close(self, trailer: dict[str, Any]) -> dict[str, Any]:
        """Write the trailer (``trailer`` plus counts and checksum); returns it."""
        full = {**trailer, "keys": self.keys, "bytes": self.bytes, "sha256": self._sha.hexdigest()}
        body = json.dumps(full, sort_keys=True).encode()
        self._gz.write(END + _U32.pack(len(body)) + body)
        self._gz.close()
        return full


class Reader:
    """Reads an artifact: ``header`` at once, ``records()`` one by one, ``trailer`` after the last."""

    def __init__(self, src: IO[bytes]) -> None:
        self._gz = gzip.GzipFile(fileobj=src, mode="rb")
        self._sha = hashlib.sha256()
        self.trailer: dict[str, Any] | None = None
        magic = self._read(len(MAGIC), "the format line")
        if magic != MAGIC:
            raise ArtifactError("not an etcdproxy backup (unknown format line)")
        line = self._readline()
        try:
            self.header: dict[str, Any] = json.loads(line)
        except ValueError as exc:
            raise ArtifactError(f"damaged header: {exc}") from None
        if self.header.get("format") != FORMAT:
            raise ArtifactError(f"unsupported format {self.header.get('format')!r} (this reads {FORMAT})")

    def _raw(self, n: int, what: str) -> bytes:
        try:
            data = self._gz.read(n)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:  # bad CRC, bad deflate data, cut short
            raise ArtifactError(f"damaged or truncated while reading {what}: {exc}") from None
        if len(data) != n:
            raise ArtifactError(f"truncated while reading {what}")
        return data

    def _read(self, n: int, what: str) -> bytes:
        data = self._raw(n, what)
        self._sha.update(data)
        return data

    def _readline(self) -> bytes:
        out = bytearray()
        while not out.endswith(b"\n"):
            out += self._read(1, "the header")
            if len(out) > MAX_KEY:
                raise ArtifactError("damaged header (no end of line)")
        return bytes(out)

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        """Each (relative key, value); raises ArtifactError on any fault, including a wrong checksum or
        counts that disagree with the trailer (checked after the last record)."""
        keys = size = 0
        while True:
            kind = self._raw(1, "a record")
            if kind == END:
                break
            if kind != RECORD:
                raise ArtifactError(f"damaged record (unknown record kind {kind!r})")
            self._sha.update(kind)
            key = self._read(self._length(MAX_KEY, "a key length"), "a key")
            value = self._read(self._length(MAX_VALUE, "a value length"), "a value")
            keys += 1
            size += len(key) + len(value)
            yield key, value
        body = self._raw(_U32.unpack(self._raw(4, "the trailer"))[0], "the trailer")
        try:
            trailer = json.loads(body)
        except ValueError:
            raise ArtifactError("damaged trailer") from None
        if trailer.get("sha256") != self._sha.hexdigest():
            raise ArtifactError("checksum mismatch: the artifact was altered or damaged")
        if (trailer.get("keys"), trailer.get("bytes")) != (keys, size):
            raise ArtifactError(f"counts disagree: trailer says {trailer.get('keys')} keys, read {keys}")
        try:  # reading on checks the gzip stream's own end (CRC and length)
            rest = self._gz.read(1)
        except (OSError, EOFError) as exc:
            raise ArtifactError(f"damaged or truncated after the trailer: {exc}") from None
        if rest:
            raise ArtifactError("data after the trailer")
        self.trailer = trailer

    def _length(self, limit: int, what: str) -> int:
        n = _U32.unpack(self._read(4, what))[0]
        if n > limit:
            raise ArtifactError(f"damaged record ({what} {n} is impossible)")
        return n
