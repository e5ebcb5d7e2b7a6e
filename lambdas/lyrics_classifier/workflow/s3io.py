"""S3 helpers the steps share: JSON objects, heads that may miss, ranged reads of the input
version, the multipart upload's abort, and the claim markers (first writer wins)."""

from __future__ import annotations

import itertools
import json
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Iterator
from urllib.parse import unquote_plus

from ..contract import MIB
from ..errors import InputError
from .keys import claim_key

READ_BLOCK_BYTES = 8 * MIB  # one ranged GET of Split's pass
# Multipart uploads are created, uploaded and completed with one checksum algorithm: botocore
# >= 1.36 adds a CRC32 to every UploadPart by default, and S3 wants the parts' checksums to
# match what CreateMultipartUpload declared. Merge names each part's CRC32 when it completes.
CHECKSUM = {"ChecksumAlgorithm": "CRC32"}
READ_AHEAD = 4  # ranged GETs in flight: one stream alone cannot keep a vCPU busy


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def put_json(s3: Any, bucket: str, key: str, value: Any, **extra: Any) -> None:
    body = json.dumps(value, ensure_ascii=False, indent=1).encode("utf-8")
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", **extra)


def get_json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def completed_part(stat: dict[str, Any]) -> dict[str, Any]:
    """A part as CompleteMultipartUpload names it: with its CRC32, as the upload was created."""
    part = {"ETag": stat["etag"], "PartNumber": stat["part"]}
    if stat.get("checksum_crc32"):
        part["ChecksumCRC32"] = stat["checksum_crc32"]
    return part


def get_json_or_none(s3: Any, bucket: str, key: str) -> Any:
    try:
        return get_json(s3, bucket, key)
    except s3.exceptions.ClientError as exc:
        if is_missing(exc):
            return None
        raise


def error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def is_missing(exc: Exception) -> bool:
    return error_code(exc) in ("404", "NoSuchKey", "NotFound", "NoSuchUpload", "NoSuchVersion")


def head_or_none(s3: Any, bucket: str, key: str, version_id: str | None = None) -> dict[str, Any] | None:
    args = {"Bucket": bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
    try:
        return s3.head_object(**args)
    except s3.exceptions.ClientError as exc:
        if is_missing(exc):
            return None
        raise


def delete_if_exists(s3: Any, bucket: str, key: str) -> None:
    # Deleting a missing key would leave a delete marker in a versioned bucket.
    if head_or_none(s3, bucket, key) is not None:
        s3.delete_object(Bucket=bucket, Key=key)


def same_etag(a: str | None, b: str | None) -> bool:
    # S3 events carry ETags without the quotes that HeadObject puts around them.
    return (a or "").strip('"') == (b or "").strip('"')


def object_args(source: dict[str, Any]) -> dict[str, Any]:
    """GET arguments that pin the object Split read: its version, else its ETag."""
    args = {"Bucket": source["bucket"], "Key": source["key"]}
    if source.get("version_id"):
        args["VersionId"] = source["version_id"]
    elif source.get("etag"):
        args["IfMatch"] = source["etag"]
    return args


def read_range(s3: Any, source: dict[str, Any], start: int, end: int) -> bytes:
    if end <= start:
        return b""
    return s3.get_object(**object_args(source), Range=f"bytes={start}-{end - 1}")["Body"].read()


def read_blocks(s3: Any, source: dict[str, Any], size: int, block: int = READ_BLOCK_BYTES) -> Iterator[bytes]:
    """The object's bytes in order, `block` at a time, with READ_AHEAD ranged GETs in flight."""
    offsets = iter(range(0, size, block))
    with ThreadPoolExecutor(max_workers=READ_AHEAD) as pool:
        def fetch(offset: int) -> Future[bytes]:
            return pool.submit(read_range, s3, source, offset, min(offset + block, size))

        in_flight = deque(fetch(offset) for offset in itertools.islice(offsets, READ_AHEAD))
        while in_flight:
            data = in_flight.popleft().result()
            if (offset := next(offsets, None)) is not None:
                in_flight.append(fetch(offset))
            yield data


def resolve_input(s3: Any, bucket: str, key: str, version_id: str | None) -> tuple[str, dict[str, Any]]:
    """(key, head) of the event's object. S3 events URL-encode keys ('my songs.csv' -> 'my+songs.csv')."""
    for candidate in dict.fromkeys((key, unquote_plus(key))):
        head = head_or_none(s3, bucket, candidate, version_id)
        if head is not None:
            return candidate, head
    raise InputError(f"s3://{bucket}/{key} does not exist (was it deleted before the run started?)")


def decoded_source(s3: Any, source: dict[str, Any]) -> dict[str, Any]:
    """The event's object with its key as stored (decoded if the event URL-encoded it); as
    given if the object is gone."""
    try:
        key, _ = resolve_input(s3, source["bucket"], source["key"], source.get("version_id"))
    except InputError:
        return source
    return {**source, "key": key}


def superseded_by(s3: Any, source: dict[str, Any]) -> str | None:
    """The version (or ETag) of a newer upload of the same key, if there is one. Only the run
    of the current version may write results, so an older version finishing last never
    overwrites a newer one's."""
    head = head_or_none(s3, source["bucket"], source["key"])
    if head is None:  # deleted since: nothing newer to protect
        return None
    if source.get("version_id"):
        current = head.get("VersionId")
        return current if current and current != source["version_id"] else None
    return None if same_etag(head.get("ETag"), source.get("etag")) else head.get("ETag")


def abort_upload(s3: Any, job: dict[str, Any]) -> None:
    try:
        s3.abort_multipart_upload(Bucket=job["bucket"], Key=job["result_key"], UploadId=job["upload_id"])
    except s3.exceptions.ClientError as exc:
        if not is_missing(exc):
            raise


def claim_version(s3: Any, bucket: str, source: dict[str, Any], run_id: str) -> str:
    """Write the version's claim marker unless one exists; return the run that owns it."""
    key = claim_key(source)
    claim = {"run_id": run_id, "input": source, "claimed_at": utc_now()}
    try:
        put_json(s3, bucket, key, claim, IfNoneMatch="*")
        return run_id
    except s3.exceptions.ClientError as exc:
        if error_code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
            raise
    return str(get_json(s3, bucket, key)["run_id"])


def claim_owner(s3: Any, bucket: str, key: str) -> str | None:
    try:
        return str(get_json(s3, bucket, key)["run_id"])
    except s3.exceptions.ClientError as exc:
        if is_missing(exc):
            return None
        raise


def release_claim(s3: Any, bucket: str, key: str, run_id: str) -> None:
    """Drop this run's claim, so that the same version can be run again (a new execution)."""
    if claim_owner(s3, bucket, key) == run_id:
        s3.delete_object(Bucket=bucket, Key=key)

