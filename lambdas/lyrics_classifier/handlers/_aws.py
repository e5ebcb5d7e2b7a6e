"""What the handlers share: the logger, the S3 client (one per container), the uploaded object of an event."""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config

from ..contract import SERVICE_NAME
from .events import ObjectCreatedEvent

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE_NAME))


@functools.cache
def s3_client():
    # Created once per container: client creation costs tens of milliseconds. Split reads
    # ahead and Merge reads part stats in parallel, so the pool is wider than the default 10.
    return boto3.client("s3", config=Config(max_pool_connections=32, retries={"mode": "adaptive", "max_attempts": 8}))


def event_source(event: ObjectCreatedEvent) -> dict[str, Any]:
    """The uploaded object named by an EventBridge "Object Created" event."""
    detail = event["detail"]
    return {
        "bucket": detail["bucket"]["name"],
        "key": detail["object"]["key"],
        "version_id": detail["object"].get("version-id"),
        "etag": detail["object"].get("etag"),
    }
