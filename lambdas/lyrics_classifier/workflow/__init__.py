"""The workflow's steps as plain functions over an S3 client, one module per step: Split
(split.py), Classify (classify.py), Merge (merge.py) and the failure report (failure.py),
over the keys (keys.py) and S3 helpers (s3io.py) they share. Lambda handlers and the local
runner both call these; Step Functions (the ASL file) is the only thing that decides their order.

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
- The failure report (ReportFailure, the Catch target; Cleanup, for the endings no Catch
  sees) aborts the upload, releases the claim and says why.

Every step may run more than once (Step Functions retries a Lambda task whose answer was
lost, and a timeout can strike after the work is done): each reaches the same end state
when run again; each module says how.

Work area, in the output bucket:
    runs/claims/<sha256 of bucket/key/version>.json   first writer wins (If-None-Match)
    runs/<run id>/run.json          what Split learned (header, encoding, ranges, upload id)
    runs/<run id>/manifest.json     the Distributed Map's items: one byte range each
    runs/<run id>/parts/<n>.json    a range's counts, written after its part: marks it done
    runs/<run id>/input.csv         gzip or UTF-16 input, decompressed / transcoded once (else: none)
    runs/<run id>/error.json        the failure report of a run a newer upload superseded
    runs/map-results/<map run id>/  the Map's ResultWriter output (contract.MAP_RESULTS_PREFIX)
Results: results/<input name>.classified.csv and .summary.json; failures: failed/<input name>.error.json.
"""

from .classify import (
    appended_columns,
    classify_bytes,
    classify_range,
    format_probability,
    least_confident,
    output_columns,
    probability_columns,
    row_codec,
)
from .failure import clean_up_ended_execution, failure_reason, report_of_run, write_failure_report
from .keys import (
    claim_key,
    failure_key,
    input_name,
    label_set_key,
    manifest_key,
    part_stats_key,
    report_key,
    result_key,
    run_info_key,
    run_prefix,
    summary_key,
    version_token,
)
from .merge import first_range_error, merge_results, verify_parts
from .s3io import READ_BLOCK_BYTES, abort_upload, read_range, release_claim, superseded_by
from .split import load_label_set, split_input
from ..errors import IncompleteRunError

__all__ = [
    "IncompleteRunError", "READ_BLOCK_BYTES", "abort_upload", "appended_columns", "claim_key",
    "clean_up_ended_execution", "classify_bytes", "classify_range", "failure_key", "failure_reason",
    "first_range_error",
    "format_probability", "input_name", "label_set_key", "least_confident", "load_label_set",
    "manifest_key", "merge_results", "output_columns", "part_stats_key", "probability_columns",
    "read_range", "release_claim", "report_key", "report_of_run", "result_key", "row_codec", "run_info_key",
    "run_prefix", "split_input", "summary_key", "superseded_by", "verify_parts", "version_token",
    "write_failure_report",
]
