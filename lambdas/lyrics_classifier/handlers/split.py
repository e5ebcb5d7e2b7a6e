"""Split: the uploaded CSV -> chunks and a manifest in the run's work area."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ..workflow import DEFAULT_CHUNK_ROWS, split_input
from ._aws import logger, output_bucket, s3_client


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """event: {"event": <EventBridge "Object Created" event>, "run_id": <execution name>}"""
    detail = event["event"]["detail"]
    logger.append_keys(run_id=event["run_id"])
    result = split_input(
        s3_client(),
        input_bucket=detail["bucket"]["name"],
        input_key=detail["object"]["key"],
        work_bucket=output_bucket(),
        run_id=event["run_id"],
        chunk_rows=int(os.environ.get("CHUNK_ROWS") or DEFAULT_CHUNK_ROWS),
        text_column=os.environ.get("TEXT_COLUMN") or None,
    )
    logger.info("input split", extra={k: result[k] for k in ("input_key", "rows", "chunks")})
    return result
