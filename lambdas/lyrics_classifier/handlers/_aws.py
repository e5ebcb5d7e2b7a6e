"""What the handlers share: the S3 client (one per container) and settings from the environment."""

from __future__ import annotations

import functools
import os

import boto3
from aws_lambda_powertools import Logger

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "lyrics-classifier"))


@functools.cache
def s3_client():
    # Created once per container: client creation costs tens of milliseconds.
    return boto3.client("s3")


def output_bucket() -> str:
    try:
        return os.environ["OUTPUT_BUCKET"]
    except KeyError:
        raise RuntimeError("OUTPUT_BUCKET is not set: the function is misconfigured") from None
