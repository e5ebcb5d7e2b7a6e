"""Classify: one byte range -> one part of the result's upload, through the ONNX classifier (loaded once per container)."""

from __future__ import annotations

import functools
import threading
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ..runtime import Classifier, threads_for_environment
from ..workflow import classify_range, load_label_set
from . import settings
from ._aws import logger, s3_client
from .events import ClassifyEvent, Job


@functools.cache
def classifier(model_dir: str, threads: int) -> Classifier:
    return Classifier.load(model_dir, threads=threads)


def current_classifier() -> Classifier:
    # intra_op_threads lets the local runner share the cores between parallel ranges;
    # on Lambda the memory size decides (1 vCPU per 1,769 MB).
    config = settings.current()
    return classifier(config.model_dir, config.intra_op_threads or threads_for_environment())


_label_sets: dict[tuple[int, str], Classifier] = {}  # (model, label set sha256) -> classifier
_label_sets_lock = threading.Lock()
MAX_CACHED_LABEL_SETS = 8


def classifier_for(job: Job) -> Classifier:
    """The model's classifier, or the run's label set over it: embedded once per container
    and label set, so later ranges of the run (and later runs with that set) reuse it."""
    base = current_classifier()
    chosen = job.get("label_set")
    if not chosen:
        return base
    key = (id(base), chosen["sha256"])
    with _label_sets_lock:  # the local runner calls this from parallel threads
        if key not in _label_sets:
            if len(_label_sets) >= MAX_CACHED_LABEL_SETS:
                _label_sets.pop(next(iter(_label_sets)))
            _label_sets[key] = base.with_labels(load_label_set(s3_client(), job))
        return _label_sets[key]


@logger.inject_lambda_context(clear_state=True)
def handler(event: ClassifyEvent, context: LambdaContext) -> dict[str, Any]:
    """event: {"job": <Split's job: source, encoding, upload, ...>, "range": {"index", "start", "end", "first_line"}}"""
    logger.append_keys(run_id=event["job"]["run_id"], range=event["range"]["index"])
    result = classify_range(s3_client(), classifier_for(event["job"]), job=event["job"], byte_range=event["range"])
    logger.info("range classified", extra=result)
    return result
