"""Classify: read one byte range of the input, classify its rows and upload the range's
output as one part of the result's multipart upload, then write the range's stats."""

from __future__ import annotations

import codecs
import dataclasses
import functools
import io
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any, Callable

from ..contract import CONFIDENCE_BINS, LEAST_CONFIDENT_ROWS
from ..csvfile import InputError, fallback_encoding, format_row, iter_records
from ..labelset import LIST_SEPARATOR
from .keys import part_stats_key, range_error_key
from .s3io import CHECKSUM, put_json, read_range


DELIMITER_WORDS = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "pipes"}


def row_codec(encoding: str) -> str:
    # Ranges after the first have no BOM: decode them all as plain UTF-8 (range 0 strips it).
    return "utf-8" if encoding in ("utf-8", "utf-8-sig") else encoding


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


@dataclasses.dataclass
class ParsedRange:
    """A range's rows before classification: each row's original text, the text to classify,
    its decoding warning and its line; the bytes and lines that come before the rows."""

    head: bytes = b""
    rows: list[str] = dataclasses.field(default_factory=list)
    texts: list[Any] = dataclasses.field(default_factory=list)
    warnings: list[str | None] = dataclasses.field(default_factory=list)
    line_numbers: list[int] = dataclasses.field(default_factory=list)
    blank_lines: list[int] = dataclasses.field(default_factory=list)
    columns_added: list[str] | None = None


def classify_bytes(
    data: bytes,
    classifier: Any,
    *,
    encoding: str,
    columns: int,
    text_column_index: int,
    first_line: int = 1,
    with_header: bool = False,
    delimiter: str = ",",
    preamble: int = 0,
) -> tuple[bytes, dict[str, Any]]:
    """One range's output bytes and counts. Each record's original bytes pass through
    unchanged (invalid bytes included); the classifier gets the best decoding of each text;
    the added columns are joined with the input's delimiter. With `with_header`, the range
    starts the file: its BOM, the `preamble` bytes before the header (Excel's `sep=` line) and
    the header come first."""
    parsed = ParsedRange()
    if with_header and preamble:  # the BOM, if any, and Excel's `sep=` line: copied as they are
        parsed.head, data = data[:preamble], data[preamble:]
        first_line += 1
    elif with_header and data.startswith(codecs.BOM_UTF8):
        parsed.head, data = codecs.BOM_UTF8, data[len(codecs.BOM_UTF8):]
    codec = row_codec(encoding)
    text = data.decode(codec, "surrogateescape")
    records = iter_records(io.StringIO(text, newline=""), first_line=first_line,
                           on_blank=parsed.blank_lines.append, delimiter=delimiter)
    if with_header:
        header = next(records, None)
        if header is None:
            raise InputError("the file has no header row (it is empty or only blank lines)")
        parsed.columns_added = output_columns(header.fields, list(classifier.labels), classifier.multi_label)
        line = f"{header.raw}{delimiter}{format_row(parsed.columns_added, delimiter)}\n"
        parsed.head += line.encode("utf-8", "surrogateescape")
    for record in records:
        if len(record.fields) != columns and not record.raw.strip():
            parsed.blank_lines.append(record.line)  # spaces only, in a file of several columns: a blank line
            continue
        if len(record.fields) != columns:
            raise InputError(
                f"line {record.line}: {len(record.fields)} fields, but the header has {columns} "
                f"columns; quote fields that contain {DELIMITER_WORDS[delimiter]} (\"like{delimiter} this\")"
            )
        best, warning = _best_text(record.fields[text_column_index], codec)
        parsed.rows.append(record.raw)
        parsed.texts.append(best)
        parsed.warnings.append(warning)
        parsed.line_numbers.append(record.line)

    def render(raw: str, added: list[tuple[str, str]]) -> str:
        return f"{raw}{delimiter}{format_row([value for _, value in added], delimiter)}"

    return classify_parsed(parsed, classifier, render)


def classify_parsed(parsed: ParsedRange, classifier: Any,
                    render: Callable[[str, list[tuple[str, str]]], str]) -> tuple[bytes, dict[str, Any]]:
    """Classify a parsed range; each row becomes render(its original text, the appended
    (name, value) pairs). Returns the range's output bytes and counts."""
    predictions = classifier.classify(parsed.texts)
    rejected: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    warned: Counter[str] = Counter()
    confidence = [0] * CONFIDENCE_BINS
    lines = []
    for raw, prediction, warning in zip(parsed.rows, predictions, parsed.warnings, strict=True):
        if warning:
            warned[warning] += 1
        if prediction.error is None:
            labels[prediction.label] += 1
            languages[prediction.language or "unknown"] += 1
            confidence[min(CONFIDENCE_BINS - 1, int(prediction.score * CONFIDENCE_BINS))] += 1
        else:
            rejected[prediction.error] += 1
        added = appended_columns(classifier.labels, prediction, warning, classifier.multi_label)
        lines.append(render(raw, added) + "\n")
    body = parsed.head + "".join(lines).encode("utf-8", "surrogateescape")
    counts = {
        "rows": len(parsed.rows),
        "classified": sum(labels.values()),
        "rejected": dict(rejected),
        "labels": dict(labels),
        "languages": dict(languages),
        "warnings": dict(warned),
        "blank_lines": len(parsed.blank_lines),
        "columns_added": parsed.columns_added,
        "confidence_counts": confidence,
        "least_confident": least_confident(parsed.line_numbers, parsed.texts, predictions),
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
        if job.get("format") == "jsonl":
            from .jsonlines import classify_json_lines

            body, counts = classify_json_lines(data, classifier, encoding=job["encoding"], fields=job["fields"],
                                               text_field=job["text_field"], first_line=byte_range["first_line"])
        else:
            body, counts = classify_bytes(
                data,
                classifier,
                encoding=job["encoding"],
                columns=job["columns"],
                text_column_index=job["text_column_index"],
                first_line=byte_range["first_line"],
                with_header=byte_range["start"] == 0,
                delimiter=job.get("delimiter", ","),
                preamble=job.get("preamble", 0),
            )
    except InputError as exc:
        # Kept in the work area: the failure report gives this reason, not just "a range failed".
        put_json(s3, job["bucket"], range_error_key(job["run_id"], index), {"index": index, "reason": str(exc)})
        raise
    uploaded = s3.upload_part(
        Bucket=job["bucket"],
        Key=job["result_key"],
        UploadId=job["upload_id"],
        PartNumber=index + 1,
        Body=body,
        **CHECKSUM,
    )
    stats = {
        "index": index,
        "part": index + 1,
        "etag": uploaded["ETag"],
        "checksum_crc32": uploaded.get("ChecksumCRC32"),
        "bytes_in": len(data),
        "bytes_out": len(body),
        **counts,
        "model": classifier.identity,
        "seconds": round(time.perf_counter() - started, 3),
    }
    put_json(s3, job["bucket"], part_stats_key(job["run_id"], index), stats)
    return {
        "index": index,
        "rows": counts["rows"],
        "classified": counts["classified"],
        "bytes": len(data),
        "seconds": stats["seconds"],
    }


