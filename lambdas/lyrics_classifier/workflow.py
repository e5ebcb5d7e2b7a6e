"""The workflow's steps as plain functions over an S3 client: Split, Classify, Merge and the
failure report. Lambda handlers and the local runner both call these; Step Functions (the
ASL file) is the only thing that decides their order.

Work area, in the output bucket:
    runs/<run id>/run.json              what Split learned about the input (header, encoding, ...)
    runs/<run id>/manifest.json         the Distributed Map's items: one small object per chunk
    runs/<run id>/chunks/<n>.csv        the chunk's records, each exactly as it was in the input
    runs/<run id>/parts/<n>.csv         the same records with the classification columns appended
    runs/<run id>/parts/<n>.stats.json  written after the part: its counts (so it marks the part done)
Results: results/<input name>.classified.csv and .summary.json; failures: failed/<input name>.error.json.
"""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any, BinaryIO, Iterator
from urllib.parse import unquote_plus

from .csvfile import (
    SNIFF_BYTES,
    InputError,
    Record,
    detect_encoding,
    fallback_encoding,
    find_text_column,
    format_row,
    iter_records,
    open_text,
)

DEFAULT_CHUNK_ROWS = 500
MULTIPART_PART_BYTES = 8 * 1024 * 1024  # S3 needs >= 5 MiB for every part but the last


class IncompleteRunError(RuntimeError):
    """Some chunk was not classified; nothing final is written."""


# ----------------------------------------------------------------------------- keys


def input_name(key: str) -> str:
    """`incoming/songs.csv` -> `incoming/songs`: result names keep the input's path."""
    return key[:-4] if key.lower().endswith(".csv") else key


def result_key(key: str) -> str:
    return f"results/{input_name(key)}.classified.csv"


def summary_key(key: str) -> str:
    return f"results/{input_name(key)}.summary.json"


def failure_key(key: str) -> str:
    return f"failed/{input_name(key)}.error.json"


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}/"


def chunk_key(run_id: str, index: int) -> str:
    return f"{run_prefix(run_id)}chunks/{index:06d}.csv"


def part_key(run_id: str, index: int) -> str:
    return f"{run_prefix(run_id)}parts/{index:06d}.csv"


def part_stats_key(run_id: str, index: int) -> str:
    return f"{run_prefix(run_id)}parts/{index:06d}.stats.json"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _put_json(s3: Any, bucket: str, key: str, value: Any) -> None:
    body = json.dumps(value, ensure_ascii=False, indent=1).encode("utf-8")
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def _get_json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


# ----------------------------------------------------------------------------- Split


class _StreamingBody(io.RawIOBase):
    """A botocore StreamingBody (plus bytes already read from it) as a raw binary stream."""

    def __init__(self, head: bytes, body: Any):
        self._head = head
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


def _resolve_input_key(s3: Any, bucket: str, key: str) -> str:
    """S3 event notifications may URL-encode keys ('my songs.csv' -> 'my+songs.csv')."""
    if _exists(s3, bucket, key):
        return key
    decoded = unquote_plus(key)
    if decoded != key and _exists(s3, bucket, decoded):
        return decoded
    raise InputError(f"s3://{bucket}/{key} does not exist (was it deleted before the run started?)")


def _open_input(s3: Any, bucket: str, key: str) -> tuple[bytes, BinaryIO, int]:
    obj = s3.get_object(Bucket=bucket, Key=key)
    body = obj["Body"]
    head = body.read(SNIFF_BYTES)
    stream = io.BufferedReader(_StreamingBody(head, body), buffer_size=1024 * 1024)
    return head, stream, obj["ContentLength"]


def split_input(
    s3: Any,
    *,
    input_bucket: str,
    input_key: str,
    work_bucket: str,
    run_id: str,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    text_column: str | None = None,
) -> dict[str, Any]:
    """Stream the input CSV into chunks of `chunk_rows` records and write the manifest.

    Memory holds one chunk. Input that is not UTF-8 is re-read as Windows-1252/Latin-1; a
    file that cannot be read as a CSV raises InputError with the line and the reason.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    started = time.perf_counter()
    started_at = _now()
    key = _resolve_input_key(s3, input_bucket, input_key)
    head, stream, size = _open_input(s3, input_bucket, key)
    encoding = detect_encoding(head)
    try:
        layout = _write_chunks(s3, stream, encoding, work_bucket, run_id, chunk_rows, text_column)
    except UnicodeDecodeError as exc:
        if encoding != "utf-8":
            raise InputError(f"the file is not valid {encoding} text ({exc.reason} at byte {exc.start} of a block)") from None
        # The head looked like UTF-8 but a later byte is not: the whole file is re-read in
        # the 8-bit encoding. Chunk keys depend only on row numbers, so they are rewritten.
        encoding = fallback_encoding(head)
        stream = _open_input(s3, input_bucket, key)[1]
        try:
            layout = _write_chunks(s3, stream, encoding, work_bucket, run_id, chunk_rows, text_column)
        except UnicodeDecodeError as exc:
            raise InputError(f"the file is neither UTF-8 nor {encoding} text: {exc}") from None
    run = {
        "run_id": run_id,
        "input": {"bucket": input_bucket, "key": key, "bytes": size, "encoding": encoding},
        "started_at": started_at,
        "split_seconds": round(time.perf_counter() - started, 3),
        **layout,
    }
    _put_json(s3, work_bucket, f"{run_prefix(run_id)}run.json", run)
    _put_json(s3, work_bucket, f"{run_prefix(run_id)}manifest.json", layout.pop("items"))
    return {
        "run_id": run_id,
        "bucket": work_bucket,
        "manifest_key": f"{run_prefix(run_id)}manifest.json",
        "input_key": key,
        "rows": layout["rows"],
        "chunks": layout["chunks"],
        "text_column_index": layout["text_column_index"],
    }


def _write_chunks(
    s3: Any,
    stream: BinaryIO,
    encoding: str,
    bucket: str,
    run_id: str,
    chunk_rows: int,
    text_column: str | None,
) -> dict[str, Any]:
    text = open_text(stream, encoding)
    records = iter_records(text)
    header = next(records, None)
    if header is None:
        raise InputError("the file has no header row (it is empty or only blank lines)")
    text_index = find_text_column(header.fields, text_column)
    width = len(header.fields)
    items: list[dict[str, int]] = []
    rows = 0
    pending: list[Record] = []

    def flush() -> None:
        index = len(items)
        body = "".join(record.raw + "\n" for record in pending).encode("utf-8")
        s3.put_object(Bucket=bucket, Key=chunk_key(run_id, index), Body=body)
        first_line = pending[0].line if pending else header.line + 1
        items.append({"index": index, "rows": len(pending), "first_line": first_line})
        pending.clear()

    for record in records:
        if len(record.fields) != width:
            raise InputError(
                f"line {record.line}: {len(record.fields)} fields, but the header has {width} "
                "columns; quote fields that contain commas (\"like, this\")"
            )
        pending.append(record)
        rows += 1
        if len(pending) == chunk_rows:
            flush()
    if pending or not items:
        # A header-only file still gets one (empty) chunk, so Classify reports the model's
        # labels and the output has the same columns as any other run.
        flush()
    return {
        "header": header.fields,
        "header_raw": header.raw,
        "text_column": header.fields[text_index],
        "text_column_index": text_index,
        "rows": rows,
        "chunks": len(items),
        "chunk_rows": chunk_rows,
        "items": items,
    }


# ----------------------------------------------------------------------------- Classify


def format_probability(p: float) -> str:
    return f"{p:.4f}"


def classify_chunk(
    s3: Any, classifier: Any, *, bucket: str, run_id: str, index: int, text_column_index: int
) -> dict[str, Any]:
    """Classify one chunk and write its part, then its stats (the stats mark the part done).

    Rejected rows (empty lyrics, ...) get an error and empty predictions; they are counted,
    never dropped. A retried invocation rewrites the same two keys.
    """
    started = time.perf_counter()
    body = s3.get_object(Bucket=bucket, Key=chunk_key(run_id, index))["Body"].read().decode("utf-8")
    records = list(iter_records(io.StringIO(body, newline="")))
    predictions = classifier.classify([record.fields[text_column_index] for record in records])
    empty_probabilities = [""] * len(classifier.labels)
    rejected: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    lines = []
    for record, prediction in zip(records, predictions, strict=True):
        if prediction.error is None:
            labels[prediction.label] += 1
            added = [
                prediction.label,
                format_probability(prediction.score),
                *map(format_probability, prediction.probabilities),
                "",
            ]
        else:
            rejected[prediction.error] += 1
            added = ["", "", *empty_probabilities, prediction.error]
        lines.append(f"{record.raw},{format_row(added)}\n")
    s3.put_object(Bucket=bucket, Key=part_key(run_id, index), Body="".join(lines).encode("utf-8"))
    stats = {
        "index": index,
        "rows": len(records),
        "classified": sum(labels.values()),
        "rejected": dict(rejected),
        "labels": dict(labels),
        "model": classifier.identity,
        "seconds": round(time.perf_counter() - started, 3),
    }
    _put_json(s3, bucket, part_stats_key(run_id, index), stats)
    return {k: stats[k] for k in ("index", "rows", "classified", "seconds")}


# ----------------------------------------------------------------------------- Merge


def output_columns(header: list[str], labels: list[str]) -> list[str]:
    """The appended columns; prefixed when the input already has a column of the same name."""
    added = ["label", "score", *(f"prob_{label}" for label in labels), "error"]
    existing = {name.strip().lower() for name in header}
    if existing.intersection(name.lower() for name in added):
        added = [f"predicted_{name}" for name in added]
    return added


class _MultipartWriter:
    """Streams text into one S3 object in parts of at least 8 MiB; aborts on failure, so a
    failed merge leaves no object behind."""

    def __init__(self, s3: Any, bucket: str, key: str, content_type: str):
        self._s3, self._bucket, self._key = s3, bucket, key
        self._content_type = content_type
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.bytes_written = 0

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.bytes_written += len(data)
        if len(self._buffer) >= MULTIPART_PART_BYTES:
            self._upload_part()

    def _upload_part(self) -> None:
        if self._upload_id is None:
            self._upload_id = self._s3.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ContentType=self._content_type
            )["UploadId"]
        number = len(self._parts) + 1
        etag = self._s3.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=bytes(self._buffer),
        )["ETag"]
        self._parts.append({"ETag": etag, "PartNumber": number})
        self._buffer.clear()

    def complete(self) -> None:
        if self._upload_id is None:  # small output: one plain PUT
            self._s3.put_object(
                Bucket=self._bucket, Key=self._key, Body=bytes(self._buffer), ContentType=self._content_type
            )
            return
        if self._buffer:
            self._upload_part()
        self._s3.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )

    def abort(self) -> None:
        if self._upload_id is not None:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)


def _read_all_stats(s3: Any, bucket: str, run_id: str, items: list[dict[str, int]]) -> list[dict[str, Any]]:
    """Every chunk's stats, or IncompleteRunError naming the chunks that were not classified."""
    stats, missing = [], []
    for item in items:
        try:
            stats.append(_get_json(s3, bucket, part_stats_key(run_id, item["index"])))
        except s3.exceptions.NoSuchKey:
            missing.append(item)
    if missing:
        where = ", ".join(f"chunk {m['index']} (rows from line {m['first_line']})" for m in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise IncompleteRunError(
            f"{len(missing)} of {len(items)} chunks were not classified: {where}{more}; "
            "no result was written (see the failed Classify executions in the Map Run)"
        )
    for item, stat in zip(items, stats):
        accounted = stat["classified"] + sum(stat["rejected"].values())
        if stat["rows"] != item["rows"] or accounted != item["rows"]:
            raise IncompleteRunError(
                f"chunk {item['index']}: split wrote {item['rows']} rows but classify accounted for "
                f"{accounted}; no result was written"
            )
    models = {stat["model"]["sha256"] for stat in stats}
    if len(models) > 1:
        raise IncompleteRunError(
            f"chunks were classified by {len(models)} different models (a deployment changed the "
            "model during the run); upload the file again to classify it with one model"
        )
    return stats


def merge_results(s3: Any, *, bucket: str, run_id: str) -> dict[str, Any]:
    """Check that every row is accounted for, then stream the parts, in order, into the
    classified CSV and write the summary. Nothing final is written unless the check passes."""
    started = time.perf_counter()
    run = _get_json(s3, bucket, f"{run_prefix(run_id)}run.json")
    items = _get_json(s3, bucket, f"{run_prefix(run_id)}manifest.json")
    stats = _read_all_stats(s3, bucket, run_id, items)
    model = stats[0]["model"] if stats else None
    labels = list(model["labels"]) if model else []
    columns = output_columns(run["header"], labels)

    out_key = result_key(run["input"]["key"])
    writer = _MultipartWriter(s3, bucket, out_key, "text/csv; charset=utf-8")
    try:
        if run["input"]["encoding"] == "utf-8-sig":
            writer.write("\ufeff".encode("utf-8"))  # keep the BOM that spreadsheet apps look for
        writer.write(f"{run['header_raw']},{format_row(columns)}\n".encode("utf-8"))
        for item in items:
            part = s3.get_object(Bucket=bucket, Key=part_key(run_id, item["index"]))["Body"]
            for block in iter(lambda: part.read(MULTIPART_PART_BYTES), b""):
                writer.write(block)
        writer.complete()
    except BaseException:
        writer.abort()
        raise

    rejected: Counter[str] = Counter()
    label_counts: Counter[str] = Counter({label: 0 for label in labels})
    for stat in stats:
        rejected.update(stat["rejected"])
        label_counts.update(stat["labels"])
    rows_classified = sum(stat["classified"] for stat in stats)
    summary = {
        "input": run["input"],
        "output": {"bucket": bucket, "key": out_key, "bytes": writer.bytes_written},
        "execution_id": run_id,
        "rows_in": run["rows"],
        "rows_classified": rows_classified,
        "rows_rejected": sum(rejected.values()),
        "rejected_by_reason": dict(rejected),
        "label_counts": dict(label_counts),
        "text_column": run["text_column"],
        "columns_added": columns,
        "model": model,
        "chunks": run["chunks"],
        "chunk_rows": run["chunk_rows"],
        "timings": {
            "started_at": run["started_at"],
            "finished_at": _now(),
            "split_seconds": run["split_seconds"],
            "classify_seconds_sum": round(sum(stat["seconds"] for stat in stats), 3),
            "merge_seconds": round(time.perf_counter() - started, 3),
        },
    }
    summary_out = summary_key(run["input"]["key"])
    _put_json(s3, bucket, summary_out, summary)
    return {
        "rows_in": summary["rows_in"],
        "rows_classified": rows_classified,
        "rows_rejected": summary["rows_rejected"],
        "bucket": bucket,
        "result_key": out_key,
        "summary_key": summary_out,
    }


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
    s3: Any, *, bucket: str, input_bucket: str, input_key: str, run_id: str, error: str, cause: str
) -> dict[str, Any]:
    """Write failed/<input name>.error.json and return the error and reason for the Fail state."""
    reason = failure_reason(error, cause)
    if error == "States.ExceedToleratedFailureThreshold":
        reason = f"some chunks could not be classified, so no result was written ({reason})"
    report = {
        "input": {"bucket": input_bucket, "key": input_key},
        "execution_id": run_id,
        "error": error,
        "reason": reason,
        "cause": cause,
        "failed_at": _now(),
    }
    key = failure_key(input_key)
    _put_json(s3, bucket, key, report)
    return {"error": error or "Failed", "reason": reason, "report_key": key}
