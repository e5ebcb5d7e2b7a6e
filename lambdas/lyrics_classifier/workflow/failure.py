"""The failure report: abort the result's upload, release the claim and say why the run
failed in failed/<input name>.error.json."""

from __future__ import annotations

import json
from typing import Any

from .keys import claim_key, failure_key, report_key, result_key, run_info_key, run_report_key, summary_key
from .merge import completed_by, first_range_error, unclassified_ranges
from .s3io import (abort_upload, claim_owner, decoded_source, delete_if_exists, get_json_or_none, put_json,
                   release_claim, superseded_by, utc_now)


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
    A run superseded by a newer upload writes its report into its work area instead.

    At least once: running it again reaches the same state. A result that this very run
    completed (its Merge finished, then the state failed anyway, e.g. a timeout after S3
    completed the upload) is whole: it is kept, and the report says so."""
    source = decoded_source(s3, source)  # before Split's answer, the event's key may be URL-encoded
    reason = failure_reason(error, cause)
    range_error = first_range_error(s3, bucket, run_id)
    if range_error and error in ("States.ExceedToleratedFailureThreshold", "IncompleteRunError"):
        error, reason = "InputError", range_error  # the input's fault: say where
    elif error == "States.ExceedToleratedFailureThreshold":
        reason = (unclassified_ranges(s3, bucket, run_id)
                  or f"some ranges could not be classified, so no result was written ({reason})")
    claim = claim or claim_key(source)
    owner = claim_owner(s3, bucket, claim)
    if owner == run_id:  # release it, so that a new execution of this version may run
        s3.delete_object(Bucket=bucket, Key=claim)
    if job and owner in (run_id, None):
        abort_upload(s3, job)
    # Another run owns this version (this one is a duplicate that failed early), or a newer
    # version exists: this failure must not touch the results.
    newer = superseded_by(s3, source) or (f"run {owner}" if owner not in (run_id, None) else None)
    kept = job and completed_by(s3, job, run_id) is not None
    if kept:
        reason = reason.replace("; no result was written", "").replace(", so no result was written", "")
        reason += f" (the classified file {job['result_key']} was completed by this run before the failure and is kept)"
    report = {
        "input": source,
        "execution_id": run_id,
        "error": error,
        "reason": reason,
        "cause": cause,
        "failed_at": utc_now(),
        "superseded_by": newer,  # a newer version (or the run that owns this one): no stale report
        "result_kept": job["result_key"] if kept else None,
    }
    if newer:
        key = run_report_key(run_id)
        put_json(s3, bucket, key, report)
    else:
        key = failure_key(source["key"])
        put_json(s3, bucket, key, report)
        if not kept:
            for stale in (result_key(source["key"]), summary_key(source["key"]), report_key(source["key"])):
                delete_if_exists(s3, bucket, stale)
    return {"error": error or "Failed", "reason": reason, "report_key": key}


# Execution endings the state machine's Catch never sees (EventBridge "Step Functions
# Execution Status Change"): the execution's TimeoutSeconds, a StopExecution, a failure
# inside the failure path. -> (error, reason) of the report.
ENDING_REPORTS = {
    "TIMED_OUT": ("States.Timeout", "the execution reached its time limit (context execution_timeout_s) "
                  "before the result was complete; no result was written"),
    "ABORTED": ("States.Aborted", "the execution was stopped (StopExecution) before the result was "
                "complete; no result was written"),
    "FAILED": ("States.Runtime", "the execution failed outside its failure handling; no result was written"),
}


def report_of_run(s3: Any, bucket: str, source: dict[str, Any], run_id: str) -> dict[str, Any] | None:
    """The failure report this run already wrote, if any (failed/... or its work area)."""
    for key in (failure_key(source["key"]), run_report_key(run_id)):
        report = get_json_or_none(s3, bucket, key)
        if report and report.get("execution_id") == run_id:
            return {**report, "report_key": key}
    return None


def clean_up_ended_execution(
    s3: Any,
    *,
    bucket: str,
    run_id: str,
    status: str,
    source: dict[str, Any],
    error: str | None = None,
    cause: str | None = None,
) -> dict[str, Any]:
    """After an execution ended FAILED, TIMED_OUT or ABORTED: make sure it left what a caught
    failure leaves (a failure report, no multipart upload, no claim), whatever stopped it.
    If ReportFailure already wrote this run's report, only the (idempotent) abort and claim
    release run again. Safe to run any number of times, in any order with ReportFailure."""
    run = get_json_or_none(s3, bucket, run_info_key(run_id))
    # Split's decoded key once it finished, else the event's, decoded if S3 encoded it
    source = {**source, "key": run["input"]["key"]} if run is not None else decoded_source(s3, source)
    job = run["job"] if run else None
    earlier = report_of_run(s3, bucket, source, run_id)
    if earlier is not None:
        if job and completed_by(s3, job, run_id) is None:
            abort_upload(s3, job)
        release_claim(s3, bucket, claim_key(source), run_id)
        return {"error": earlier["error"], "reason": earlier["reason"], "report_key": earlier["report_key"],
                "cleaned_up": False}
    default_error, default_reason = ENDING_REPORTS.get(status, ENDING_REPORTS["FAILED"])
    if status == "FAILED" and (error or cause):  # ReportFailure itself failed: say so, and why
        cause = (f"the run failed and so did its failure handling ({failure_reason(error or '', cause or '')}); "
                 "no result was written")
    report = write_failure_report(
        s3, bucket=bucket, source=source, run_id=run_id, error=error or default_error,
        cause=cause or default_reason, job=job, claim=claim_key(source),
    )
    return {**report, "cleaned_up": True}
