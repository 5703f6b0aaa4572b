"""Content-addressed blob store on S3 or any S3-compatible endpoint (`LITEMX_BLOB_URL=s3://bucket/prefix`).

Same contract as the file store: the key is the SHA-256 hex of the content, so storing the
same bytes twice yields the same object and a key can always be re-verified. Objects live at
`<prefix>/<k[:2]>/<k[2:4]>/<k>` (the same fan-out as on disk, which keeps listings readable).

S3 PUT is atomic and durable once it answers 200, which is what `250` after DATA needs.
put() always writes, even when the object exists: a re-PUT of identical bytes is harmless and
refreshes the object's modification time, so a concurrent retention sweep is less likely to
remove a blob a new message has just claimed (docs/retention-and-privacy.md, "Blobs are shared").

Credentials and region come from boto3's usual chain (environment, config files, instance
role); `LITEMX_S3_ENDPOINT` points it at MinIO, moto, Ceph, R2 or similar.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError

from litemx.errors import InvalidRequest, Unavailable
from litemx.storage.blobs import content_key, is_key

log = logging.getLogger("litemx.blobs")

_MISSING = {"404", "NoSuchKey", "NotFound"}
DELETE_BATCH = 1000  # keys per DeleteObjects request: S3's own limit


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix").

    Raises: InvalidRequest naming `blob_url` when there is no bucket.
    """
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise InvalidRequest(f"blob URL {url!r} must look like s3://bucket/prefix", {"field": "blob_url"})
    return parts.netloc, parts.path.strip("/")


class S3BlobStore:
    """The BlobStore port over one bucket and key prefix."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, client: Any = None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        # Path-style addressing: S3-compatible servers on a host:port rarely do virtual hosts.
        self.client = client or boto3.client(
            "s3", endpoint_url=endpoint_url or None,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}))

    @classmethod
    def from_url(cls, url: str, endpoint_url: str | None = None) -> S3BlobStore:
        """Raises: InvalidRequest for a malformed URL."""
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, endpoint_url)

    def object_key(self, key: str) -> str:
        """Where blob `key` lives in the bucket. Raises: KeyError for a key that is not a SHA-256 hex."""
        if not is_key(key):
            raise KeyError(key)
        path = f"{key[:2]}/{key[2:4]}/{key}"
        return f"{self.prefix}/{path}" if self.prefix else path

    def put(self, data: bytes) -> str:
        """Raises: Unavailable when the store cannot be reached or refuses the write."""
        key = content_key(data)
        with _translated():
            self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data,
                                   ContentType="application/octet-stream")
        return key

    def get(self, key: str) -> bytes:
        """Raises: KeyError when absent, Unavailable when the store fails."""
        with _translated(missing=key):
            response = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
            return bytes(response["Body"].read())

    def exists(self, key: str) -> bool:
        """Raises: Unavailable when the store fails."""
        try:
            with _translated(missing=key):
                self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except KeyError:
            return False
        return True

    def keys_written_before(self, moment: datetime, shard: str = "") -> Iterator[str]:
        """Objects under the prefix (and the fan-out directories starting with `shard`) whose
        LastModified is before `moment`.

        Raises: Unavailable when the store fails.
        """
        prefix = f"{self.prefix}/" if self.prefix else ""
        with _translated():
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix + shard)
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"].rpartition("/")[2]
                    if item["LastModified"] < moment and is_key(key) and item["Key"] == self.object_key(key):
                        yield key

    def remove_temp_files_before(self, moment: datetime, shard: str = "") -> int:
        """Nothing to do: a PUT is atomic, so S3 never holds a half-written blob."""
        return 0

    def delete(self, key: str) -> bool:
        """True when an object was removed (S3 DELETE itself never says, so HEAD first).

        Raises: Unavailable when the store fails.
        """
        if not self.exists(key):
            return False
        with _translated():
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        return True

    def delete_many(self, keys: Sequence[str]) -> tuple[int, dict[str, str]]:
        """DeleteObjects, up to DELETE_BATCH keys a request, in quiet mode (the answer lists only
        the keys that failed): one request per thousand blobs instead of a HEAD and a DELETE
        each. S3 reports a key that was already absent as deleted, so here it counts as removed.

        A DeleteObjects request that fails sends this call back to one key at a time (a HEAD,
        then a DELETE) for its keys and the rest: some S3-compatible stores refuse DeleteObjects
        (its checksum header), and a request whose answer was lost may have been carried out,
        which only per-key requests can tell.

        Raises: Unavailable only when nothing can have been removed (every request that failed
        was refused, or never reached the store). When a request may have been carried out
        without an answer, the keys it covered are reported failed instead: the caller must
        not roll back rows whose blobs may be gone (service/blob_refs.py).
        """
        gone, failed, unsure = 0, {}, False
        valid = [key for key in keys if is_key(key)]
        for start in range(0, len(valid), DELETE_BATCH):
            chunk = valid[start:start + DELETE_BATCH]
            try:
                answer = self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": self.object_key(key)} for key in chunk], "Quiet": True})
            except (ClientError, BotoCoreError) as exc:
                log.warning("DeleteObjects failed (%s); deleting %d blob(s) one at a time",
                            _failure(exc), len(valid) - start)
                more, failures, maybe = self._delete_one_by_one(valid[start:])
                gone, unsure = gone + more, unsure or maybe or not _not_carried_out(exc)
                failed.update(failures)
                break
            errors = {item["Key"].rpartition("/")[2]: str(item.get("Code") or "error")
                      for item in answer.get("Errors", [])}
            failed.update(errors)
            gone += len(chunk) - len(errors)
        if failed and not gone and not unsure:
            raise Unavailable(f"the blob store deleted none of {len(valid)} blob(s)")
        return gone, failed

    def _delete_one_by_one(self, keys: list[str]) -> tuple[int, dict[str, str], bool]:
        """A HEAD, then a DELETE when there, per key; the first failure leaves the rest. Returns
        (removed, failures, whether a failed DELETE may have been carried out)."""
        gone = 0
        for i, key in enumerate(keys):
            try:
                if not self.exists(key):
                    continue
            except Unavailable as exc:  # a HEAD removes nothing
                return gone, dict.fromkeys(keys[i:], str(exc)), False
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
            except (ClientError, BotoCoreError) as exc:
                return gone, dict.fromkeys(keys[i:], _failure(exc)), not _not_carried_out(exc)
            gone += 1
        return gone, {}, False


def _not_carried_out(exc: BaseException) -> bool:
    """Whether a failed request certainly changed nothing: the store refused it (a 4xx answer),
    or it never reached the store (no connection). A 5xx or a lost answer may hide a change."""
    if isinstance(exc, ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500) < 500
    return isinstance(exc, (EndpointConnectionError, ConnectTimeoutError))


def _failure(exc: BaseException) -> str:
    """A botocore failure in a few words (its error code, or its type), never a credential."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "error")
    return type(exc).__name__


class _translated:
    """Map botocore failures onto the port's vocabulary: KeyError for a missing object,
    Unavailable (503) for everything else, never a botocore type crossing the boundary."""

    def __init__(self, missing: str | None = None):
        self.missing = missing

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any) -> bool:
        if exc is None:
            return False
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if self.missing is not None and code in _MISSING:
                raise KeyError(self.missing) from None
            raise Unavailable(f"the blob store refused the request ({code or 'error'})") from None
        if isinstance(exc, BotoCoreError):
            raise Unavailable(f"the blob store is unreachable ({type(exc).__name__})") from None
        return False
