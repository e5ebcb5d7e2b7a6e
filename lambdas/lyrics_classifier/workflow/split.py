"""Split: claim the object version, check the upload's label set, index the input into byte
ranges in one byte-level pass, write the manifest and start the result's multipart upload."""

from __future__ import annotations

import codecs
import dataclasses
import io
import math
import time
import zlib
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Iterator

from ..contract import DEFAULT_RANGE_BYTES, LABEL_SET_SUFFIX, LABELS_PREFIX, MIB, MIN_RANGE_BYTES, PLANNED_MAX_PARTS
from ..csvfile import (SNIFF_BYTES, InputError, detect_delimiter, detect_encoding, excel_separator, find_text_column,
                       iter_records, parse_delimiter)
from ..index import RangeIndexer, header_end, line_break
from ..labelset import LabelSetError
from ..labelset import parse as parse_label_set
from .classify import row_codec
from .jsonlines import first_object_fields, is_json_lines
from .keys import (claim_key, label_set_copy_key, label_set_key, manifest_key, result_key, run_info_key,
                   run_prefix, version_token)
from .s3io import (CHECKSUM, READ_AHEAD, READ_BLOCK_BYTES, claim_version, completed_part, get_json_or_none,
                   is_missing, put_json, read_blocks, read_range, release_claim, resolve_input, utc_now)

HEADER_LIMIT_BYTES = 16 * MIB
UNCLOSED_QUOTE_PARSE_BYTES = 64 * MIB  # an error path: parse at most this much to name the line
CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
GZIP_MAGIC = b"\x1f\x8b"
GZIP_INFLATION = 10  # for planning ranges: how much larger than its gzip file a text may be
TSV_CONTENT_TYPE = "text/tab-separated-values; charset=utf-8"
JSONL_CONTENT_TYPE = "application/x-ndjson; charset=utf-8"
DELIMITER_METADATA = "delimiter"  # `aws s3 cp --metadata delimiter=semicolon`: this upload's delimiter


def split_input(
    s3: Any,
    *,
    input_bucket: str,
    input_key: str,
    work_bucket: str,
    run_id: str,
    version_id: str | None = None,
    range_bytes: int = DEFAULT_RANGE_BYTES,
    text_column: str | None = None,
    input_prefix: str = "",
    delimiter: str | None = None,
) -> dict[str, Any]:
    """Claim the object version, check the label set the upload selects (label_set_key), index
    the file into byte ranges, write the manifest and start the result's multipart upload.
    Returns keys and counts only (it travels through the state).

    A second run of the same object version (a duplicate event) returns at once with
    `duplicate_of` set to the run that owns it; the same execution running Split again (AWS
    retried it after it finished) gets the answer of the first, from run.json. A file that
    cannot be read as a CSV raises InputError with the reason.
    """
    started = time.perf_counter()
    key, head = resolve_input(s3, input_bucket, input_key, version_id)
    size = int(head["ContentLength"])
    source = {
        "bucket": input_bucket,
        "key": key,
        "version_id": version_id or head.get("VersionId") or None,
        "etag": head.get("ETag"),
    }
    owner = claim_version(s3, work_bucket, source, run_id)
    result = {
        "run_id": run_id,
        "duplicate_of": owner if owner != run_id else None,
        "bucket": work_bucket,
        "manifest_key": manifest_key(run_id),
        "claim_key": claim_key(source),
        "input_key": key,
        "bytes": size,
        "ranges": 0,
        "job": None,
    }
    if result["duplicate_of"]:
        return result
    earlier = get_json_or_none(s3, work_bucket, run_info_key(run_id))
    if earlier is not None and claim_key(earlier["input"]) == result["claim_key"]:
        # AWS ran this step again after it finished (same run, same object version): the same
        # answer, and no second upload
        return {**result, "ranges": earlier["ranges"], "job": earlier["job"]}
    try:
        label_set = _copy_label_set(s3, source, input_prefix, work_bucket, run_id)
        delimiter = upload_delimiter(head, source) or delimiter
        indexed = _index_input(s3, source, size, work_bucket, run_id, range_bytes, text_column, started, label_set,
                               delimiter)
        return {**result, **indexed}
    except BaseException:
        release_claim(s3, work_bucket, result["claim_key"], run_id)  # a new execution may try again
        raise


def _copy_label_set(s3: Any, source: dict[str, Any], input_prefix: str, work_bucket: str,
                    run_id: str) -> dict[str, str] | None:
    """Read and check the upload's label set, and copy it into the run's work area, so that
    every range classifies with the very same labels even if the set changes mid-run. A
    missing or invalid set fails the run here, before any range is classified."""
    if source["key"].startswith(LABELS_PREFIX):
        raise InputError(f"{LABELS_PREFIX} holds label sets: upload CSV files to another folder or the bucket root")
    key = label_set_key(source["key"], input_prefix)
    if key is None:
        return None
    uri = f"s3://{source['bucket']}/{key}"
    folder = key[len(LABELS_PREFIX):-len(LABEL_SET_SUFFIX)]
    try:
        document = s3.get_object(Bucket=source["bucket"], Key=key)["Body"].read()
    except Exception as exc:
        if not is_missing(exc):
            raise
        raise LabelSetError(
            f"{uri} does not exist: a file in the folder {folder}/ is classified with the label set "
            f"{key}; upload one there, or upload the file to the bucket root for the model's own labels"
        ) from None
    label_set = parse_label_set(document, uri, name=folder)
    if label_set.examples:
        raise LabelSetError(f"{uri}: examples (a fitted head) need `lyrics-classifier build-model`; "
                            "a label set chosen at run time holds descriptions only")
    copy = label_set_copy_key(run_id)
    s3.put_object(Bucket=work_bucket, Key=copy, Body=document, ContentType="application/json")
    return {"key": copy, "sha256": label_set.sha256, "source": uri, "name": label_set.name}


def upload_delimiter(head: dict[str, Any], source: dict[str, Any]) -> str | None:
    """The delimiter an upload names in its S3 metadata (x-amz-meta-delimiter), if any."""
    named = head.get("Metadata", {}).get(DELIMITER_METADATA)
    if named is None:
        return None
    try:
        return parse_delimiter(named)
    except ValueError as exc:
        raise InputError(f"s3://{source['bucket']}/{source['key']}: metadata {exc}") from None


def load_label_set(s3: Any, job: dict[str, Any]):
    """The LabelSet of a run (Split's copy), or None for the model's own labels."""
    chosen = job.get("label_set")
    if not chosen:
        return None
    document = s3.get_object(Bucket=job["bucket"], Key=chosen["key"])["Body"].read()
    return parse_label_set(document, chosen["source"], name=chosen["name"])


def _index_input(
    s3: Any,
    source: dict[str, Any],
    size: int,
    work_bucket: str,
    run_id: str,
    range_bytes: int,
    text_column: str | None,
    started: float,
    label_set: dict[str, str] | None,
    delimiter: str | None,
) -> dict[str, Any]:
    started_at = utc_now()
    if size == 0:
        raise InputError("the file is empty: expected a CSV with a header row")
    blocks = read_blocks(s3, source, size)
    first = next(blocks)
    # Gzip and UTF-16 cannot be read by byte ranges: decompress / re-encode the stream once
    # into the work area as it is indexed, and index (and classify) that copy.
    compressed = first.startswith(GZIP_MAGIC)
    if compressed:
        blocks, first = _started(_gunzipped(_chain(first, blocks)))
    encoding = detect_encoding(first[:SNIFF_BYTES])
    row_encoding = encoding
    if encoding.startswith("utf-16"):
        blocks, first = _started(_utf8_blocks(_chain(first, blocks), encoding))
        row_encoding = "utf-8"
    indexed_source = source
    if compressed or encoding.startswith("utf-16"):
        indexed_source = {"bucket": work_bucket, "key": f"{run_prefix(run_id)}input.csv", "version_id": None}
        blocks, first = _started(_copy_to_work_area(s3, _chain(first, blocks), indexed_source))
    # Never fewer than MIN_RANGE_BYTES (S3's part minimum), never more than PLANNED_MAX_PARTS ranges
    # (of a gzip file only the compressed size is known: text inflates up to ~10x).
    range_bytes = max(range_bytes, MIN_RANGE_BYTES,
                      math.ceil(size * (GZIP_INFLATION if compressed else 1) / PLANNED_MAX_PARTS))
    newline = line_break(first[:SNIFF_BYTES])
    json_lines = is_json_lines(source["key"])
    if json_lines:  # no header: the first object's fields name the lyrics field
        fields, text_field = first_object_fields(first.decode(row_codec(row_encoding), "replace").lstrip("\ufeff"),
                                                 text_column)
        header = Header(fields, "", 0)
        text_index = fields.index(text_field)
    else:
        header, first = _read_header(first, blocks, row_encoding, newline, delimiter)
        text_index = find_text_column(header.fields, text_column)

    indexer = RangeIndexer(range_bytes, newline, quoting=not json_lines)
    # A few bytes that are not UTF-8 near the top must not make a UTF-8 file Windows-1252: the
    # pass sees every byte, so the whole file decides (only when the first 64 KiB said cp1252).
    tally = Utf8Tally() if encoding in ("cp1252", "latin-1") else None
    for block in tally.watch(_chain(first, blocks)) if tally else _chain(first, blocks):
        indexer.feed(block)
    if tally and tally.mostly_utf8():
        # UTF-8 after all: the rows with stray bytes fall back one by one, with a warning
        encoding = row_encoding = "utf-8"
        if not json_lines:
            header, _ = _read_header(first, iter(()), row_encoding, newline, header.delimiter)
    ranges = indexer.finish()
    if indexer.in_quotes:
        raise InputError(_unclosed_quote_reason(s3, indexed_source, ranges[-1], row_encoding))
    if indexed_source is not source:
        indexed_source["etag"] = s3.head_object(Bucket=work_bucket, Key=indexed_source["key"])["ETag"]

    out_key = result_key(source["key"])
    upload_id = s3.create_multipart_upload(
        **CHECKSUM,
        Bucket=work_bucket,
        Key=out_key,
        ContentType=JSONL_CONTENT_TYPE if json_lines else TSV_CONTENT_TYPE if header.delimiter == "\t" else CSV_CONTENT_TYPE,
        Metadata={"execution": run_id, "input-version": version_token(source)},
    )["UploadId"]
    job = {
        "run_id": run_id,
        "bucket": work_bucket,
        "source": indexed_source,
        "encoding": row_encoding,
        "columns": len(header.fields),
        "text_column_index": text_index,
        "delimiter": header.delimiter,
        "preamble": header.preamble,
        **({"format": "jsonl", "fields": header.fields, "text_field": header.fields[text_index]} if json_lines else {}),
        "result_key": out_key,
        "upload_id": upload_id,
        **({"label_set": label_set} if label_set else {}),
    }
    run = {
        "run_id": run_id,
        "input": {**source, "bytes": size, "encoding": encoding, **({"compression": "gzip"} if compressed else {})},
        "job": job,
        "header": header.fields,
        "delimiter": header.delimiter,
        "text_column": header.fields[text_index],
        "range_bytes": range_bytes,
        "ranges": len(ranges),
        "started_at": started_at,
        "split_seconds": round(time.perf_counter() - started, 3),
    }
    put_json(s3, work_bucket, manifest_key(run_id), [r.as_item() for r in ranges])
    put_json(s3, work_bucket, run_info_key(run_id), run)  # last: its presence means Split is done
    return {"ranges": len(ranges), "job": job}


def _unclosed_quote_reason(s3: Any, source: dict[str, Any], last: Any, encoding: str) -> str:
    """The file ends inside quotes: the parser names the line where the field opens, if the
    last range is small enough to parse here; else the line after which it opens."""
    if last.end - last.start <= UNCLOSED_QUOTE_PARSE_BYTES:
        text = read_range(s3, source, last.start, last.end).decode(row_codec(encoding), "surrogateescape")
        try:
            for _ in iter_records(io.StringIO(text.lstrip("\ufeff"), newline=""), first_line=last.first_line):
                pass
        except InputError as exc:
            return str(exc)
    return (
        f"a quoted field opened after line {last.first_line} is never closed (unbalanced double "
        "quote); every field that starts with \" must end with \", and quotes inside it are written \"\""
    )


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _read_header(
    first: bytes, blocks: Iterator[bytes], encoding: str, newline: bytes, delimiter: str | None = None
) -> tuple[Header, bytes]:
    """The header (its fields, its delimiter, and the bytes of an Excel `sep=` line before it),
    and the bytes read so far (the header is part of range 0). `delimiter` None: Excel's
    `sep=` line if there is one, else the header's own (csvfile.detect_delimiter)."""
    preamble, buffer = 0, first
    end, buffer = _record_end(buffer, blocks, 0, newline)
    separator = excel_separator(buffer[:end].decode(encoding, errors="replace"))
    if separator is not None:  # Excel's `sep=;` line: not the header, which follows it
        preamble = end
        end, buffer = _record_end(buffer, blocks, preamble, newline)
    text = buffer[preamble:end].decode(encoding, errors="replace")
    delimiter = delimiter or separator or detect_delimiter(text)
    header = next(iter_records(io.StringIO(text, newline=""), delimiter=delimiter), None)
    if header is None:
        raise InputError("the file has no header row (it is empty or only blank lines)")
    return Header(header.fields, delimiter, preamble), buffer


@dataclasses.dataclass(frozen=True)
class Header:
    fields: list[str]
    delimiter: str
    preamble: int  # bytes before the header (Excel's `sep=` line), copied to the output as they are


def _record_end(buffer: bytes, blocks: Iterator[bytes], start: int, newline: bytes) -> tuple[int, bytes]:
    """Offset just past the record that starts at `start`, reading more blocks as needed."""
    while (end := header_end(buffer[start:], newline)) is None and len(buffer) < HEADER_LIMIT_BYTES:
        more = next(blocks, None)
        if more is None:
            return len(buffer), buffer
        buffer += more
    if end is None:
        raise InputError(f"no end of the header row in the first {HEADER_LIMIT_BYTES // MIB} MiB: is this a CSV?")
    return start + end, buffer


class Utf8Tally:
    """Counts, over a stream of blocks, the non-ASCII characters that decode as UTF-8 and the
    bytes that do not (C-speed decoding; run only on files the first 64 KiB called cp1252)."""

    def __init__(self) -> None:
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.valid = 0  # non-ASCII characters in valid multi-byte sequences
        self.invalid = 0  # replacement characters: bytes that are not UTF-8

    def watch(self, blocks: Iterator[bytes]) -> Iterator[bytes]:
        for block in blocks:
            self._count(self.decoder.decode(block))
            yield block
        self._count(self.decoder.decode(b"", final=True))

    def _count(self, text: str) -> None:
        bad = text.count("\ufffd")
        self.valid += len(text) - len(text.encode("ascii", "ignore")) - bad
        self.invalid += bad

    def mostly_utf8(self) -> bool:
        """Valid multi-byte sequences outweigh the invalid bytes: a UTF-8 file with strays."""
        return self.valid > self.invalid


def _started(blocks: Iterator[bytes]) -> tuple[Iterator[bytes], bytes]:
    """(the rest of a stream of blocks, its first block)."""
    return blocks, next(blocks, b"")


def _gunzipped(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """The decompressed bytes of a gzip stream (members one after another, as `cat a.gz b.gz`
    makes), at most READ_BLOCK_BYTES at a time however well the data compresses."""
    inflater, inside = zlib.decompressobj(wbits=31), False  # inside: a member has begun
    try:
        for block in blocks:
            while block:
                inside = True
                if out := inflater.decompress(block, READ_BLOCK_BYTES):
                    yield out
                if inflater.eof:  # the next member, if any
                    block, inflater, inside = inflater.unused_data, zlib.decompressobj(wbits=31), False
                else:
                    block = inflater.unconsumed_tail
            # (more of this member comes with the next block)
    except zlib.error as exc:
        raise InputError(f"the file starts like gzip but is not a valid gzip file ({exc})") from None
    if inside:
        raise InputError("the gzip file is cut short (truncated): upload the whole file again")


def _utf8_blocks(blocks: Iterator[bytes], encoding: str) -> Iterator[bytes]:
    """UTF-16 cannot be indexed with single-byte quotes: the text re-encoded as UTF-8."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        for block in blocks:
            if data := decoder.decode(block).encode("utf-8"):
                yield data
        if data := decoder.decode(b"", final=True).encode("utf-8"):
            yield data
    except UnicodeDecodeError as exc:
        raise InputError(f"the file is not valid {encoding} text ({exc.reason})") from None


def _copy_to_work_area(s3: Any, blocks: Iterator[bytes], target: dict[str, Any]) -> Iterator[bytes]:
    """Write the blocks once into the work area (multipart, parts of READ_BLOCK_BYTES or more,
    READ_AHEAD of them uploading at once beside the pass) while yielding them on; the copy is
    complete when the stream is."""
    upload_id = s3.create_multipart_upload(Bucket=target["bucket"], Key=target["key"], **CHECKSUM)["UploadId"]
    uploads: list[Future[dict[str, Any]]] = []
    pending = bytearray()

    def upload(number: int, data: bytes) -> dict[str, Any]:
        uploaded = s3.upload_part(
            Bucket=target["bucket"], Key=target["key"], UploadId=upload_id, PartNumber=number, Body=data, **CHECKSUM
        )
        return completed_part({"etag": uploaded["ETag"], "part": number, "checksum_crc32": uploaded.get("ChecksumCRC32")})

    def send(data: bytes) -> None:
        while len([u for u in uploads if not u.done()]) >= READ_AHEAD:  # bounded memory
            wait([u for u in uploads if not u.done()], return_when=FIRST_COMPLETED)
        uploads.append(pool.submit(upload, len(uploads) + 1, data))

    with ThreadPoolExecutor(max_workers=READ_AHEAD) as pool:
        try:
            for data in blocks:
                pending += data
                if len(pending) >= READ_BLOCK_BYTES:
                    send(bytes(pending))
                    pending.clear()
                yield data
            if pending or not uploads:
                send(bytes(pending))
            parts = [u.result() for u in uploads]
            s3.complete_multipart_upload(
                Bucket=target["bucket"], Key=target["key"], UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            for u in uploads:
                u.cancel()
            wait(uploads)
            s3.abort_multipart_upload(Bucket=target["bucket"], Key=target["key"], UploadId=upload_id)
            raise
