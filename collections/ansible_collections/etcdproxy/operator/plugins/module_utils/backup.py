"""The backup artifact of one tenant: its keys at one revision of the core etcd, relative to its prefix.

One zstd frame (compressed with zstandard at level 1, ~3x faster than gzip at the same ratio here; the
frame carries its own content checksum) holding, uncompressed:

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

import concurrent.futures
import hashlib
import json
import struct
from collections.abc import Iterator
from typing import IO, Any

import zstandard

MAGIC = b"ETCDPROXY-BACKUP 1\n"
FORMAT = "etcdproxy-backup/v1"
RECORD, END = b"K", b"E"
MAX_KEY = 1 << 20  # etcd's keys are far shorter; a larger length means a damaged artifact
MAX_VALUE = 64 << 20  # above etcd's largest request (--max-request-bytes tops out well below)
_U32 = struct.Struct(">I")
CHUNK = 1 << 20  # compressed bytes read at a time
BLOCK = 1 << 20  # uncompressed bytes hashed and compressed at a time


class ArtifactError(ValueError):
    """The artifact is not a complete, unaltered backup (the message says what is wrong)."""


class Writer:
    """Writes an artifact to a binary file object: ``header`` first, then ``add`` per key, then ``close``.

    Records are gathered into blocks of ``BLOCK`` bytes; hashing and compressing a block (both release the
    GIL) happen on a thread of their own while the caller decodes the next keys: at most two blocks in
    memory."""

    def __init__(self, out: IO[bytes], header: dict[str, Any]) -> None:
        self._z = zstandard.ZstdCompressor(level=1, write_checksum=True).stream_writer(out, closefd=False)
        self._sha = hashlib.sha256()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._pending: concurrent.futures.Future | None = None
        self._block = bytearray()
        self.keys = 0
        self.bytes = 0
        self._block += MAGIC + json.dumps({"format": FORMAT, **header}, sort_keys=True).encode() + b"\n"

    def _write(self, data: bytes) -> None:
        self._sha.update(data)
        self._z.write(data)

    def _flush(self) -> None:
        if self._pending is not None:
            self._pending.result()  # the previous block is written (and its errors raised) first
        self._pending = self._pool.submit(self._write, bytes(self._block))
        self._block = bytearray()

    def add(self, key: bytes, value: bytes) -> None:
        """One key, relative to the prefix."""
        self._block += RECORD + _U32.pack(len(key)) + key + _U32.pack(len(value)) + value
        self.keys += 1
        self.bytes += len(key) + len(value)
        if len(self._block) >= BLOCK:
            self._flush()

    def close(self, trailer: dict[str, Any]) -> dict[str, Any]:
        """Write the trailer (``trailer`` plus counts and checksum); returns it."""
        self._flush()
        self._pending.result()  # type: ignore[union-attr]
        self._pool.shutdown()
        full = {**trailer, "keys": self.keys, "bytes": self.bytes, "sha256": self._sha.hexdigest()}
        body = json.dumps(full, sort_keys=True).encode()
        self._z.write(END + _U32.pack(len(body)) + body)
        self._z.close()  # ends the frame (and its checksum); the caller's file stays open
        return full


class Reader:
    """Reads an artifact: ``header`` at once, ``records()`` one by one, ``trailer`` after the last."""

    def __init__(self, src: IO[bytes]) -> None:
        self._src = src
        self._z = zstandard.ZstdDecompressor().decompressobj()
        self._buf = bytearray()
        self._pos = 0  # read up to here in _buf
        # Everything before the end marker is hashed, in bulk: up to here in _buf so far (-1: done).
        self._hashed = 0
        self._sha = hashlib.sha256()
        # Hashing (which releases the GIL) runs on a thread of its own, in order, while records are parsed.
        self._hasher = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._hashing: concurrent.futures.Future | None = None
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
        if len(self._buf) - self._pos < n:
            self._hash_to(self._pos)
            del self._buf[:self._pos]  # drop what was read, once per refill (not once per record)
            self._pos = 0
            self._hashed = 0 if self._hashed >= 0 else -1
            try:
                while len(self._buf) < n and not self._z.eof:
                    chunk = self._src.read(CHUNK)
                    if not chunk:
                        break
                    self._buf += self._z.decompress(chunk)
            except zstandard.ZstdError as exc:  # not zstd, damaged data, a wrong frame checksum
                raise ArtifactError(f"damaged or truncated while reading {what}: {exc}") from None
            if len(self._buf) < n:
                raise ArtifactError(f"truncated while reading {what}")
        data = bytes(self._buf[self._pos:self._pos + n])
        self._pos += n
        return data

    def _hash_to(self, end: int) -> None:
        if self._hashed >= 0 and end > self._hashed:
            if self._hashing is not None:
                self._hashing.result()  # at most one block waits: memory stays at two blocks
            self._hashing = self._hasher.submit(self._sha.update, bytes(self._buf[self._hashed:end]))
            self._hashed = end

    def _digest(self) -> str:
        if self._hashing is not None:
            self._hashing.result()
        self._hasher.shutdown()
        return self._sha.hexdigest()

    _read = _raw  # every read before the end marker is hashed (in bulk, by _hash_to)

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
        record = RECORD[0]
        while True:
            # Fast path: a whole record already in the buffer is cut out without a call per field.
            buf, pos = self._buf, self._pos
            if len(buf) - pos > 9 and buf[pos] == record:
                klen = _U32.unpack_from(buf, pos + 1)[0]
                if klen <= MAX_KEY and len(buf) - pos >= 9 + klen:
                    vlen = _U32.unpack_from(buf, pos + 5 + klen)[0]
                    end = pos + 9 + klen + vlen
                    if vlen <= MAX_VALUE and len(buf) >= end:
                        key, value = bytes(buf[pos + 5:pos + 5 + klen]), bytes(buf[pos + 9 + klen:end])
                        self._pos = end
                        keys += 1
                        size += klen + vlen
                        yield key, value
                        continue
            kind = self._raw(1, "a record")
            if kind == END:  # the checksum covers everything before this marker
                self._hash_to(self._pos - 1)
                self._hashed = -1
                break
            if kind != RECORD:
                raise ArtifactError(f"damaged record (unknown record kind {kind!r})")
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
        if trailer.get("sha256") != self._digest():
            raise ArtifactError("checksum mismatch: the artifact was altered or damaged")
        if (trailer.get("keys"), trailer.get("bytes")) != (keys, size):
            raise ArtifactError(f"counts disagree: trailer says {trailer.get('keys')} keys, read {keys}")
        try:  # the frame must end here, its own checksum read and checked
            del self._buf[:self._pos]
            self._pos = 0
            while not self._z.eof and not self._buf:
                chunk = self._src.read(CHUNK)
                if not chunk:
                    break
                self._buf += self._z.decompress(chunk)
        except zstandard.ZstdError as exc:
            raise ArtifactError(f"damaged after the trailer: {exc}") from None
        if self._buf or (self._z.eof and (self._z.unused_data or self._src.read(1))):
            raise ArtifactError("data after the trailer")
        if not self._z.eof:
            raise ArtifactError("truncated after the trailer (the compressed frame does not end)")
        self.trailer = trailer

    def _length(self, limit: int, what: str) -> int:
        n = _U32.unpack(self._read(4, what))[0]
        if n > limit:
            raise ArtifactError(f"damaged record ({what} {n} is impossible)")
        return n
