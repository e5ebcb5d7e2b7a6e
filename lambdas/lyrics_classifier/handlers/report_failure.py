"""ReportFailure: the Catch target. Writes failed/<input name>.error.json with a readable reason."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ..workflow import write_failure_report
from ._aws import logger, output_bucket, s3_client


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """event: {"event": <the execution input>, "run_id", "failure": {"Error", "Cause"}}"""
    detail = event["event"]["detail"]
    failure = event.get("failure") or {}
    logger.append_keys(run_id=event["run_id"])
    result = write_failure_report(
        s3_client(),
        bucket=output_bucket(),
        input_bucket=detail["bucket"]["name"],
        # Split's key is the decoded one when the event's key was URL-encoded.
        input_key=event["event"].get("split", {}).get("input_key") or detail["object"]["key"],
        run_id=event["run_id"],
        error=failure.get("Error", ""),
        cause=failure.get("Cause", ""),
    )
    logger.error("run failed", extra=result)
    return result
