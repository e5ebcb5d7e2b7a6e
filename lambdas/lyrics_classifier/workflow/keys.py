"""Every key the workflow reads or writes: results beside the input's name, the work area
under runs/<run id>/, and the claims that make one run own one object version."""

from __future__ import annotations

import hashlib
from typing import Any

from ..contract import (CLAIMS_PREFIX, FAILED_PREFIX, INPUT_SUFFIXES, LABEL_SET_SUFFIX, LABELS_PREFIX, RESULTS_PREFIX,
                        WORK_PREFIX)


def input_name(key: str) -> str:
    """`incoming/songs.csv` -> `incoming/songs`: result names keep the input's path."""
    return key[: -len(input_suffix(key))] if input_suffix(key) else key


def input_suffix(key: str) -> str:
    """`.csv`, `.tsv`, `.csv.gz` or `.tsv.gz` as the key ends (in any case), or empty."""
    return next((key[-len(s):] for s in sorted(INPUT_SUFFIXES, key=len, reverse=True) if key.lower().endswith(s)), "")


def result_key(key: str) -> str:
    """results/<input name>.classified.<the input's format: csv or tsv>"""
    return f"{RESULTS_PREFIX}{input_name(key)}.classified{input_suffix(key).lower().removesuffix('.gz') or '.csv'}"


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


def run_report_key(run_id: str) -> str:
    """Where a run's failure report goes when it must not touch failed/ (a superseded run)."""
    return f"{run_prefix(run_id)}error.json"


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


def version_token(source: dict[str, Any]) -> str:
    """What identifies the object version: its version id, else (unversioned bucket) its ETag."""
    return str(source.get("version_id") or (source.get("etag") or "").strip('"'))

