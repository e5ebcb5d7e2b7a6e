"""`lyrics-classifier run`: the deployed workflow, on this machine, with no AWS account.

The ASL file that CDK deploys is executed by moto's Step Functions interpreter; S3 is moto's,
in memory; every `lambda:invoke` the interpreter makes is answered in-process by the real
handler, through a botocore `before-send` hook. Nothing here re-implements the orchestration.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import logging
import os
import re
import sys
import tempfile
import threading
import time
import traceback
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator
from functools import partial
from urllib.parse import unquote

from .faults import KINDS, STEPS, THROTTLES_PER_INVOCATION, FaultPlan, parse_fault
from .predict import add_label_arguments, label_set_from_args
from .contract import (
    ALL_FUNCTION_NAMES,
    CLEANUP_FUNCTION,
    DEFAULT_RANGE_BYTES,
    INPUT_SUFFIXES,
    FUNCTION_NAMES,
    MAP_RESULTS_PREFIX,
    MIB,
    MIN_RANGE_BYTES,
)

ASL_PATH = Path(__file__).resolve().parent / "statemachine" / "workflow.asl.json"  # package data
REGION = "us-east-1"
ACCOUNT = "123456789012"
INPUT_BUCKET = "lyrics-input"
OUTPUT_BUCKET = "lyrics-output"
LOCAL_VERSION = "1"  # the qualifier of the local function ARNs, as a deployed version's
LOCAL_EXECUTION_TIMEOUT_S = 7 * 24 * 3600  # a laptop run may be long; Ctrl-C stops it
LOCAL_MACHINE_NAME = "lyrics-classifier"
# Function name in the local ARNs -> module whose `handler` answers it.
FUNCTIONS = {name: f"lyrics_classifier.handlers.{module}" for name, module in zip(
    ALL_FUNCTION_NAMES, ("split", "classify", "merge", "report_failure", "cleanup"), strict=True)}
UNCAUGHT_ENDINGS = ("FAILED", "TIMED_OUT", "ABORTED")  # the deployed Cleanup rule's statuses
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class RunFailed(Exception):
    """The execution failed; the message is the failure report's readable reason."""

    def __init__(self, reason: str, report: dict[str, Any] | None = None, first_error: str | None = None):
        super().__init__(reason)
        self.report = report
        self.first_error = first_error  # what the first failing handler raised, for the user


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def function_arn(name: str, qualifier: str | None = None) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}" + (f":{qualifier}" if qualifier else "")


def function_name_of(url: str) -> str:
    """`.../functions/arn:aws:lambda:...:function:Split:1/invocations` -> `Split`."""
    target = unquote(url.split("/functions/", 1)[1].split("/", 1)[0])
    if ":function:" in target:
        return target.split(":function:", 1)[1].split(":", 1)[0]
    return target.split(":", 1)[0]


def load_definition(max_concurrency: int, asl_path: Path = ASL_PATH) -> str:
    """The ASL file with the same substitutions CDK makes, pointed at the local functions."""
    if not asl_path.exists():
        raise FileNotFoundError(f"state machine definition not found at {asl_path}")
    text = asl_path.read_text(encoding="utf-8")
    # The deployed machine invokes a published version of each function; so does the local one.
    substitutions = {f"{name}FunctionArn": function_arn(name, LOCAL_VERSION) for name in FUNCTION_NAMES}
    substitutions["MaxConcurrency"] = str(max_concurrency)
    substitutions["ExecutionTimeoutSeconds"] = str(LOCAL_EXECUTION_TIMEOUT_S)
    substitutions["WorkBucketName"] = OUTPUT_BUCKET
    substitutions["MapResultsPrefix"] = MAP_RESULTS_PREFIX
    for name, value in substitutions.items():
        text = text.replace("${%s}" % name, value)
    json.loads(text)  # every placeholder substituted: the result must be JSON
    return text


@dataclass
class LambdaContext:
    """The fields of the Lambda runtime's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int = 2048
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def invoked_function_arn(self) -> str:
        return function_arn(self.function_name)

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


@dataclass
class Progress:
    """What the in-process functions have done so far; updated from the interpreter's threads."""

    ranges_total: int | None = None
    bytes_total: int | None = None
    ranges_done: int = 0
    bytes_done: int = 0
    rows_done: int = 0
    first_error: str | None = None  # "Function: ErrorType: message" of the first failed invoke
    throttled: int = 0  # Classify invocations refused at the concurrency limit (then retried)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record_error(self, function: str, exc: Exception) -> None:
        with self.lock:
            if self.first_error is None:
                self.first_error = f"{function}: {type(exc).__name__}: {exc}"

    def record(self, function: str, result: dict[str, Any]) -> None:
        with self.lock:
            if function == "Split":
                self.ranges_total, self.bytes_total = result["ranges"], result["bytes"]
            elif function == "Classify":
                self.ranges_done += 1
                self.rows_done += result["rows"]
                self.bytes_done += result.get("bytes", 0)


class LambdaRouter:
    """The before-send hook: answers `lambda.Invoke` requests by calling the handler in-process,
    with the response shapes the Lambda service uses (function errors included), and applies
    the run's injected faults (faults.py) the way the Lambda service would deliver them."""

    def __init__(
        self,
        handlers: dict[str, Handler],
        progress: Progress,
        on_split: Callable[[dict[str, Any]], None] | None = None,
        classify_concurrency: int | None = None,
        faults: FaultPlan | None = None,
        end_execution: Callable[[str], None] | None = None,
    ):
        self.handlers = handlers
        self.progress = progress
        self.on_split = on_split
        # Like Classify's reserved concurrency: invocations beyond it are throttled (HTTP 429).
        self.classify_slots = threading.BoundedSemaphore(classify_concurrency) if classify_concurrency else None
        self.faults = faults or FaultPlan()
        self.end_execution = end_execution  # execution:timeout: ends the run's execution by its name
        self.ended_runs: set[str] = set()

    def __call__(self, request: Any, **_: Any) -> Any:
        name = function_name_of(request.url)
        body = request.body or b""
        body = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        if self.faults.strike(name, "throttle", body, times=THROTTLES_PER_INVOCATION):
            with self.progress.lock:
                self.progress.throttled += 1
            return _throttled(request.url)
        if name == "Classify" and self.classify_slots is not None:
            if not self.classify_slots.acquire(blocking=False):
                with self.progress.lock:
                    self.progress.throttled += 1
                return _throttled(request.url)
            try:
                return self._invoke(name, request.url, body)
            finally:
                self.classify_slots.release()
        return self._invoke(name, request.url, body)

    def call(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Invoke a function directly (as EventBridge invokes the Cleanup function)."""
        return self.handlers[name](payload, LambdaContext(function_name=name))

    def _invoke(self, name: str, url: str, body: bytes) -> Any:
        from botocore.awsrequest import AWSResponse

        payload = json.loads(body or b"{}")
        headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST"}
        try:
            if "fail" in self.faults.kinds(name):
                raise InjectedFault(f"{name} failed: a fault injected with --fault (it fails every time)")
            result = self.call(name, payload)
        except Exception as exc:  # what the Lambda runtime reports for an unhandled exception
            self.progress.record_error(name, exc)
            return _function_error(url, type(exc).__name__, str(exc), traceback.format_tb(exc.__traceback__))
        # At-least-once: the work is done, but Step Functions does not hear of it and runs it again.
        if self.faults.strike(name, "repeat", body):
            return _service_exception(url)
        if self.faults.strike(name, "timeout", body):
            return _function_error(url, "Sandbox.Timedout", f"RequestId: {uuid.uuid4()} Error: Task timed out "
                                   "after its work was done (a fault injected with --fault)")
        if name == "Classify" and self.faults.execution_timeout and self.end_execution:
            run_id = payload["job"]["run_id"]
            if run_id not in self.ended_runs:  # the execution's time is up while ranges are classified
                self.ended_runs.add(run_id)
                self.end_execution(run_id)
        self.progress.record(name, result)
        if name == "Split" and self.on_split:
            self.on_split(result)
        return AWSResponse(url, 200, headers, _RawBody(json.dumps(result).encode("utf-8")))


class InjectedFault(Exception):
    """The error of `--fault STEP:fail`."""


def _function_error(url: str, error_type: str, message: str, stack: list[str] | None = None) -> Any:
    """The Lambda service's answer when the function raised (or timed out): HTTP 200 with
    X-Amz-Function-Error, the error as the payload."""
    from botocore.awsrequest import AWSResponse

    body = json.dumps({"errorMessage": message, "errorType": error_type, "stackTrace": stack or []})
    headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST",
               "X-Amz-Function-Error": "Unhandled"}
    return AWSResponse(url, 200, headers, _RawBody(body.encode("utf-8")))


def _service_exception(url: str) -> Any:
    """The Lambda service's answer when it fails on its side (Step Functions: Lambda.ServiceException)."""
    from botocore.awsrequest import AWSResponse

    body = json.dumps({"Type": "Service", "message": "The response was lost (a fault injected with --fault)"})
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": "ServiceException",
               "x-amzn-RequestId": str(uuid.uuid4())}
    return AWSResponse(url, 500, headers, _RawBody(body.encode("utf-8")))


def _throttled(url: str) -> Any:
    """The Lambda service's answer when a function is at its concurrency limit."""
    from botocore.awsrequest import AWSResponse

    body = json.dumps({
        "Type": "User",
        "message": "Rate Exceeded.",
        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
    }).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "x-amzn-ErrorType": "TooManyRequestsException",
        "x-amzn-RequestId": str(uuid.uuid4()),  # the interpreter puts it in the error's cause
    }
    return AWSResponse(url, 429, headers, _RawBody(body))


class _RawBody:
    """The minimal urllib3-like body botocore reads a response from."""

    def __init__(self, data: bytes):
        self._stream = io.BytesIO(data)

    def stream(self, amt: int = 65536, decode_content: bool = True) -> Iterator[bytes]:
        while chunk := self._stream.read(amt):
            yield chunk

    def read(self, amt: int | None = None) -> bytes:
        return self._stream.read(amt)


def default_handlers() -> dict[str, Handler]:
    return {name: importlib.import_module(module).handler for name, module in FUNCTIONS.items()}


@contextlib.contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def deep_recursion(limit: int = 200_000) -> Iterator[None]:
    """moto's Distributed Map worker takes its next item by recursing, one level per item,
    so with the default limit of 1,000 a worker dies silently after ~970 ranges and the
    run hangs. Python-to-Python calls use no C stack in 3.11+, so a higher limit is safe."""
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(max(saved, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(saved)


@dataclass
class RunResult:
    status: str
    execution_name: str
    output_csv: Path | None
    summary_path: Path | None
    summary: dict[str, Any] | None
    seconds: float
    failure: dict[str, Any] | None = None
    throttled: int = 0  # Classify invocations throttled at the concurrency cap, then retried
    report_path: Path | None = None  # the run report (HTML) beside the summary
    faults_struck: dict[str, int] = field(default_factory=dict)  # step:kind -> times injected


# What `-o` can name: a CSV, or a gzip-compressed CSV (`.gz`); another format's extension is
# refused before any work rather than written as CSV under that name.
WRITABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".gz", ".txt")
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")  # for JSON Lines input


def output_paths(input_path: Path, output: Path | None) -> tuple[Path, Path, Path]:
    """(classified CSV, summary JSON, failure report) for an input; beside the input by default
    (songs.csv -> songs.classified.csv, songs.tsv -> songs.classified.tsv)."""
    from .workflow.keys import input_name, input_suffix

    extension = input_suffix(input_path.name).lower() or ".csv"
    csv_path = output or input_path.with_name(f"{input_name(input_path.name)}.classified{extension}")
    base = csv_path.name
    for suffix in (*(f".classified{s}" for s in sorted(INPUT_SUFFIXES, key=len, reverse=True)),
                   *sorted(INPUT_SUFFIXES, key=len, reverse=True), ".gz"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    return csv_path, csv_path.with_name(f"{base}.summary.json"), csv_path.with_name(f"{base}.error.json")


def check_output_format(path: Path, input_path: Path) -> None:
    """ValueError unless `path` names a format `run` writes for this input: CSV or TSV for a
    CSV, JSON Lines for JSON Lines; either gzip-compressed."""
    from .workflow.jsonlines import is_json_lines

    name = path.name.lower()
    if is_json_lines(input_path.name):
        if not name.endswith(JSON_LINES_SUFFIXES):
            raise ValueError(f"--output {path}: the input is JSON Lines, so is the output: name a .jsonl file "
                             "(or .jsonl.gz)")
    elif "." in name.lstrip(".") and not name.endswith(WRITABLE_SUFFIXES):
        raise ValueError(
            f"--output {path}: cannot write {path.suffix} files; name a .csv (or .tsv) file, or .csv.gz "
            "for a gzip-compressed one (convert the CSV afterwards for other formats)"
        )


def gzipped(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def check_writable(*paths: Path) -> None:
    """Before any work: every output's folder exists (or is created) and takes files, and no
    output names a directory. Raises ValueError with what to change."""
    for path in paths:
        if path.is_dir():
            raise ValueError(f"--output: {path} is a directory; name a file, e.g. {path / 'songs.classified.csv'}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".write-check-"):
                pass
        except OSError as exc:
            raise ValueError(f"cannot write to {path.parent} ({exc.strerror or exc}); choose another --output") from None


def report_path(summary_path: Path) -> Path:
    """<name>.report.html beside <name>.summary.json."""
    name = summary_path.name
    base = name[: -len(".summary.json")] if name.endswith(".summary.json") else summary_path.stem
    return summary_path.with_name(f"{base}.report.html")


def upload_key(input_path: Path, label_set: Any = None) -> str:
    """Where the input goes in the local input bucket: the bucket root, or, with a label set,
    the folder that selects it (as a user would upload it on AWS: moods/songs.csv)."""
    if label_set is None:
        return input_path.name
    folder = re.sub(r"[^0-9A-Za-z._-]+", "-", label_set.name).strip("-.") or "labels"
    return f"{folder}/{input_path.name}"


def run_workflow(
    input_path: str | os.PathLike,
    *,
    output: str | os.PathLike | None = None,
    model_dir: str | os.PathLike | None = None,
    text_column: str | None = None,
    range_mb: float = DEFAULT_RANGE_BYTES / MIB,
    concurrency: int | None = None,
    handlers: dict[str, Handler] | None = None,
    classify_concurrency: int | None = None,
    on_progress: Callable[[Progress, float], None] | None = None,
    poll_seconds: float = 0.2,
    label_set: Any = None,
    faults: FaultPlan | None = None,
    delimiter: str | None = None,
) -> RunResult:
    """Run the state machine on one CSV and write the classified CSV, summary and run report
    beside it (or to `output`). `label_set` (a labelset.LabelSet) replaces the model's labels:
    it is uploaded to labels/<name>.json and the CSV into the folder <name>/, as on AWS.
    `faults` makes the run meet AWS's faults (faults.py). Raises RunFailed with the failure
    report's reason if the run fails."""
    from .runtime import default_model_dir

    input_path = Path(input_path)
    if input_path.is_dir():
        raise FileNotFoundError(f"{input_path} is a directory: give the CSV file to classify")
    if not input_path.is_file():
        raise FileNotFoundError(f"{input_path}: no such file")
    if range_mb * MIB < MIN_RANGE_BYTES:
        raise ValueError(f"--range-mb must be at least {MIN_RANGE_BYTES // MIB} (S3's 5 MiB part minimum, with a margin)")
    concurrency = concurrency or cpu_count()
    if concurrency < 1:
        raise ValueError("--concurrency must be at least 1")
    try:
        with open(input_path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise FileNotFoundError(f"{input_path}: cannot read it ({exc.strerror or exc})") from None
    csv_path, summary_path, error_path = output_paths(input_path, Path(output) if output else None)
    check_output_format(csv_path, input_path)
    if csv_path.resolve() == input_path.resolve():
        raise ValueError(f"--output {csv_path} is the input file; choose another name")
    check_writable(csv_path, summary_path, error_path, report_path(summary_path))
    model_dir = Path(model_dir) if model_dir else default_model_dir()
    if not (model_dir / "model.onnx").is_file():
        raise FileNotFoundError(
            f"no model at {model_dir} (model.onnx is missing): build the default one with "
            f"`lyrics-classifier build-model --out {model_dir}` (or `make model`), or pass --model DIR"
        )
    from .handlers import settings

    given = settings.Settings(
        output_bucket=OUTPUT_BUCKET,
        range_bytes=int(range_mb * MIB),
        text_column=text_column or None,
        delimiter=delimiter or None,
        model_dir=str(model_dir.resolve()),
        intra_op_threads=max(1, cpu_count() // concurrency),
    )
    # The handlers get their settings as they are; only the AWS SDK's and Powertools' own
    # configuration comes from the environment (a region for the clients; no metrics locally).
    sdk = {"AWS_DEFAULT_REGION": REGION, "POWERTOOLS_METRICS_DISABLED": "true"}
    with settings.use(given), patched_environ(sdk), deep_recursion():
        return _execute(
            input_path, csv_path, summary_path, error_path, concurrency,
            handlers, classify_concurrency, on_progress, poll_seconds, label_set, faults or FaultPlan(),
        )


def _execute(
    input_path: Path,
    csv_path: Path,
    summary_path: Path,
    error_path: Path,
    concurrency: int,
    handlers: dict[str, Handler] | None,
    classify_concurrency: int | None,
    on_progress: Callable[[Progress, float], None] | None,
    poll_seconds: float,
    label_set: Any,
    faults: FaultPlan,
) -> RunResult:
    import boto3
    from moto import mock_aws

    from . import awsrules
    from .workflow import failure_key, label_set_key, report_key, result_key, summary_key

    handlers = handlers or default_handlers()
    progress = Progress()
    started = time.perf_counter()
    awsrules.apply()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        # moto swaps in a fresh default session on entry; the interpreter's Lambda client is
        # built from it, so the hook goes on the session in force now.
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        router = LambdaRouter(
            handlers, progress, on_split=partial(_share_cores, concurrency), classify_concurrency=classify_concurrency,
            faults=faults, end_execution=partial(stop_execution, LOCAL_MACHINE_NAME),
        )
        boto3.DEFAULT_SESSION.events.register("before-send.lambda.Invoke", router)
        s3 = boto3.client("s3", region_name=REGION)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        for bucket in (INPUT_BUCKET, OUTPUT_BUCKET):
            # Versioned like the deployed buckets: the run reads the uploaded version.
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        key = upload_key(input_path, label_set)
        if label_set is not None:
            s3.put_object(Bucket=INPUT_BUCKET, Key=label_set_key(key), Body=label_set.document)
        s3.upload_file(str(input_path), INPUT_BUCKET, key)
        head = s3.head_object(Bucket=INPUT_BUCKET, Key=key)
        machine = sfn.create_state_machine(
            name=LOCAL_MACHINE_NAME,
            definition=load_definition(concurrency),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/lyrics-classifier-local",
        )["stateMachineArn"]
        name = f"local-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        execution = sfn.start_execution(
            stateMachineArn=machine, name=name, input=json.dumps(object_created_event(INPUT_BUCKET, key, head))
        )["executionArn"]
        while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
            if on_progress:
                on_progress(progress, time.perf_counter() - started)
            time.sleep(poll_seconds)
        if on_progress:
            on_progress(progress, time.perf_counter() - started)
        status = described["status"]
        if status != "SUCCEEDED":
            if name in router.ended_runs:  # execution:timeout ended it (moto can only stop it: ABORTED)
                status = "TIMED_OUT"
            if status in UNCAUGHT_ENDINGS:  # the deployed stack's Cleanup rule fires on these
                clean_up_after(router, described, status)
            report = _read_json(s3, OUTPUT_BUCKET, failure_key(key))
            reason = (report or {}).get("reason") or described.get("cause") or f"execution {status}"
            if report:
                _write_json(error_path, report)
            raise RunFailed(reason, report, progress.first_error)
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        download_result(s3, result_key(key), csv_path)
        summary = _read_json(s3, OUTPUT_BUCKET, summary_key(key))
        _write_json(summary_path, summary)
        s3.download_file(OUTPUT_BUCKET, report_key(key), str(report_path(summary_path)))
        error_path.unlink(missing_ok=True)  # a failure report of an earlier run of this file
    return RunResult(
        status=status,
        execution_name=name,
        output_csv=csv_path,
        summary_path=summary_path,
        summary=summary,
        seconds=time.perf_counter() - started,
        throttled=progress.throttled,
        report_path=report_path(summary_path),
        faults_struck=faults.struck(),
    )


def _share_cores(concurrency: int, split: dict[str, Any]) -> None:
    """Parallel ranges share the cores: no more onnxruntime threads than cores in all, and
    all of them for a file of one range. Set before the first Classify call, which loads
    the classifier with this many threads."""
    from .handlers import settings

    parallel = max(1, min(concurrency, split.get("ranges") or 1))
    settings.update(intra_op_threads=max(1, cpu_count() // parallel))


def object_created_event(bucket: str, key: str, head: dict[str, Any] | None = None) -> dict[str, Any]:
    """The EventBridge event S3 sends for a new object: what the deployed rule passes on."""
    head = head or {}
    obj: dict[str, Any] = {"key": key}
    if head:
        obj.update(size=head["ContentLength"], etag=head["ETag"].strip('"'), sequencer=f"{time.time_ns():X}")
        if head.get("VersionId"):
            obj["version-id"] = head["VersionId"]
    return eventbridge_event("aws.s3", "Object Created", f"arn:aws:s3:::{bucket}",
                             {"version": "0", "bucket": {"name": bucket}, "object": obj, "reason": "PutObject"})


def eventbridge_event(source: str, detail_type: str, resource: str, detail: dict[str, Any]) -> dict[str, Any]:
    """An event as EventBridge delivers it: its envelope around `detail`."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT,
        "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [resource],
        "detail": detail,
    }


def download_result(s3: Any, key: str, path: Path) -> None:
    """The result to `path`, whole or not at all (a temporary file renamed); gzip-compressed
    when the name ends with .gz."""
    import gzip
    import shutil

    temporary = path.with_name(f".{path.name}.partial")
    try:
        if gzipped(path):
            body = s3.get_object(Bucket=OUTPUT_BUCKET, Key=key)["Body"]
            with gzip.open(temporary, "wb") as handle:
                shutil.copyfileobj(body, handle, 1 << 20)
        else:
            s3.download_file(OUTPUT_BUCKET, key, str(temporary))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def stop_execution(machine_name: str, run_id: str) -> None:
    import boto3

    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{machine_name}:{run_id}"
    boto3.client("stepfunctions", region_name=REGION).stop_execution(executionArn=arn)


def execution_status_event(described: dict[str, Any], status: str) -> dict[str, Any]:
    """The "Step Functions Execution Status Change" event EventBridge sends when an execution ends."""
    def millis(value: Any) -> int | None:
        return int(value.timestamp() * 1000) if isinstance(value, datetime) else None

    return eventbridge_event("aws.states", "Step Functions Execution Status Change", described["executionArn"], {
        "executionArn": described["executionArn"],
        "stateMachineArn": described["stateMachineArn"],
        "name": described["name"],
        "status": status,
        "startDate": millis(described.get("startDate")),
        "stopDate": millis(described.get("stopDate")),
        "input": described.get("input"),
        "inputDetails": {"included": True},
        "output": None,
        "error": described.get("error"),
        "cause": described.get("cause"),
    })


def clean_up_after(router: LambdaRouter, described: dict[str, Any], status: str) -> str | None:
    """What the deployed Cleanup rule does when an execution ends FAILED, TIMED_OUT or ABORTED.
    Returns what went wrong, if the cleanup failed (the run has failed already: say it too)."""
    try:
        router.call(CLEANUP_FUNCTION, execution_status_event(described, status))
    except Exception as exc:
        router.progress.record_error(CLEANUP_FUNCTION, exc)
        return f"{CLEANUP_FUNCTION}: {type(exc).__name__}: {exc}"
    return None


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _read_json(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


# ----------------------------------------------------------------------------- command line


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="classify a CSV locally through the same Step Functions workflow (no AWS account)",
        description=(
            "Classify a CSV of lyrics on this machine by running the deployed workflow's state "
            "machine (lyrics_classifier/statemachine/workflow.asl.json) in moto's Step Functions interpreter, with "
            "S3 in memory and the real Lambda handlers called in-process. Writes "
            "<name>.classified.csv (every input row once, in order, original columns unchanged, "
            "plus label, score, prob_<label>..., language, error and warning), <name>.summary.json and "
            "<name>.report.html (the run report) beside the input, or beside -o. On failure, writes "
            "<name>.error.json instead and exits with status 1. Exit status 2: a usage problem, said "
            "before any work; 130: interrupted."
        ),
        epilog="examples: lyrics-classifier run samples/multilingual.csv -o build/multilingual.classified.csv; "
               "lyrics-classifier run songs.csv --labels \"happy,sad,angry\" --multi-label",
    )
    parser.add_argument("input", type=Path, help="CSV or TSV file with a header row and a lyrics column, or JSON Lines "
                                                 "(.jsonl, .ndjson: one object per line); any of them gzip-compressed (.gz)")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="classified CSV to write; a name ending in .gz is gzip-compressed (default: beside the input)")
    parser.add_argument(
        "--text-column", metavar="NAME",
        help="column holding the lyrics (default: the first of lyrics, lyric, text; any case)",
    )
    parser.add_argument(
        "--delimiter", type=delimiter_argument, metavar="D",
        help="field delimiter: comma, semicolon, tab or pipe (default: Excel's sep= line if there is one, "
             "else the one the header uses most); the output keeps it",
    )
    parser.add_argument(
        "--range-mb",
        type=float,
        default=DEFAULT_RANGE_BYTES / MIB,
        metavar="MB",
        help=f"bytes of input per range, in MiB (at least {MIN_RANGE_BYTES // MIB}: each range becomes one "
        f"part of the result's S3 multipart upload); a smaller file is one range (default: "
        f"{DEFAULT_RANGE_BYTES // MIB})",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=cpu_count(),
        metavar="N",
        help="ranges classified in parallel (the Map's MaxConcurrency); the cores are shared between "
        "them (default: the number of CPUs, here %(default)s)",
    )
    parser.add_argument(
        "--model", type=Path, metavar="DIR",
        help="model directory (default: $LYRICS_CLASSIFIER_MODEL or ./models/default)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress, only the final summary")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the handlers' JSON logs")
    add_fault_argument(parser)
    add_label_arguments(parser)
    parser.set_defaults(func=_run_command)


def delimiter_argument(text: str) -> str:
    from .csvfile import parse_delimiter

    try:
        return parse_delimiter(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_fault_argument(parser: argparse.ArgumentParser) -> None:
    def fault(text: str) -> Any:
        try:
            return parse_fault(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parser.add_argument(
        "--fault", type=fault, action="append", default=[], metavar="STEP:KIND",
        help=f"meet a fault as AWS delivers it (repeatable; docs/operations.md): STEP is {'|'.join(STEPS)}, "
             f"KIND is {'|'.join(KINDS)} (execution: timeout). repeat: the step runs again after it "
             "succeeded; timeout: it reports a timeout after its work is done; throttle: HTTP 429 first; "
             "fail: it fails every time. repeat, timeout and throttle must give the same output as a clean run",
    )


def _run_command(args: argparse.Namespace) -> int:
    from .errors import UserError
    from .runtime import default_model_dir

    label_set = label_set_from_args(args, Path(args.model) if args.model else default_model_dir())

    if not args.verbose:
        # The handlers' Powertools loggers read their level when first imported, below.
        os.environ["POWERTOOLS_LOG_LEVEL"] = "CRITICAL"  # the CLI says what failed, once
        logging.getLogger(os.environ.get("POWERTOOLS_SERVICE_NAME", "lyrics-classifier")).setLevel(logging.CRITICAL)
        logging.getLogger("moto").setLevel(logging.CRITICAL)
        # Merge's metrics are disabled locally; Powertools still warns when a failed run adds none.
        warnings.filterwarnings("ignore", message="No application metrics to publish")
    reporter = None if args.quiet else ProgressReporter(sys.stderr)
    try:
        result = run_workflow(
            args.input,
            output=args.output,
            model_dir=args.model,
            text_column=args.text_column,
            range_mb=args.range_mb,
            concurrency=args.concurrency,
            on_progress=reporter,
            label_set=label_set,
            faults=FaultPlan(args.fault),
            delimiter=args.delimiter,
        )
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from None
    except RunFailed as exc:
        if reporter:
            reporter.finish()
        print(f"error: {exc}", file=sys.stderr)
        if exc.first_error and exc.first_error.split(": ", 2)[-1] not in str(exc):
            print(f"first error: {exc.first_error}", file=sys.stderr)
        _, _, error_path = output_paths(args.input, args.output)
        if exc.report:
            print(f"failure report: {error_path}", file=sys.stderr)
        return 1
    if reporter:
        reporter.finish()
    print(format_summary(result))
    return 0


class ProgressReporter:
    """One line of progress, redrawn on a terminal and printed every few seconds otherwise."""

    def __init__(self, stream: Any):
        self.stream = stream
        self.tty = stream.isatty()
        self.last_print = 0.0
        self.last_line = ""

    def __call__(self, progress: Progress, elapsed: float) -> None:
        if progress.ranges_total is None:
            line = f"indexing input ... {elapsed:5.1f}s"
        else:
            rate = progress.rows_done / elapsed if elapsed > 0 else 0.0
            share = progress.bytes_done / progress.bytes_total if progress.bytes_total else 1.0
            eta = f", ETA {elapsed * (1 - share) / share:4.0f}s" if 0 < share < 1 else ""
            line = (
                f"classified {progress.ranges_done}/{progress.ranges_total} ranges ({share:4.0%}), "
                f"{progress.rows_done:,} rows, {rate:,.0f} lyrics/s, {elapsed:5.1f}s{eta}"
            )
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self.last_line)))
            self.stream.flush()
        elif line != self.last_line and (elapsed - self.last_print >= 5 or "ranges" in line and
                                          progress.ranges_done == progress.ranges_total):
            print(line, file=self.stream, flush=True)
            self.last_print = elapsed
        self.last_line = line

    def finish(self) -> None:
        if self.tty and self.last_line:
            self.stream.write("\n")
            self.stream.flush()


def format_summary(result: RunResult) -> str:
    summary = result.summary or {}
    rows = summary.get("rows_in", 0)
    rate = rows / result.seconds if result.seconds else 0.0
    lines = [
        f"{rows:,} rows in {result.seconds:.1f}s ({rate:,.1f} lyrics/s): "
        f"{summary.get('rows_classified', 0):,} classified, {summary.get('rows_rejected', 0):,} rejected",
    ]
    for reason, count in sorted(summary.get("rejected_by_reason", {}).items()):
        lines.append(f"  rejected: {count:,} x {reason}")
    if summary.get("blank_lines_skipped"):
        blank = summary["blank_lines_skipped"]
        lines.append(f"  skipped:  {blank:,} blank line{'s' if blank != 1 else ''} (not rows)")
    counts = summary.get("label_counts", {})
    if counts:
        lines.append("  labels:   " + ", ".join(f"{label} {count:,}" for label, count in counts.items()))
    languages = list(summary.get("language_counts", {}).items())
    if languages:
        shown = ", ".join(f"{code} {count:,}" for code, count in languages[:8])
        lines.append(f"  languages: {shown}{f', {len(languages) - 8} more' if len(languages) > 8 else ''}")
    label_set = summary.get("label_set")
    if label_set:
        multi = f", multi-label at {label_set['threshold']}" if label_set.get("multi_label") else ""
        lines.append(f"  label set: {label_set['name']} (sha256 {label_set['sha256'][:12]}{multi})")
    if result.faults_struck:
        lines.append("  faults:   " + ", ".join(f"{fault} x{n}" for fault, n in sorted(result.faults_struck.items())))
    lines.append(f"output:  {result.output_csv}")
    lines.append(f"summary: {result.summary_path}")
    if result.report_path:
        lines.append(f"report:  {result.report_path}")
    return "\n".join(lines)
