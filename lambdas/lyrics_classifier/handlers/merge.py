"""Merge: verify every part, complete the upload of results/<input name>.classified.csv, write its summary."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ..contract import METRICS_NAMESPACE
from ..workflow import merge_results
from ._aws import logger, s3_client
from .events import MergeEvent

metrics = Metrics(namespace=METRICS_NAMESPACE)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: MergeEvent, context: LambdaContext) -> dict[str, Any]:
    """event: the Split result ({"run_id", "bucket", ...})"""
    logger.append_keys(run_id=event["run_id"])
    result = merge_results(s3_client(), bucket=event["bucket"], run_id=event["run_id"], job=event.get("job"))
    if result.pop("completed_now", True):  # a repeated Merge counts nothing twice
        metrics.add_metric(name="RowsIn", unit=MetricUnit.Count, value=result["rows_in"])
        metrics.add_metric(name="RowsClassified", unit=MetricUnit.Count, value=result["rows_classified"])
        metrics.add_metric(name="RowsRejected", unit=MetricUnit.Count, value=result["rows_rejected"])
    logger.info("results written", extra=result)
    return result
