"""moto's S3 server (`python -m moto.server`) for the scale benchmark, with two emulator costs
that real S3 does not have taken out, so that gigabyte objects measure the workflow, not moto.

moto 5.2.5 keeps each object in a SpooledTemporaryFile (on disk past ~5 MiB), but:
1. a ranged GET reads the *whole* object into memory and then slices it: every 8 MiB GET of a
   5 GB object reads 5 GB (Split makes ~600 of them, the Classify steps ~600 more);
2. CompleteMultipartUpload joins the parts in memory, three to four copies of the object at
   once (the joined bytes, the checksum builder's copy, bytes() of each): ~20 GB for 5 GB.

Here a single-range GET reads only its range from the object's file, and
CompleteMultipartUpload streams the parts into the new object's file (checksum computed
incrementally, the same value moto computes; then the parts are disposed of, as moto does). Everything else is stock moto: request parsing, versions, conditional writes,
ETags, list_parts, errors. `--stock` runs moto unpatched, for comparison at small sizes.

    python bench/s3_server.py -H 127.0.0.1 -p PORT [--stock]
"""

from __future__ import annotations

import binascii
import codecs
import sys
import threading
from typing import Any

CHUNK = 8 * 1024 * 1024
_lazy = threading.local()


class LazyValue:
    """An object's bytes, read on slicing: what moto's range handling needs (len, [a:b])."""

    def __init__(self, key: Any):
        self.key = key

    def __len__(self) -> int:
        return int(self.key.contentsize)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __getitem__(self, item: slice) -> bytes:
        start, stop, _ = item.indices(len(self))
        with self.key.lock:
            self.key._value_buffer.seek(start)
            return self.key._value_buffer.read(max(0, stop - start))

    def __bytes__(self) -> bytes:
        return self[0 : len(self)]


def patch() -> None:
    from moto.core.compat import HAS_CRT
    from moto.s3 import models, responses
    from moto.s3.exceptions import EntityTooSmall, InvalidPart, MalformedXML
    from moto.s3.utils import compute_checksum
    from moto.utilities.utils import md5_hash

    stock_value = models.FakeKey.value

    def value(self: Any) -> Any:
        if getattr(_lazy, "on", False):
            return LazyValue(self)
        return stock_value.fget(self)

    models.FakeKey.value = property(value, stock_value.fset)

    stock_key_response = responses.S3Response.key_response

    def key_response(self: Any, request: Any, full_url: str, headers: Any) -> Any:
        ranged = request.method == "GET" and "," not in (request.headers.get("range") or ",")
        _lazy.on = ranged
        try:
            status, response_headers, body = stock_key_response(self, request, full_url, headers)
        finally:
            _lazy.on = False
        if isinstance(body, LazyValue):  # a range moto chose not to apply: the whole object
            body = bytes(body)
        return status, response_headers, body

    responses.S3Response.key_response = key_response

    def complete_multipart_upload(self: Any, bucket_name: str, multipart_id: str, body: Any) -> Any:
        bucket = self.get_bucket(bucket_name)
        multipart = bucket.multiparts[multipart_id]
        algorithm = multipart.metadata.get("x-amz-checksum-algorithm") or "CRC64NVME"
        checksum_type = multipart.metadata.get("x-amz-checksum-type") or (
            "FULL_OBJECT" if algorithm == "CRC64NVME" else "COMPOSITE"
        )
        if checksum_type == "FULL_OBJECT" and algorithm not in ("CRC64NVME", "CRC32"):
            raise NotImplementedError(f"bench S3 server: full-object {algorithm} checksums")
        parts, last = [], None
        for number, etag in body:
            part = multipart.parts.get(number)
            if part is None or part.etag.replace('"', "") != etag.replace('"', ""):
                raise InvalidPart()
            if last is not None and last.contentsize < models.S3_UPLOAD_PART_MIN_SIZE:
                raise EntityTooSmall()
            parts.append(part)
            last = part
        if not parts:
            raise MalformedXML
        md5s = bytearray()
        for part in parts:
            md5s.extend(codecs.decode(part.etag.replace('"', ""), "hex"))
        full_etag = md5_hash()
        full_etag.update(bytes(md5s))

        key = self.put_object(
            bucket_name,
            multipart.key_name,
            b"",
            storage=multipart.storage,
            etag=f"{full_etag.hexdigest()}-{len(parts)}",
            multipart=multipart,
            encryption=multipart.sse_encryption,
            kms_key_id=multipart.kms_key_id,
            disable_notification=True,
        )
        composite, crc, crc64, size = bytearray(), 0, None, 0
        if algorithm == "CRC64NVME" and HAS_CRT:
            from awscrt import checksums

            crc64 = 0
        out = key._value_buffer
        for part in parts:
            part_crc = 0
            with part.lock:
                part._value_buffer.seek(0)
                while block := part._value_buffer.read(CHUNK):
                    out.write(block)
                    size += len(block)
                    if checksum_type == "FULL_OBJECT":  # CRC64NVME, or CRC32 (moto's fallback without awscrt)
                        if crc64 is not None:
                            crc64 = checksums.crc64nvme(block, crc64)
                        else:
                            crc = binascii.crc32(block, crc)
                    elif algorithm == "CRC32":
                        part_crc = binascii.crc32(block, part_crc)
            if checksum_type == "COMPOSITE":
                if algorithm == "CRC32":
                    composite.extend(part_crc.to_bytes(4, "big"))
                else:  # other algorithms: per part, from the part's bytes (one part in memory)
                    composite.extend(compute_checksum(part.value, algorithm, encode_base64=False))
        key.contentsize = size
        if checksum_type == "COMPOSITE":
            checksum = (checksum_type, compute_checksum(bytes(composite), algorithm).decode(), len(parts))
        else:
            import base64

            raw = crc64.to_bytes(8, "big") if crc64 is not None else crc.to_bytes(4, "big")
            checksum = (checksum_type, base64.b64encode(raw).decode(), 1)
        key.set_metadata(multipart.metadata)
        key.checksum_algorithm = multipart.metadata.get("x-amz-checksum-algorithm")
        key.checksum_type, key.checksum_value, key.checksum_parts = checksum
        self.put_object_tagging(key, multipart.tags)
        self.put_object_acl(bucket_name=bucket_name, key_name=key.name, acl=multipart.acl, disable_notification=True)
        del bucket.multiparts[multipart_id]  # moto's MultipartDict disposes of the parts' files
        return key

    models.S3Backend.complete_multipart_upload = complete_multipart_upload


def main(argv: list[str]) -> None:
    if "--stock" in argv:
        argv = [a for a in argv if a != "--stock"]
    else:
        patch()
    from moto.server import main as moto_main

    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
