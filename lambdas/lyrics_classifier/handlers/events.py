"""The events each handler receives, as the state machine (the ASL file) builds them."""

from __future__ import annotations

from typing import Any, TypedDict

# EventBridge's S3 "Object Created" event (the fields the workflow reads). Its keys have
# hyphens, hence the functional syntax.
S3Object = TypedDict("S3Object", {"key": str, "version-id": str, "etag": str, "size": int}, total=False)


class S3Bucket(TypedDict):
    name: str


class ObjectCreatedDetail(TypedDict):
    bucket: S3Bucket
    object: S3Object


class ObjectCreatedEvent(TypedDict):
    detail: ObjectCreatedDetail


class SplitEvent(TypedDict):
    event: ObjectCreatedEvent
    run_id: str  # the execution's name


class Job(TypedDict, total=False):
    """What Split learned, carried to every range (workflow._index_input)."""

    run_id: str
    bucket: str
    source: dict[str, Any]
    encoding: str
    columns: int
    text_column_index: int
    result_key: str
    upload_id: str
    label_set: dict[str, str]  # only when the upload's folder selects one


class ByteRange(TypedDict):
    index: int
    start: int
    end: int
    first_line: int


class ClassifyEvent(TypedDict):
    job: Job
    range: ByteRange


class MergeEvent(TypedDict):
    """Split's result, as the state machine keeps it under $.split."""

    run_id: str
    bucket: str


class Failure(TypedDict, total=False):
    Error: str
    Cause: str


class ExecutionState(TypedDict, total=False):
    detail: ObjectCreatedDetail  # the input event itself
    split: dict[str, Any]  # Split's result, once Split ran


class ReportFailureEvent(TypedDict, total=False):
    event: ExecutionState
    run_id: str
    failure: Failure


class ExecutionStatusDetail(TypedDict, total=False):
    executionArn: str
    stateMachineArn: str
    name: str  # the execution's name: the run id
    status: str  # FAILED, TIMED_OUT or ABORTED (the rule's filter)
    input: str  # the execution's input as a JSON string: the upload's event
    error: str | None
    cause: str | None


class ExecutionStatusChangeEvent(TypedDict):
    """EventBridge's "Step Functions Execution Status Change" event (the fields read)."""

    detail: ExecutionStatusDetail
