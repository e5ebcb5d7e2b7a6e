"""Cleanup: the target of the EventBridge rule on the state machine's "Execution Status
Change" (FAILED, TIMED_OUT, ABORTED). Endings the ASL's Catch never sees (the execution's
timeout, a stop, a failure inside ReportFailure) still leave a failure report, no pending
multipart upload and no claim."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ..workflow import clean_up_ended_execution
from . import settings
from ._aws import event_source, logger, s3_client
from .events import ExecutionStatusChangeEvent


@logger.inject_lambda_context(clear_state=True)
def handler(event: ExecutionStatusChangeEvent, context: LambdaContext) -> dict[str, Any]:
    """event: EventBridge's "Step Functions Execution Status Change" of this state machine."""
    detail = event["detail"]
    logger.append_keys(run_id=detail["name"], status=detail["status"])
    try:
        started_by = json.loads(detail.get("input") or "null")
    except ValueError:
        started_by = None
    if not (isinstance(started_by, dict) and started_by.get("detail-type") == "Object Created"):
        # A Distributed Map child (its input is one range) or an execution started by hand:
        # the parent's own event covers the run.
        logger.info("not an upload's execution: nothing to clean up")
        return {"cleaned_up": False, "reason": "not started by an upload"}
    result = clean_up_ended_execution(
        s3_client(),
        bucket=settings.current().output_bucket,
        run_id=detail["name"],
        status=detail["status"],
        source=event_source(started_by),
        error=detail.get("error"),
        cause=detail.get("cause"),
    )
    logger.info("execution ended", extra=result)
    return result
