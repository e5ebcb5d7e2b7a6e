"""The workflow's steps as plain functions over an S3 client: Split, Classify, Merge and the
failure report. Lambda handlers and the local runner both call these; Step Functions (the
ASL file) is the only thing that decides their order.

No step does work that grows with the file except Split's one byte-level pass, and no
row byte moves twice:
- Split claims the object version (duplicate events start nothing), finds record
  boundaries (index.py) and writes a manifest of byte ranges; it starts the result's
  multipart upload. The input is read in place, by version id.
- Classify reads its range with a ranged GET, classifies it and uploads the range's
  output as part <index + 1> of that upload (part 1 carries the header). A retry
  replaces the same part.
- Merge checks every part and its counts, then completes the upload: the result appears
  whole or not at all. It moves no row bytes.

Work area, in the output bucket:
    runs/claims/<sha256 of bucket/key/version>.json   first writer wins (If-None-Match)
    runs/<run id>/run.json          what Split learned (header, encoding, ranges, upload id)
    runs/<run id>/manifest.json     the Distributed Map's items: one byte range each
    runs/<run id>/parts/<n>.json    a range's counts, written after its part: marks it done
    runs/<run id>/input.utf8.csv    UTF-16 input, transcoded once (other encodings: none)
    runs/map-results/<map run id>/  the Map's ResultWriter output (contract.MAP_RESULTS_PREFIX)
Results: results/<input name>.classified.csv and .summary.json; failures: failed/<input name>.error.json.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import io
import itertools
import json
import math
import re
import time
import unicodedata
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Iterator
from urllib.parse import unquote_plus

from .contract import (
    CLAIMS_PREFIX,
    CONFIDENCE_BINS,
    DEFAULT_RANGE_BYTES,
    FAILED_PREFIX,
    LABEL_SET_SUFFIX,
    LABELS_PREFIX,
    LEAST_CONFIDENT_ROWS,
    MAX_PARTS,
    MIB,
    MIN_RANGE_BYTES,
    PLANNED_MAX_PARTS,
    RESULTS_PREFIX,
    WORK_PREFIX,
)
from .csvfile import (
    SNIFF_BYTES,
    InputError,
    detect_encoding,
    fallback_encoding,
    find_text_column,
    format_row,
    iter_records,
)
from .errors import IncompleteRunError
from .labelset import LIST_SEPARATOR, LabelSetError
from .labelset import parse as parse_label_set
from .index import RangeIndexer, header_end, line_break

READ_BLOCK_BYTES = 8 * MIB  # one ranged GET of Split's pass
READ_AHEAD = 4  # ranged GETs in flight: one stream alone cannot keep a vCPU busy
S3_MIN_PART_BYTES = 5 * MIB
HEADER_LIMIT_BYTES = 16 * MIB
UNCLOSED_QUOTE_PARSE_BYTES = 64 * MIB  # an error path: parse at most this much to name the line
CSV_CONTENT_TYPE = "text/csv; charset=utf-8"


# ----------------------------------------------------------------------------- keys


def input_name(key: str) -> str:
    """`incoming/songs.csv` -> `incoming/songs`: result names keep the input's path."""
    return key[:-4] if key.lower().endswith(".csv") else key


def result_key(key: str) -> str:
    return f"{RESULTS_PREFIX}{input_name(key)}.classified.csv"


def summary_key(key: str) -> str:
    return f"{RESULTS_PREFIX}{input_name(key)}.summary.json"


def report_key(key: str) -> str:
    return f"{RESULTS_PREFIX}{input_name(key)}.report.html"


def failure_key(key: str) -> str:
    return f"{FAILED_PREFIX}{input_name(key)}.error.json"


def run_prefix(run_id: str) -> str:
    return f"{WORK_PREFIX}{run_id}/"


def manifest_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}manifest.json"


def label_set_copy_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}labels.json"


def label_set_key(key: str, input_prefix: str = "") -> str | None:
    """The label set an upload selects: the first folder below the input prefix names it
    (`moods/songs.csv` -> `labels/moods.json`); a file directly under the prefix uses the
    model's own labels (None)."""
    rest = key[len(input_prefix):] if input_prefix and key.startswith(input_prefix) else key
    folder, slash, _ = rest.partition("/")
    return f"{LABELS_PREFIX}{folder}{LABEL_SET_SUFFIX}" if slash and folder else None


def run_info_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}run.json"


def part_stats_key(run_id: str, index: int) -> str:
    return f"{run_prefix(run_id)}parts/{index:05d}.json"


def range_error_key(run_id: str, index: int) -> str:
    return f"{run_prefix(run_id)}errors/{index:05d}.json"


def claim_key(source: dict[str, Any]) -> str:
    """The marker of one object version (bucket, key, version): duplicate events find it."""
    identity = f"{source['bucket']}/{source['key']}/{version_token(source)}"
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()
    return f"{CLAIMS_PREFIX}{digest}.json"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _put_json(s3: Any, bucket: str, key: str, value: Any, **extra: Any) -> None:
    body = json.dumps(value, ensure_ascii=False, indent=1).encode("utf-8")
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", **extra)


def _get_json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _is_missing(exc: Exception) -> bool:
    return _error_code(exc) in ("404", "NoSuchKey", "NotFound", "NoSuchUpload", "NoSuchVersion")


def _head(s3: Any, bucket: str, key: str, version_id: str | None = None) -> dict[str, Any] | None:
    args = {"Bucket": bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
    try:
        return s3.head_object(**args)
    except s3.exceptions.ClientError as exc:
        if _is_missing(exc):
            return None
        raise


def _delete_if_exists(s3: Any, bucket: str, key: str) -> None:
    # Deleting a missing key would leave a delete marker in a versioned bucket.
    if _head(s3, bucket, key) is not None:
        s3.delete_object(Bucket=bucket, Key=key)


def _same_etag(a: str | None, b: str | None) -> bool:
    # S3 events carry ETags without the quotes that HeadObject puts around them.
    return (a or "").strip('"') == (b or "").strip('"')


def version_token(source: dict[str, Any]) -> str:
    """What identifies the object version: its version id, else (unversioned bucket) its ETag."""
    return str(source.get("version_id") or (source.get("etag") or "").strip('"'))


# ----------------------------------------------------------------------------- the input object


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


def _resolve_input(s3: Any, bucket: str, key: str, version_id: str | None) -> tuple[str, dict[str, Any]]:
    """(key, head) of the event's object. S3 events URL-encode keys ('my songs.csv' -> 'my+songs.csv')."""
    for candidate in dict.fromkeys((key, unquote_plus(key))):
        head = _head(s3, bucket, candidate, version_id)
        if head is not None:
            return candidate, head
    raise InputError(f"s3://{bucket}/{key} does not exist (was it deleted before the run started?)")


# ----------------------------------------------------------------------------- Split


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
) -> dict[str, Any]:
    """Claim the object version, check the label set the upload selects (label_set_key), index
    the file into byte ranges, write the manifest and start the result's multipart upload.
    Returns keys and counts only (it travels through the state).

    A second run of the same object version (a duplicate event) returns at once with
    `duplicate_of` set to the run that owns it. A file that cannot be read as a CSV raises
    InputError with the reason.
    """
    started = time.perf_counter()
    key, head = _resolve_input(s3, input_bucket, input_key, version_id)
    size = int(head["ContentLength"])
    source = {
        "bucket": input_bucket,
        "key": key,
        "version_id": version_id or head.get("VersionId") or None,
        "etag": head.get("ETag"),
    }
    owner = _claim(s3, work_bucket, source, run_id)
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
    try:
        label_set = _copy_label_set(s3, source, input_prefix, work_bucket, run_id)
        indexed = _index_input(s3, source, size, work_bucket, run_id, range_bytes, text_column, started)
        if label_set:
            indexed["job"]["label_set"] = label_set
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
        if not _is_missing(exc):
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
) -> dict[str, Any]:
    started_at = _now()
    if size == 0:
        raise InputError("the file is empty: expected a CSV with a header row")
    # Never fewer than MIN_RANGE_BYTES (S3's part minimum), never more than PLANNED_MAX_PARTS ranges.
    range_bytes = max(range_bytes, MIN_RANGE_BYTES, math.ceil(size / PLANNED_MAX_PARTS))

    blocks = read_blocks(s3, source, size)
    first = next(blocks)
    encoding = detect_encoding(first[:SNIFF_BYTES])
    indexed_source = source
    if encoding.startswith("utf-16"):
        indexed_source = {"bucket": work_bucket, "key": f"{run_prefix(run_id)}input.utf8.csv", "version_id": None}
        blocks = _transcode_to_work_area(s3, _chain(first, blocks), encoding, indexed_source)
        first = next(blocks, b"")
        row_encoding = "utf-8"
    else:
        row_encoding = encoding
    newline = line_break(first[:SNIFF_BYTES])
    header, first = _read_header(first, blocks, row_encoding, newline)
    text_index = find_text_column(header, text_column)

    indexer = RangeIndexer(range_bytes, newline)
    for block in _chain(first, blocks):
        indexer.feed(block)
    ranges = indexer.finish()
    if indexer.in_quotes:
        raise InputError(_unclosed_quote_reason(s3, indexed_source, ranges[-1], row_encoding))
    if indexed_source is not source:
        indexed_source["etag"] = s3.head_object(Bucket=work_bucket, Key=indexed_source["key"])["ETag"]

    out_key = result_key(source["key"])
    upload_id = s3.create_multipart_upload(
        Bucket=work_bucket,
        Key=out_key,
        ContentType=CSV_CONTENT_TYPE,
        Metadata={"execution": run_id, "input-version": version_token(source)},
    )["UploadId"]
    job = {
        "run_id": run_id,
        "bucket": work_bucket,
        "source": indexed_source,
        "encoding": row_encoding,
        "columns": len(header),
        "text_column_index": text_index,
        "result_key": out_key,
        "upload_id": upload_id,
    }
    run = {
        "run_id": run_id,
        "input": {**source, "bytes": size, "encoding": encoding},
        "job": job,
        "header": header,
        "text_column": header[text_index],
        "range_bytes": range_bytes,
        "ranges": len(ranges),
        "started_at": started_at,
        "split_seconds": round(time.perf_counter() - started, 3),
    }
    _put_json(s3, work_bucket, run_info_key(run_id), run)
    _put_json(s3, work_bucket, manifest_key(run_id), [r.as_item() for r in ranges])
    return {"ranges": len(ranges), "job": job}


def _claim(s3: Any, bucket: str, source: dict[str, Any], run_id: str) -> str:
    """Write the version's claim marker unless one exists; return the run that owns it."""
    key = claim_key(source)
    claim = {"run_id": run_id, "input": source, "claimed_at": _now()}
    try:
        _put_json(s3, bucket, key, claim, IfNoneMatch="*")
        return run_id
    except s3.exceptions.ClientError as exc:
        if _error_code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
            raise
    return str(_get_json(s3, bucket, key)["run_id"])


def _claim_owner(s3: Any, bucket: str, key: str) -> str | None:
    try:
        return str(_get_json(s3, bucket, key)["run_id"])
    except s3.exceptions.ClientError as exc:
        if _is_missing(exc):
            return None
        raise


def release_claim(s3: Any, bucket: str, key: str, run_id: str) -> None:
    """Drop this run's claim, so that the same version can be run again (a new execution)."""
    if _claim_owner(s3, bucket, key) == run_id:
        s3.delete_object(Bucket=bucket, Key=key)


def _unclosed_quote_reason(s3: Any, source: dict[str, Any], last: Any, encoding: str) -> str:
    """The file ends inside quotes: the parser names the line where the field opens, if the
    last range is small enough to parse here; else the line after which it opens."""
    if last.end - last.start <= UNCLOSED_QUOTE_PARSE_BYTES:
        text = read_range(s3, source, last.start, last.end).decode(_codec(encoding), "surrogateescape")
        try:
            for _ in iter_records(io.StringIO(text.lstrip("\ufeff"), newline=""), first_line=last.first_line):
                pass
        except InputError as exc:
            return str(exc)
    return (
        f"a quoted field opened after line {last.first_line} is never closed (unbalanced double "
        "quote); every field that starts with \" must end with \", and quotes inside it are written \"\""
    )


def _codec(encoding: str) -> str:
    # Ranges after the first have no BOM: decode them all as plain UTF-8 (range 0 strips it).
    return "utf-8" if encoding in ("utf-8", "utf-8-sig") else encoding


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _read_header(
    first: bytes, blocks: Iterator[bytes], encoding: str, newline: bytes
) -> tuple[list[str], bytes]:
    """The header's fields, and the bytes read so far (the header is part of range 0)."""
    buffer = first
    while (end := header_end(buffer, newline)) is None and len(buffer) < HEADER_LIMIT_BYTES:
        more = next(blocks, None)
        if more is None:
            end = len(buffer)
            break
        buffer += more
    if end is None:
        raise InputError(f"no end of the header row in the first {HEADER_LIMIT_BYTES // MIB} MiB: is this a CSV?")
    text = buffer[:end].decode(encoding, errors="replace")
    header = next(iter_records(io.StringIO(text, newline="")), None)
    if header is None:
        raise InputError("the file has no header row (it is empty or only blank lines)")
    return header.fields, buffer


def _transcode_to_work_area(
    s3: Any, blocks: Iterator[bytes], encoding: str, target: dict[str, Any]
) -> Iterator[bytes]:
    """UTF-16 cannot be indexed with single-byte quotes: re-encode it once as UTF-8 into the
    work area (multipart, 8 MiB parts) and yield the UTF-8 blocks as they are written."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    upload_id = s3.create_multipart_upload(Bucket=target["bucket"], Key=target["key"])["UploadId"]
    parts: list[dict[str, Any]] = []
    pending = bytearray()

    def upload(data: bytes) -> None:
        number = len(parts) + 1
        etag = s3.upload_part(
            Bucket=target["bucket"], Key=target["key"], UploadId=upload_id, PartNumber=number, Body=data
        )["ETag"]
        parts.append({"ETag": etag, "PartNumber": number})

    try:
        done = False
        while not done:
            block = next(blocks, None)
            done = block is None
            try:
                text = decoder.decode(block or b"", final=done)
            except UnicodeDecodeError as exc:
                raise InputError(f"the file is not valid {encoding} text ({exc.reason})") from None
            data = text.encode("utf-8")
            pending += data
            if len(pending) >= READ_BLOCK_BYTES or (done and (pending or not parts)):
                upload(bytes(pending))
                pending.clear()
            if data:
                yield data
        s3.complete_multipart_upload(
            Bucket=target["bucket"], Key=target["key"], UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        s3.abort_multipart_upload(Bucket=target["bucket"], Key=target["key"], UploadId=upload_id)
        raise


# ----------------------------------------------------------------------------- Classify


def format_probability(p: float) -> str:
    return f"{p:.4f}"


_NOT_A_NAME = re.compile(r"[^0-9a-z_]+")


def probability_columns(labels: Sequence[str]) -> list[str]:
    """`prob_<label>` per label, safe as a SQL or Parquet column name: accents dropped, lower
    case, every run of other characters one underscore ("hip hop" -> prob_hip_hop, "Música"
    -> prob_musica); a clash gets a number."""
    return list(_probability_names(tuple(labels)))


@functools.lru_cache(maxsize=8)  # appended_columns asks for every row: derive the names once
def _probability_names(labels: tuple[str, ...]) -> tuple[str, ...]:
    names: list[str] = []
    for label in labels:
        ascii_label = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
        base = "prob_" + (_NOT_A_NAME.sub("_", ascii_label.lower()).strip("_") or "label")
        name, n = base, 2
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return tuple(names)


def appended_columns(labels: Sequence[str], prediction: Any = None, warning: str | None = None,
                     multi_label: bool = False) -> list[tuple[str, str]]:
    """(name, value) of every column appended to a row, in order: the header's names and a
    row's values come from this one place. Without a prediction, the values are empty.
    Multi-label adds `labels`: every label at or above the threshold, best first, `;` between."""
    ok = prediction is not None and prediction.error is None
    probabilities = prediction.probabilities if ok else [None] * len(labels)
    listed = [("labels", LIST_SEPARATOR.join(prediction.labels_above or ()) if ok else "")] if multi_label else []
    return [
        ("label", prediction.label if ok else ""),
        ("score", format_probability(prediction.score) if ok else ""),
        *listed,
        *((name, format_probability(p) if ok else "")
          for name, p in zip(_probability_names(tuple(labels)), probabilities, strict=True)),
        ("language", prediction.language if ok else ""),
        ("error", (prediction.error or "") if prediction is not None else ""),
        ("warning", warning or ""),
    ]


def output_columns(header: list[str], labels: Sequence[str], multi_label: bool = False) -> list[str]:
    """The appended columns' names; prefixed when the input already has a column of that name."""
    added = [name for name, _ in appended_columns(labels, multi_label=multi_label)]
    existing = {name.strip().lower() for name in header}
    prefix, n = "", 1
    while existing.intersection(f"{prefix}{name}".lower() for name in added):
        # "label" taken: predicted_label...; "predicted_label" taken too: predicted2_label...
        prefix, n = ("predicted_" if n == 1 else f"predicted{n}_"), n + 1
    return [f"{prefix}{name}" for name in added]


def _best_text(field: str, encoding: str) -> tuple[str, str | None]:
    """A field decoded with surrogateescape: itself, or, when some bytes were not valid in the
    file's encoding, those bytes decoded as Windows-1252/Latin-1, with a warning."""
    try:
        field.encode("utf-8")
        return field, None
    except UnicodeEncodeError:
        raw = field.encode(encoding, "surrogateescape")
        fallback = fallback_encoding(raw)
        return raw.decode(fallback), f"text decoded as {fallback}: not valid {encoding}"


def classify_bytes(
    data: bytes,
    classifier: Any,
    *,
    encoding: str,
    columns: int,
    text_column_index: int,
    first_line: int = 1,
    with_header: bool = False,
) -> tuple[bytes, dict[str, Any]]:
    """One range's output bytes and counts. Each record's original bytes pass through
    unchanged (invalid bytes included); the classifier gets the best decoding of each text.
    With `with_header`, the range starts the file: its header (and BOM) come first."""
    bom = b""
    if with_header and data.startswith(codecs.BOM_UTF8):
        bom, data = codecs.BOM_UTF8, data[len(codecs.BOM_UTF8):]
    codec = _codec(encoding)
    text = data.decode(codec, "surrogateescape")
    blank_lines: list[int] = []
    records = iter_records(io.StringIO(text, newline=""), first_line=first_line, on_blank=blank_lines.append)
    head: list[str] = []
    columns_added = None
    if with_header:
        header = next(records, None)
        if header is None:
            raise InputError("the file has no header row (it is empty or only blank lines)")
        columns_added = output_columns(header.fields, list(classifier.labels), classifier.multi_label)
        head.append(f"{header.raw},{format_row(columns_added)}\n")
    rows, texts, warnings, line_numbers = [], [], [], []
    for record in records:
        if len(record.fields) != columns and not record.raw.strip():
            blank_lines.append(record.line)  # spaces only, in a file of several columns: a blank line
            continue
        if len(record.fields) != columns:
            raise InputError(
                f"line {record.line}: {len(record.fields)} fields, but the header has {columns} "
                "columns; quote fields that contain commas (\"like, this\")"
            )
        best, warning = _best_text(record.fields[text_column_index], codec)
        rows.append(record.raw)
        texts.append(best)
        warnings.append(warning)
        line_numbers.append(record.line)
    predictions = classifier.classify(texts)
    rejected: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    warned: Counter[str] = Counter()
    confidence = [0] * CONFIDENCE_BINS
    lines = head
    for raw, prediction, warning in zip(rows, predictions, warnings, strict=True):
        if warning:
            warned[warning] += 1
        if prediction.error is None:
            labels[prediction.label] += 1
            languages[prediction.language or "unknown"] += 1
            confidence[min(CONFIDENCE_BINS - 1, int(prediction.score * CONFIDENCE_BINS))] += 1
        else:
            rejected[prediction.error] += 1
        added = [value for _, value in appended_columns(classifier.labels, prediction, warning, classifier.multi_label)]
        lines.append(f"{raw},{format_row(added)}\n")
    body = bom + "".join(lines).encode("utf-8", "surrogateescape")
    counts = {
        "rows": len(rows),
        "classified": sum(labels.values()),
        "rejected": dict(rejected),
        "labels": dict(labels),
        "languages": dict(languages),
        "warnings": dict(warned),
        "blank_lines": len(blank_lines),
        "columns_added": columns_added,
        "confidence_counts": confidence,
        "least_confident": least_confident(line_numbers, texts, predictions),
    }
    return body, counts


def least_confident(line_numbers: Sequence[int], texts: Sequence[str], predictions: Sequence[Any],
                    keep: int = LEAST_CONFIDENT_ROWS) -> list[dict[str, Any]]:
    """The `keep` classified rows with the lowest score (line number, label, score, a preview):
    the rows a reviewer should look at first."""
    scored = [(p.score, line, p.label, text) for line, text, p in zip(line_numbers, texts, predictions)
              if p.error is None]
    return [{"line": line, "label": label, "score": round(score, 4), "text": " ".join(text.split())[:200]}
            for score, line, label, text in sorted(scored, key=lambda item: (item[0], item[1]))[:keep]]


def classify_range(s3: Any, classifier: Any, *, job: dict[str, Any], byte_range: dict[str, int]) -> dict[str, Any]:
    """Classify one byte range into part <index + 1> of the result's upload, then write its
    stats (the stats mark the part done). Rejected rows (empty lyrics, ...) get an error and
    empty predictions; they are counted, never dropped. A retry replaces the same part."""
    started = time.perf_counter()
    index = byte_range["index"]
    data = read_range(s3, job["source"], byte_range["start"], byte_range["end"])
    try:
        body, counts = classify_bytes(
            data,
            classifier,
            encoding=job["encoding"],
            columns=job["columns"],
            text_column_index=job["text_column_index"],
            first_line=byte_range["first_line"],
            with_header=byte_range["start"] == 0,
        )
    except InputError as exc:
        # Kept in the work area: the failure report gives this reason, not just "a range failed".
        _put_json(s3, job["bucket"], range_error_key(job["run_id"], index), {"index": index, "reason": str(exc)})
        raise
    etag = s3.upload_part(
        Bucket=job["bucket"],
        Key=job["result_key"],
        UploadId=job["upload_id"],
        PartNumber=index + 1,
        Body=body,
    )["ETag"]
    stats = {
        "index": index,
        "part": index + 1,
        "etag": etag,
        "bytes_in": len(data),
        "bytes_out": len(body),
        **counts,
        "model": classifier.identity,
        "seconds": round(time.perf_counter() - started, 3),
    }
    _put_json(s3, job["bucket"], part_stats_key(job["run_id"], index), stats)
    return {
        "index": index,
        "rows": counts["rows"],
        "classified": counts["classified"],
        "bytes": len(data),
        "seconds": stats["seconds"],
    }


# ----------------------------------------------------------------------------- Merge


def superseded_by(s3: Any, source: dict[str, Any]) -> str | None:
    """The version (or ETag) of a newer upload of the same key, if there is one. Only the run
    of the current version may write results, so an older version finishing last never
    overwrites a newer one's."""
    head = _head(s3, source["bucket"], source["key"])
    if head is None:  # deleted since: nothing newer to protect
        return None
    if source.get("version_id"):
        current = head.get("VersionId")
        return current if current and current != source["version_id"] else None
    return None if _same_etag(head.get("ETag"), source.get("etag")) else head.get("ETag")


def _list_parts(s3: Any, bucket: str, key: str, upload_id: str) -> dict[int, dict[str, Any]]:
    parts: dict[int, dict[str, Any]] = {}
    marker = 0
    while True:
        page = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker, MaxParts=1000)
        for part in page.get("Parts", []):
            parts[part["PartNumber"]] = part
        if not page.get("IsTruncated"):
            return parts
        marker = int(page["NextPartNumberMarker"])


def _read_all_stats(s3: Any, bucket: str, run_id: str, items: list[dict[str, int]]) -> list[dict[str, Any] | None]:
    def read(item: dict[str, int]) -> dict[str, Any] | None:
        try:
            return _get_json(s3, bucket, part_stats_key(run_id, item["index"]))
        except s3.exceptions.NoSuchKey:
            return None

    # Thousands of small GETs: in parallel, so Merge stays well under a minute at 10,000 ranges.
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(read, items))


def verify_parts(
    items: list[dict[str, int]], stats: list[dict[str, Any] | None], parts: dict[int, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every range's stats, checked against the upload's parts, or IncompleteRunError saying
    which ranges are missing or inconsistent."""
    missing = [item for item, stat in zip(items, stats) if stat is None or stat["part"] not in parts]
    if missing:
        where = ", ".join(f"range {m['index']} (rows from line {m['first_line']})" for m in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise IncompleteRunError(
            f"{len(missing)} of {len(items)} ranges were not classified: {where}{more}; "
            "no result was written (see the failed Classify executions in the Map Run)"
        )
    checked = [stat for stat in stats if stat is not None]
    for item, stat in zip(items, checked):
        part = parts[stat["part"]]
        accounted = stat["classified"] + sum(stat["rejected"].values())
        if accounted != stat["rows"] or stat["bytes_in"] != item["end"] - item["start"]:
            raise IncompleteRunError(
                f"range {item['index']}: {item['end'] - item['start']} bytes split, {stat['bytes_in']} read; "
                f"{stat['rows']} rows parsed, {accounted} accounted for; no result was written"
            )
        if part["ETag"] != stat["etag"] or part["Size"] != stat["bytes_out"]:
            raise IncompleteRunError(
                f"range {item['index']}: part {stat['part']} is not the one its stats describe "
                "(a retry replaced it mid-way); no result was written"
            )
        if part["Size"] < S3_MIN_PART_BYTES and item is not items[-1]:
            raise IncompleteRunError(
                f"range {item['index']}: its output is {part['Size']:,} bytes, under S3's 5 MiB "
                "minimum for a part that is not the last (mostly blank lines?); no result was written"
            )
    extra = set(parts) - {stat["part"] for stat in checked}
    if extra:
        raise IncompleteRunError(f"the upload has parts no range wrote: {sorted(extra)[:5]}; no result was written")
    models = {stat["model"]["sha256"] for stat in checked}
    if len(models) > 1:
        raise IncompleteRunError(
            f"ranges were classified by {len(models)} different models (a deployment changed the "
            "model during the run); upload the file again to classify it with one model"
        )
    return checked


def merge_results(s3: Any, *, bucket: str, run_id: str) -> dict[str, Any]:
    """Check that every row is accounted for, then complete the result's multipart upload and
    write the summary. Nothing final is written unless the check passes; a run whose input
    has a newer version aborts its upload and writes nothing (the newer run writes)."""
    started = time.perf_counter()
    run = _get_json(s3, bucket, run_info_key(run_id))
    job, source = run["job"], run["input"]
    newer = superseded_by(s3, source)
    if newer:
        abort_upload(s3, job)
        return {
            "status": "superseded",
            "superseded_by": newer,
            "rows_in": 0,
            "rows_classified": 0,
            "rows_rejected": 0,
            "bucket": bucket,
            "result_key": None,
            "summary_key": None,
            "report_key": None,
        }
    reason = first_range_error(s3, bucket, run_id)
    if reason:  # moto lets a Map with failed children succeed; Step Functions fails it
        raise InputError(reason)
    items = _get_json(s3, bucket, manifest_key(run_id))
    if len(items) > MAX_PARTS:  # Split plans fewer; a guard, not a path
        raise IncompleteRunError(f"{len(items)} ranges exceed S3's {MAX_PARTS:,} parts per upload")
    stats = verify_parts(
        items,
        _read_all_stats(s3, bucket, run_id, items),
        _list_parts(s3, bucket, job["result_key"], job["upload_id"]),
    )
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=job["result_key"],
        UploadId=job["upload_id"],
        MultipartUpload={"Parts": [{"ETag": stat["etag"], "PartNumber": stat["part"]} for stat in stats]},
    )
    model = stats[0]["model"]
    labels = list(model["labels"])
    rejected: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    label_counts: Counter[str] = Counter({label: 0 for label in labels})
    language_counts: Counter[str] = Counter()
    confidence = [0] * CONFIDENCE_BINS
    for stat in stats:
        confidence = [a + b for a, b in zip(confidence, stat["confidence_counts"], strict=True)]
        rejected.update(stat["rejected"])
        warnings.update(stat["warnings"])
        label_counts.update(stat["labels"])
        language_counts.update(stat["languages"])
    rows_in = sum(stat["rows"] for stat in stats)
    rows_classified = sum(stat["classified"] for stat in stats)
    summary = {
        "input": source,
        "output": {"bucket": bucket, "key": job["result_key"], "bytes": sum(stat["bytes_out"] for stat in stats)},
        "execution_id": run_id,
        "rows_in": rows_in,
        "rows_classified": rows_classified,
        "rows_rejected": sum(rejected.values()),
        "rejected_by_reason": dict(rejected),
        "rows_with_warnings": sum(warnings.values()),
        # lines with nothing (or only spaces) on them: not rows, so neither classified nor rejected
        "blank_lines_skipped": sum(stat.get("blank_lines", 0) for stat in stats),
        "warnings_by_reason": dict(warnings),
        "label_counts": dict(label_counts),
        # ISO 639-1 codes of the classified rows, most frequent first ("unknown": no letters)
        "language_counts": dict(language_counts.most_common()),
        "text_column": run["text_column"],
        "columns_added": stats[0]["columns_added"],
        "label_set": model.get("label_set"),  # None: the model's own labels
        "model": model,
        # the top label's score: a histogram over CONFIDENCE_BINS equal bins, and the rows to review
        "confidence_histogram": {"edges": [round(k / CONFIDENCE_BINS, 4) for k in range(CONFIDENCE_BINS + 1)],
                                 "counts": confidence},
        "least_confident": sorted((row for stat in stats for row in stat["least_confident"]),
                                  key=lambda row: (row["score"], row["line"]))[:LEAST_CONFIDENT_ROWS],
        "ranges": run["ranges"],
        "range_bytes": run["range_bytes"],
        "timings": {
            "started_at": run["started_at"],
            "finished_at": _now(),
            "split_seconds": run["split_seconds"],
            "classify_seconds_sum": round(sum(stat["seconds"] for stat in stats), 3),
            "classify_seconds_max": max(stat["seconds"] for stat in stats),
            "merge_seconds": round(time.perf_counter() - started, 3),
        },
    }
    summary_out = summary_key(source["key"])
    _put_json(s3, bucket, summary_out, summary)
    from .report import render_run_report

    s3.put_object(Bucket=bucket, Key=report_key(source["key"]), Body=render_run_report(summary).encode("utf-8"),
                  ContentType="text/html; charset=utf-8")
    # A failure report of an earlier version must not sit beside this success.
    _delete_if_exists(s3, bucket, failure_key(source["key"]))
    return {
        "status": "complete",
        "rows_in": rows_in,
        "rows_classified": rows_classified,
        "rows_rejected": summary["rows_rejected"],
        "bucket": bucket,
        "result_key": job["result_key"],
        "summary_key": summary_out,
        "report_key": report_key(source["key"]),
    }


def first_range_error(s3: Any, bucket: str, run_id: str) -> str | None:
    """The reason of the first range Classify refused as bad input, if any."""
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{run_prefix(run_id)}errors/", MaxKeys=1)
    for entry in listed.get("Contents", []):
        return str(_get_json(s3, bucket, entry["Key"])["reason"])
    return None


def abort_upload(s3: Any, job: dict[str, Any]) -> None:
    try:
        s3.abort_multipart_upload(Bucket=job["bucket"], Key=job["result_key"], UploadId=job["upload_id"])
    except s3.exceptions.ClientError as exc:
        if not _is_missing(exc):
            raise


# ----------------------------------------------------------------------------- failures


def failure_reason(error: str, cause: str) -> str:
    """The readable sentence inside a Step Functions Error/Cause pair."""
    try:
        parsed = json.loads(cause)
    except (TypeError, ValueError):
        return cause or error
    if isinstance(parsed, dict) and parsed.get("errorMessage"):
        return str(parsed["errorMessage"])
    return cause or error


def write_failure_report(
    s3: Any,
    *,
    bucket: str,
    source: dict[str, Any],
    run_id: str,
    error: str,
    cause: str,
    job: dict[str, Any] | None = None,
    claim: str | None = None,
) -> dict[str, Any]:
    """Abort the result's upload, release the claim, and write failed/<input name>.error.json
    (and remove an older version's result, so no stale success sits beside this failure).
    A run superseded by a newer upload writes its report into its work area instead."""
    reason = failure_reason(error, cause)
    range_error = first_range_error(s3, bucket, run_id)
    if range_error and error in ("States.ExceedToleratedFailureThreshold", "IncompleteRunError"):
        error, reason = "InputError", range_error  # the input's fault: say where
    elif error == "States.ExceedToleratedFailureThreshold":
        reason = f"some ranges could not be classified, so no result was written ({reason})"
    claim = claim or claim_key(source)
    owner = _claim_owner(s3, bucket, claim)
    if owner == run_id:  # release it, so that a new execution of this version may run
        s3.delete_object(Bucket=bucket, Key=claim)
    if job and owner in (run_id, None):
        abort_upload(s3, job)
    # Another run owns this version (this one is a duplicate that failed early), or a newer
    # version exists: this failure must not touch the results.
    newer = superseded_by(s3, source) or (f"run {owner}" if owner not in (run_id, None) else None)
    report = {
        "input": source,
        "execution_id": run_id,
        "error": error,
        "reason": reason,
        "cause": cause,
        "failed_at": _now(),
        "superseded_by": newer,  # a newer version (or the run that owns this one): no stale report
    }
    if newer:
        key = f"{run_prefix(run_id)}error.json"
        _put_json(s3, bucket, key, report)
    else:
        key = failure_key(source["key"])
        _put_json(s3, bucket, key, report)
        for stale in (result_key(source["key"]), summary_key(source["key"]), report_key(source["key"])):
            _delete_if_exists(s3, bucket, stale)
    return {"error": error or "Failed", "reason": reason, "report_key": key}
