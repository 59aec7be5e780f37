"""Backup artifacts in S3-compatible object storage, with boto3 (multipart for large files, retries).

Credentials come from a Secret (keys ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``, as most S3 tools
name them), the endpoint's CA from a ConfigMap when it is not publicly trusted. Every failure becomes a
``DestinationError`` that says what to fix (bucket, credentials, TLS, endpoint), never the secret key.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


class DestinationError(RuntimeError):
    """The object store refused or could not be reached (the message names the fix)."""


@dataclass(frozen=True)
class Location:
    endpoint: str
    bucket: str
    key: str
    region: str = "us-east-1"

    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key} at {self.endpoint}"


def credentials(secret_text: dict[str, str], secret_name: str) -> tuple[str, str]:
    missing = [k for k in CREDENTIAL_KEYS if not secret_text.get(k)]
    if missing:
        raise DestinationError(f"the Secret {secret_name} lacks {', '.join(missing)}: put the S3 access key ID "
                               "and secret access key there")
    return secret_text[CREDENTIAL_KEYS[0]], secret_text[CREDENTIAL_KEYS[1]]


def client(loc: Location, access: tuple[str, str], ca_file: str | None) -> Any:
    """A boto3 S3 client for ``loc``'s endpoint (path-style addressing, which every S3-compatible server takes)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=loc.endpoint, region_name=loc.region, aws_access_key_id=access[0],
                        aws_secret_access_key=access[1], verify=ca_file if ca_file else True,
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"},
                                      connect_timeout=10, read_timeout=60))


OWNER_METADATA = "etcdproxy-backup"  # the object's metadata: the uid of the backup request that wrote it
ABSENT_OBJECT = ("404", "NoSuchKey", "NotFound")  # error codes of an object that is not there


def _owner_of(head: dict[str, Any]) -> str | None:
    """The backup request that stored an object (from its HEAD answer), if one of ours did."""
    return (head.get("Metadata") or {}).get(OWNER_METADATA)


def _head(s3: Any, loc: Location) -> dict[str, Any] | None:
    """The object's HEAD answer, or None when there is no object at the key."""
    from botocore.exceptions import ClientError

    try:
        return s3.head_object(Bucket=loc.bucket, Key=loc.key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ABSENT_OBJECT:
            return None
        raise


def _no_backup(loc: Location) -> DestinationError:
    return DestinationError(f"no backup at {loc.url()}")


def _explain(exc: BaseException, loc: Location) -> DestinationError:
    from boto3.exceptions import RetriesExceededError, S3UploadFailedError
    from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, SSLError

    # boto3's transfer layer wraps the client's error: look at that one.
    if isinstance(exc, S3UploadFailedError) and exc.__context__ is not None:
        exc = exc.__context__
    if isinstance(exc, RetriesExceededError) and exc.last_exception is not None:
        exc = exc.last_exception

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("PreconditionFailed", "412"):  # a conditional write refused (upload with an owner)
            return _taken(loc, meanwhile=True)
        if code in ("NoSuchBucket",):
            return DestinationError(f"the bucket {loc.bucket} does not exist at {loc.endpoint}: create it, or fix "
                                    "the bucket name")
        if code in ABSENT_OBJECT:
            return _no_backup(loc)
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "Forbidden"):
            return DestinationError(f"{loc.endpoint} refused the credentials ({code}): check the access key ID and "
                                    f"secret access key, and that they may use bucket {loc.bucket}")
        if code in ("400", "BadRequest", "InvalidBucketName"):
            # A HEAD has no body to say why: a name S3 refuses, or (AWS) a bucket in another region.
            return DestinationError(f"{loc.endpoint} answered {code} (bad request) for bucket {loc.bucket}: check the "
                                    "bucket name (3 to 63 lowercase letters, digits, dots and hyphens) and the "
                                    f"region ({loc.region})")
        return DestinationError(f"{loc.endpoint} answered {code or 'an error'} for {loc.url()}")
    if isinstance(exc, SSLError):
        return DestinationError(f"TLS with {loc.endpoint} failed: give the endpoint's CA (a ConfigMap with ca.crt)")
    if isinstance(exc, EndpointConnectionError):
        return DestinationError(f"cannot reach {loc.endpoint}: check the endpoint URL")
    if isinstance(exc, ConnectionClosedError):
        return DestinationError(f"{loc.endpoint} closed the connection without answering: check the endpoint URL "
                                "(https:// or http://, as the server speaks)")
    return DestinationError(f"{type(exc).__name__} with {loc.url()}")


def check(loc: Location, access: tuple[str, str], ca_file: str | None = None, need_object: bool = False,
          owner: str | None = None) -> str | None:
    """Before any work: the endpoint answers over TLS, takes the credentials, has the bucket (and, for a
    restore, the object). Some servers cut an upload into a missing bucket short instead of answering.
    With ``owner`` (a backup request's uid), an object already at the key must be that request's own (an
    earlier attempt of it): a backup request never replaces an artifact it did not write. Returns that
    object's ETag, for ``upload`` to replace only it (None: no object there)."""
    from botocore.exceptions import ClientError

    s3 = client(loc, access, ca_file)
    try:
        s3.head_bucket(Bucket=loc.bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
            raise DestinationError(f"the bucket {loc.bucket} does not exist at {loc.endpoint}: create it, or fix "
                                   "the bucket name") from None
        raise _explain(exc, loc) from None
    except Exception as exc:
        raise _explain(exc, loc) from None
    if not (need_object or owner):
        return None
    try:
        head = _head(s3, loc)
    except Exception as exc:
        raise _explain(exc, loc) from None
    if head is None:
        if owner:
            return None
        raise _no_backup(loc)
    if owner and _owner_of(head) != owner:
        raise _taken(loc)
    return str(head.get("ETag") or "") or None


def _taken(loc: Location, meanwhile: bool = False) -> DestinationError:
    when = " (stored while this backup ran)" if meanwhile else ""
    return DestinationError(f"an object already exists at {loc.url()}{when}: a backup never replaces an artifact "
                            "it did not write; choose another key (spec.s3.key), or delete that object first")


def _write_only_if(s3: Any, replaces: str | None) -> None:
    """Make the client's writes of an object conditional (S3 conditional writes): only where none is
    (``If-None-Match: *``), or only over the object with ETag ``replaces`` (``If-Match``). The server decides
    when it stores the object, so two requests that both found the key free cannot both write it: the second
    is answered 412. boto3's transfer layer (multipart above 8 MiB) takes no such argument, so it is added to
    the two calls that store an object, PutObject and CompleteMultipartUpload."""
    condition = {"IfMatch": replaces} if replaces else {"IfNoneMatch": "*"}

    def add(params: dict[str, Any], **_: Any) -> None:
        params.update(condition)

    for call in ("PutObject", "CompleteMultipartUpload"):
        s3.meta.events.register(f"before-parameter-build.s3.{call}", add)


def upload(path: str, loc: Location, access: tuple[str, str], ca_file: str | None = None,
           owner: str | None = None, replaces: str | None = None) -> None:
    """Store the file at ``path`` as ``loc`` (multipart above 8 MiB). With ``owner`` (a backup request), marked
    as its own and stored only where no object is, or over the one with ETag ``replaces`` (``check``'s
    answer: an earlier attempt of the same request); an object another request stored meanwhile stays."""
    s3 = client(loc, access, ca_file)
    extra = None
    if owner:
        extra = {"Metadata": {OWNER_METADATA: owner}}
        _write_only_if(s3, replaces)
    try:
        s3.upload_file(path, loc.bucket, loc.key, ExtraArgs=extra)
    except Exception as exc:
        # The 412 of a refused conditional write is _explain's; but a server may answer it before reading
        # the body and close the connection while the client still sends it, which the client sees as a
        # broken connection (versitygw, 7 of 60 refusals). What is at the key says which it was.
        if owner and _stored_by_another(s3, loc, owner):
            raise _taken(loc, meanwhile=True) from None
        raise _explain(exc, loc) from None


def _stored_by_another(s3: Any, loc: Location, owner: str) -> bool:
    """After a failed upload: an object is at the key, and not ``owner``'s (False if that cannot be told)."""
    try:
        head = _head(s3, loc)
    except Exception:
        return False
    return head is not None and _owner_of(head) != owner


def download(loc: Location, access: tuple[str, str], dest: str, ca_file: str | None = None) -> None:
    """Fetch ``loc`` into the file ``dest``."""
    try:
        client(loc, access, ca_file).download_file(loc.bucket, loc.key, dest)
    except Exception as exc:
        raise _explain(exc, loc) from None


def delete(loc: Location, access: tuple[str, str], ca_file: str | None = None, owner: str | None = None) -> bool:
    """Remove the object ``loc`` (an absent object is fine: S3 answers a delete of one with success). With
    ``owner``, only if the object is that backup request's: False when another's object is there (kept)."""
    s3 = client(loc, access, ca_file)
    try:
        if owner:
            head = _head(s3, loc)
            if head is None:
                return True
            if _owner_of(head) != owner:
                return False
        s3.delete_object(Bucket=loc.bucket, Key=loc.key)
    except Exception as exc:
        raise _explain(exc, loc) from None
    return True


@contextlib.contextmanager
def ca_file(pem: str | None) -> Iterator[str | None]:
    """The endpoint's CA (PEM text) as a private temporary file for boto3, or None (publicly trusted)."""
    if not pem:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="etcdproxy-s3-") as tmp:
        path = os.path.join(tmp, "ca.crt")
        with open(path, "w") as fh:
            fh.write(pem)
        yield path
