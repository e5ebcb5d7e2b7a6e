"""ReportFailure: the Catch target. Aborts the result's upload, writes failed/<input name>.error.json."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ..workflow import write_failure_report
from . import settings
from ._aws import event_source, logger, s3_client
from .events import ReportFailureEvent


@logger.inject_lambda_context(clear_state=True)
def handler(event: ReportFailureEvent, context: LambdaContext) -> dict[str, Any]:
    """event: {"event": <the execution state: input event [+ split]>, "run_id", "failure": {"Error", "Cause"}}"""
    state = event["event"]
    split = state.get("split") or {}
    source = event_source(state)
    if split.get("input_key"):  # Split's key is the decoded one when the event's was URL-encoded
        source["key"] = split["input_key"]
    failure = event.get("failure") or {}
    logger.append_keys(run_id=event["run_id"])
    result = write_failure_report(
        s3_client(),
        bucket=settings.current().output_bucket,
        source=source,
        run_id=event["run_id"],
        error=failure.get("Error", ""),
        cause=failure.get("Cause", ""),
        job=split.get("job"),
        claim=split.get("claim_key"),
    )
    logger.error("run failed", extra=result)
    return result
