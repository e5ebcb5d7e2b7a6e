"""Split: claim the uploaded object version, check its label set, index it into byte ranges, start the result's upload."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ..contract import DEFAULT_RANGE_BYTES, ENV_INPUT_PREFIX, ENV_RANGE_BYTES, ENV_TEXT_COLUMN
from ..workflow import split_input
from ._aws import event_source, logger, output_bucket, s3_client


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """event: {"event": <EventBridge "Object Created" event>, "run_id": <execution name>}"""
    source = event_source(event["event"])
    logger.append_keys(run_id=event["run_id"])
    result = split_input(
        s3_client(),
        input_bucket=source["bucket"],
        input_key=source["key"],
        version_id=source["version_id"],
        work_bucket=output_bucket(),
        run_id=event["run_id"],
        range_bytes=int(os.environ.get(ENV_RANGE_BYTES) or DEFAULT_RANGE_BYTES),
        text_column=os.environ.get(ENV_TEXT_COLUMN) or None,
        input_prefix=os.environ.get(ENV_INPUT_PREFIX) or "",
    )
    logger.info("input indexed", extra={k: result[k] for k in ("input_key", "bytes", "ranges", "duplicate_of")})
    return result
