"""Merge: check that every range's part and counts are there, complete the result's
multipart upload (no row bytes move) and write the summary and the run report."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..contract import CONFIDENCE_BINS, LEAST_CONFIDENT_ROWS, MAX_PARTS, MIB
from ..errors import IncompleteRunError, InputError
from .keys import failure_key, manifest_key, part_stats_key, report_key, run_info_key, run_prefix, summary_key
from .s3io import (abort_upload, completed_part, delete_if_exists, error_code, get_json, get_json_or_none, head_or_none, put_json,
                   superseded_by, utc_now)

S3_MIN_PART_BYTES = 5 * MIB


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


def _ranges_and_stats(s3: Any, bucket: str, run_id: str) -> tuple[list[dict[str, int]], list[dict[str, Any] | None]]:
    """The manifest's ranges, and each one's stats (None: never classified)."""
    items = get_json(s3, bucket, manifest_key(run_id))
    return items, _read_all_stats(s3, bucket, run_id, items)


def _read_all_stats(s3: Any, bucket: str, run_id: str, items: list[dict[str, int]]) -> list[dict[str, Any] | None]:
    def read(item: dict[str, int]) -> dict[str, Any] | None:
        try:
            return get_json(s3, bucket, part_stats_key(run_id, item["index"]))
        except s3.exceptions.NoSuchKey:
            return None

    # Thousands of small GETs: in parallel, so Merge stays well under a minute at 10,000 ranges.
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(read, items))


def unclassified_reason(items: list[dict[str, int]], missing: list[dict[str, int]]) -> str:
    where = ", ".join(f"range {m['index']} (rows from line {m['first_line']})" for m in missing[:5])
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    return (f"{len(missing)} of {len(items)} ranges were not classified: {where}{more}; "
            "no result was written (see the failed Classify executions in the Map Run)")


def unclassified_ranges(s3: Any, bucket: str, run_id: str) -> str | None:
    """Which ranges have no stats (never classified), said as verify_parts says it; None if
    the run has no manifest yet or every range was classified."""
    items = get_json_or_none(s3, bucket, manifest_key(run_id))
    if not items:
        return None
    missing = [item for item, stat in zip(items, _read_all_stats(s3, bucket, run_id, items)) if stat is None]
    return unclassified_reason(items, missing) if missing else None


def verify_parts(
    items: list[dict[str, int]], stats: list[dict[str, Any] | None], parts: dict[int, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every range's stats, checked against the upload's parts, or IncompleteRunError saying
    which ranges are missing or inconsistent."""
    missing = [item for item, stat in zip(items, stats) if stat is None or stat["part"] not in parts]
    if missing:
        raise IncompleteRunError(unclassified_reason(items, missing))
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


def merge_results(s3: Any, *, bucket: str, run_id: str, job: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check that every row is accounted for, then complete the result's multipart upload and
    write the summary. Nothing final is written unless the check passes; a run whose input
    has a newer version aborts its upload and writes nothing (the newer run writes).

    At least once: Step Functions may run Merge again after it succeeded (a lost response, a
    timeout after S3 completed the upload). A second run finds the result this run completed
    and answers as the first did, writing the summary if the first did not get that far.
    `job` is the one the state carries (Split's answer to this execution); run.json's otherwise.
    """
    started = time.perf_counter()
    run = get_json(s3, bucket, run_info_key(run_id))
    job, source = job or run["job"], run["input"]
    completed = completed_by(s3, job, run_id)
    if completed is not None:
        items, stats = _ranges_and_stats(s3, bucket, run_id)
        return _finish(s3, run, job, verify_completed(items, stats, completed), started, completed_now=False)
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
    if reason:  # a range refused its input: the run fails with that reason
        raise InputError(reason)
    items, stats = _ranges_and_stats(s3, bucket, run_id)
    if len(items) > MAX_PARTS:  # Split plans fewer; a guard, not a path
        raise IncompleteRunError(f"{len(items)} ranges exceed S3's {MAX_PARTS:,} parts per upload")
    checked = verify_parts(items, stats, _list_parts(s3, bucket, job["result_key"], job["upload_id"]))
    try:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key=job["result_key"],
            UploadId=job["upload_id"],
            MultipartUpload={"Parts": [completed_part(stat) for stat in checked]},
        )
    except s3.exceptions.ClientError as exc:
        # The SDK retried a Complete that S3 had carried out (its answer was lost): the upload
        # is gone because it is the result now.
        if error_code(exc) != "NoSuchUpload" or completed_by(s3, job, run_id) is None:
            raise
    return _finish(s3, run, job, checked, started, completed_now=True)


def completed_by(s3: Any, job: dict[str, Any], run_id: str) -> dict[str, Any] | None:
    """The head of the result if this run's upload completed it (the object names this
    execution and is made of this run's parts), else None."""
    head = head_or_none(s3, job["bucket"], job["result_key"])
    if head is None or head.get("Metadata", {}).get("execution") != run_id:
        return None
    return head


def verify_completed(items: list[dict[str, int]], stats: list[dict[str, Any] | None],
                     head: dict[str, Any]) -> list[dict[str, Any]]:
    """Every range's stats, checked against a result this run already completed (its parts
    are no longer listable): as many parts, and as many bytes, as the stats recorded."""
    checked = [stat for stat in stats if stat is not None]
    size = sum(stat["bytes_out"] for stat in checked)
    parts = str(head.get("ETag", "")).strip('"').rpartition("-")[2]
    if len(checked) != len(items) or head["ContentLength"] != size or parts != str(len(items)):
        raise IncompleteRunError(
            f"{head.get('ContentLength'):,} bytes in {parts} parts were completed, but the ranges' counts "
            f"name {size:,} bytes in {len(checked)} of {len(items)} ranges (the work area expired?); "
            "the result stands, its summary cannot be written"
        )
    return checked


def _finish(s3: Any, run: dict[str, Any], job: dict[str, Any], stats: list[dict[str, Any]], started: float,
            *, completed_now: bool) -> dict[str, Any]:
    """Write the summary and the run report beside the completed result (again, if a first
    Merge wrote them: the same counts), and answer the state."""
    bucket, source, run_id = job["bucket"], run["input"], run["run_id"]
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
            "finished_at": utc_now(),
            "split_seconds": run["split_seconds"],
            "classify_seconds_sum": round(sum(stat["seconds"] for stat in stats), 3),
            "classify_seconds_max": max(stat["seconds"] for stat in stats),
            "merge_seconds": round(time.perf_counter() - started, 3),
        },
    }
    summary_out = summary_key(source["key"])
    earlier = _summary_of(s3, bucket, summary_out, run_id)
    if earlier is not None:
        summary = earlier  # a first Merge wrote it: keep its timings
    else:
        put_json(s3, bucket, summary_out, summary)
    from ..report import render_run_report

    s3.put_object(Bucket=bucket, Key=report_key(source["key"]), Body=render_run_report(summary).encode("utf-8"),
                  ContentType="text/html; charset=utf-8")
    # A failure report of an earlier version must not sit beside this success.
    delete_if_exists(s3, bucket, failure_key(source["key"]))
    return {
        "status": "complete",
        "rows_in": rows_in,
        "rows_classified": rows_classified,
        "rows_rejected": summary["rows_rejected"],
        "bucket": bucket,
        "result_key": job["result_key"],
        "summary_key": summary_out,
        "report_key": report_key(source["key"]),
        "completed_now": completed_now,  # False: a repeat of a Merge that completed the upload
    }


def _summary_of(s3: Any, bucket: str, key: str, run_id: str) -> dict[str, Any] | None:
    """The summary at `key` if this run wrote it."""
    summary = get_json_or_none(s3, bucket, key)
    return summary if summary and summary.get("execution_id") == run_id else None


def first_range_error(s3: Any, bucket: str, run_id: str) -> str | None:
    """The reason of the first range Classify refused as bad input, if any."""
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{run_prefix(run_id)}errors/", MaxKeys=1)
    for entry in listed.get("Contents", []):
        return str(get_json(s3, bucket, entry["Key"])["reason"])
    return None


