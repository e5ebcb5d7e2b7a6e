"""`lyrics-classifier serve`: the deployed stack on this machine, for the AWS CLI and for
`submit`/`status`, without an AWS account.

One process holds moto's server (S3, Step Functions, CloudFormation) on 127.0.0.1:PORT
with the stack's two versioned buckets, the state machine from the package's ASL file, and
a CloudFormation stack carrying the deployed stack's outputs (so `submit --stack` finds
the buckets). The real handlers answer the state machine's Lambda invokes in-process (the
local runner's LambdaRouter), and a trigger thread stands in for the S3 -> EventBridge
rule: every new version of an input file (`.csv`, `.tsv`, `.jsonl`, ..., contract.INPUT_SUFFIXES)
in the input bucket starts one execution with
the "Object Created" event EventBridge would send.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, TextIO

from .contract import DEFAULT_RANGE_BYTES, INPUT_SUFFIXES, LABELS_PREFIX
from .errors import UserError
from .handlers import settings
from .local import (
    ACCOUNT,
    INPUT_BUCKET,
    OUTPUT_BUCKET,
    REGION,
    UNCAUGHT_ENDINGS,
    LambdaRouter,
    Progress,
    add_fault_argument,
    clean_up_after,
    cpu_count,
    default_handlers,
    load_definition,
    object_created_event,
    stop_execution,
)
from .faults import FaultPlan

DEFAULT_PORT = 4566
STACK_NAME = "LyricsClassifier"
POLL_SECONDS = 0.5  # how often the trigger looks for new uploads
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}  # moto accepts any
# A stack with no resources is refused; a wait-condition handle creates nothing.
TEMPLATE_RESOURCES = {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}


@dataclass
class LocalStack:
    """A running local stack; `stop()` (or leaving the `with` block) shuts it down."""

    endpoint: str
    stack_name: str
    outputs: dict[str, str]
    progress: Progress
    router: Any = None  # the in-process Lambda service (LambdaRouter)
    executions: list[str] = field(default_factory=list)  # ARNs started by the trigger, in order
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _server: Any = None
    _previous: Any = None  # the handlers' settings before the stack gave its own

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        if self._server is not None:
            self._server.stop()
            self._server = None
            settings.give(self._previous)


def start_stack(
    *,
    port: int = DEFAULT_PORT,
    model_dir: Path,
    concurrency: int | None = None,
    classify_concurrency: int | None = None,
    stack_name: str = STACK_NAME,
    text_column: str = "",
    on_event: Callable[[str], None] | None = None,
    faults: FaultPlan | None = None,
) -> LocalStack:
    """Start moto's server on 127.0.0.1:`port` and deploy the stack into it. The process's
    environment points boto3 (the handlers' clients included) at that endpoint."""
    import boto3
    from moto.server import ThreadedMotoServer

    if not (Path(model_dir) / "model.onnx").is_file():
        raise UserError(f"no model at {model_dir} (model.onnx is missing): build it with "
                        f"`lyrics-classifier build-model --out {model_dir}` (or `make model`), or pass --model DIR")
    concurrency = concurrency or cpu_count()
    endpoint = f"http://127.0.0.1:{port}"
    # The AWS SDK's configuration, for this process (it is the stack's only client besides
    # the user's): every boto3 client, the handlers' too, talks to the local endpoint.
    os.environ.update({
        **CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "MOTO_PORT": str(port),  # moto's interpreter invokes Lambda through its own endpoint
        "POWERTOOLS_METRICS_DISABLED": "true",
    })
    os.environ.pop("AWS_PROFILE", None)
    given = settings.Settings(
        output_bucket=OUTPUT_BUCKET,
        range_bytes=DEFAULT_RANGE_BYTES,
        text_column=text_column or None,
        model_dir=str(Path(model_dir).resolve()),
        intra_op_threads=max(1, cpu_count() // concurrency),
    )
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    try:
        server.start()
    except OSError as exc:
        raise UserError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc}): pass another --port") from None
    progress = Progress()
    from . import awsrules

    awsrules.apply()  # a Map over its tolerated failures fails, as on AWS
    try:
        boto3.setup_default_session()
        # The state machine's Lambda invokes are answered in-process by the real handlers.
        router = LambdaRouter(default_handlers(), progress, classify_concurrency=classify_concurrency,
                              faults=faults, end_execution=partial(stop_execution, f"{stack_name}-Workflow"))
        boto3.DEFAULT_SESSION.events.register("before-send.lambda.Invoke", router)
        outputs = _deploy(endpoint, stack_name, concurrency)
    except BaseException:
        server.stop()
        raise
    # the handlers' settings for the stack's lifetime
    stack = LocalStack(endpoint, stack_name, outputs, progress, router, _server=server, _previous=settings.give(given))
    trigger = threading.Thread(target=_trigger_loop, args=(stack, on_event or (lambda _: None)),
                               name="upload-trigger", daemon=True)
    stack._threads.append(trigger)
    trigger.start()
    return stack


def _deploy(endpoint: str, stack_name: str, concurrency: int) -> dict[str, str]:
    import boto3
    import requests

    # moto runs state machines only when asked to (its default is to answer with a stub).
    requests.post(f"{endpoint}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}},
                  timeout=10).raise_for_status()
    s3 = boto3.client("s3")
    for bucket in (INPUT_BUCKET, OUTPUT_BUCKET):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    machine = boto3.client("stepfunctions").create_state_machine(
        name=f"{stack_name}-Workflow",
        definition=load_definition(concurrency),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/{stack_name}-Workflow",
    )["stateMachineArn"]
    outputs = {"InputBucketName": INPUT_BUCKET, "OutputBucketName": OUTPUT_BUCKET, "StateMachineArn": machine,
               "InputPrefix": "-"}
    template = {
        "Resources": TEMPLATE_RESOURCES,
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    with warnings.catch_warnings():  # moto says it does not model the placeholder: it need not
        warnings.simplefilter("ignore", UserWarning)
        boto3.client("cloudformation").create_stack(StackName=stack_name, TemplateBody=json.dumps(template))
    return outputs


def _trigger_loop(stack: LocalStack, on_event: Callable[[str], None]) -> None:
    """EventBridge's part: start one execution per new version of an input file (label sets
    under labels/ and other files start nothing, as the deployed rule's key pattern says),
    and report how each ends."""
    import boto3

    s3, sfn = boto3.client("s3"), boto3.client("stepfunctions")
    seen: set[tuple[str, str]] = set()
    running: dict[str, str] = {}  # execution ARN -> key
    while not stack._stop.wait(POLL_SECONDS):
        try:
            for key, version in _csv_versions(s3):
                if (key, version) in seen:
                    continue
                seen.add((key, version))
                head = s3.head_object(Bucket=INPUT_BUCKET, Key=key, VersionId=version)
                execution = sfn.start_execution(
                    stateMachineArn=stack.outputs["StateMachineArn"],
                    name=f"upload-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}",
                    input=json.dumps(object_created_event(INPUT_BUCKET, key, head)),
                )["executionArn"]
                stack.executions.append(execution)
                running[execution] = key
                on_event(f"started {execution.rsplit(':', 1)[-1]} for s3://{INPUT_BUCKET}/{key}")
            for execution, key in list(running.items()):
                described = sfn.describe_execution(executionArn=execution)
                if described["status"] != "RUNNING":
                    del running[execution]
                    if described["name"] in stack.router.ended_runs:  # execution:timeout (moto can only stop it)
                        described["status"] = "TIMED_OUT"
                    if described["status"] in UNCAUGHT_ENDINGS:  # EventBridge's status rule -> Cleanup
                        if problem := clean_up_after(stack.router, described, described["status"]):
                            on_event(f"cleanup of {described['name']} failed: {problem}")
                    output = json.loads(described.get("output") or "{}")
                    written = output.get("result_key") or output.get("report_key")  # the result, or the failure report
                    where = f": s3://{OUTPUT_BUCKET}/{written}" if written else ""
                    on_event(f"{described['status'].lower()} {execution.rsplit(':', 1)[-1]} ({key}){where}")
        except Exception as exc:  # the loop must outlive a transient error; say what happened
            on_event(f"trigger: {type(exc).__name__}: {exc}")


def _csv_versions(s3: Any) -> list[tuple[str, str]]:
    versions = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=INPUT_BUCKET):
        for version in page.get("Versions", []):
            key = version["Key"]
            if key.lower().endswith(INPUT_SUFFIXES) and version.get("IsLatest") and not key.startswith(LABELS_PREFIX):
                versions.append((key, version["VersionId"]))
    return versions


# ----------------------------------------------------------------------------- command line


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the deployed stack locally (moto's server) for the AWS CLI, submit and status",
        description=(
            "Start the stack on this machine: moto's S3, Step Functions and CloudFormation on "
            "127.0.0.1:PORT, with the input and output buckets, the real state machine, an upload "
            "trigger and the real handlers. Point the AWS CLI at it with --endpoint-url (or "
            "AWS_ENDPOINT_URL) and use it as the deployed stack. Stop with Ctrl-C; everything is "
            "in memory and goes with the process."
        ),
        epilog=(
            "example: lyrics-classifier serve --port 4566 &  then  "
            "aws --endpoint-url http://127.0.0.1:4566 s3 cp samples/lyrics.csv s3://lyrics-input/lyrics.csv"
        ),
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, metavar="PORT",
                        help=f"port on 127.0.0.1 (default: {DEFAULT_PORT})")
    parser.add_argument("--model", type=Path, metavar="DIR",
                        help="model directory (default: $LYRICS_CLASSIFIER_MODEL, else models/default)")
    parser.add_argument("--concurrency", type=int, metavar="N",
                        help="ranges classified in parallel per run (the Map's MaxConcurrency; "
                             "default: the number of CPUs)")
    parser.add_argument("--classify-concurrency", type=int, metavar="N",
                        help="Classify invocations at once across all runs, like the function's "
                             "reserved concurrency: more are throttled and retried (default: no cap)")
    add_fault_argument(parser)
    parser.set_defaults(func=_serve_command)


def _serve_command(args: argparse.Namespace, stream: TextIO = sys.stdout) -> int:
    import logging

    from .runtime import default_model_dir

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    if args.concurrency is not None and args.concurrency < 1:
        raise UserError("--concurrency must be at least 1")
    if args.classify_concurrency is not None and args.classify_concurrency < 1:
        raise UserError("--classify-concurrency must be at least 1")

    def say(line: str) -> None:
        print(line, file=stream, flush=True)

    stack = start_stack(port=args.port, model_dir=Path(args.model) if args.model else default_model_dir(),
                        concurrency=args.concurrency, classify_concurrency=args.classify_concurrency,
                        on_event=say, faults=FaultPlan(args.fault))
    with stack:
        say(f"ready: {stack.endpoint} (stack {stack.stack_name}; input s3://{INPUT_BUCKET}, "
            f"output s3://{OUTPUT_BUCKET}; state machine {stack.outputs['StateMachineArn']})")
        say(f"  export AWS_ENDPOINT_URL={stack.endpoint} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test "
            f"AWS_DEFAULT_REGION={REGION}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            say("stopped")
    return 0
