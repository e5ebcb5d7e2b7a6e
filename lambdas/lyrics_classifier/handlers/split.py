"""Split: claim the uploaded object version, check its label set, index it into byte ranges, start the result's upload."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ..workflow import split_input
from . import settings
from ._aws import event_source, logger, s3_client
from .events import SplitEvent


@logger.inject_lambda_context(clear_state=True)
def handler(event: SplitEvent, context: LambdaContext) -> dict[str, Any]:
    """event: {"event": <EventBridge "Object Created" event>, "run_id": <execution name>}"""
    config = settings.current()
    source = event_source(event["event"])
    logger.append_keys(run_id=event["run_id"])
    result = split_input(
        s3_client(),
        input_bucket=source["bucket"],
        input_key=source["key"],
        version_id=source["version_id"],
        work_bucket=config.output_bucket,
        run_id=event["run_id"],
        range_bytes=config.range_bytes,
        text_column=config.text_column,
        delimiter=config.delimiter,
        input_prefix=config.input_prefix,
    )
    logger.info("input indexed", extra={k: result[k] for k in ("input_key", "bytes", "ranges", "duplicate_of")})
    return result
