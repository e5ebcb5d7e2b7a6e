"""`submit` and `status`: work with a deployed stack (see README, "Deploy to AWS").

    lyrics-classifier submit songs.csv --stack LyricsClassifier [--wait]
    lyrics-classifier status --stack LyricsClassifier

`submit` reads the stack's outputs (bucket names, input prefix/suffix, state machine ARN),
uploads the file to the input bucket, and finds the execution that the upload started.

How the execution is found: nothing links an S3 upload to the execution that EventBridge
starts for it, except the execution input, which is the EventBridge "Object Created" event
itself. So `submit` notes the time before uploading and the object's version id after it
(the input bucket is versioned), then lists the state machine's executions started since
then (newest first) and describes them until one has an input naming this bucket, this key
and, when known, this version id. EventBridge usually starts the execution within seconds;
`--find-timeout` bounds the search. Uploading the same key again starts a new execution,
and the version id tells the two apart.

boto3 is imported inside functions, so the rest of the CLI never pays for it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from .contract import REQUIRED_STACK_OUTPUTS
from .errors import UserError

DEFAULT_STACK = os.environ.get("LYRICS_CLASSIFIER_STACK", "LyricsClassifier")
# Clock skew allowance between this machine and AWS when filtering executions by start time.
CLOCK_SKEW = timedelta(minutes=2)
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
FIND_INTERVAL = 2.0  # seconds between searches for the execution of an upload


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--stack", default=DEFAULT_STACK, metavar="NAME",
        help=f"CloudFormation stack name (default: {DEFAULT_STACK}, or $LYRICS_CLASSIFIER_STACK)"
    )
    common.add_argument("--region", metavar="REGION", help="AWS region (default: from your AWS configuration)")
    common.add_argument("--profile", metavar="NAME", help="AWS named profile")

    submit = subparsers.add_parser(
        "submit",
        parents=[common],
        help="upload a CSV to a deployed stack and find (or follow) its execution",
        description="Upload a CSV to the stack's input bucket; the upload starts a workflow execution, "
        "which this command finds and, with --wait, follows to the result. Works against "
        "`lyrics-classifier serve` too (set AWS_ENDPOINT_URL).",
        epilog="examples: lyrics-classifier submit songs.csv --wait; "
               "lyrics-classifier submit songs.csv --key moods/songs.csv --download results/",
    )
    submit.add_argument("csv", type=Path, help="the CSV of lyrics to classify")
    submit.add_argument("--key", metavar="KEY",
                        help="object key in the input bucket (default: <input prefix><file name>; "
                             "a folder selects the label set labels/<folder>.json)")
    submit.add_argument("--wait", action="store_true", help="follow the execution until it ends")
    submit.add_argument("--download", type=Path, metavar="DIR",
                        help="follow the execution (as --wait) and download the classified CSV, its summary "
                             "and run report into DIR (or the failure report when the run fails)")
    submit.add_argument("--find-timeout", type=float, default=120.0, metavar="SECONDS",
                        help="how long to wait for the execution to appear (default: 120)")
    submit.add_argument("--poll", type=float, default=5.0, metavar="SECONDS",
                        help="between status checks while following (default: 5)")
    submit.set_defaults(func=cmd_submit)

    status = subparsers.add_parser(
        "status",
        parents=[common],
        help="list recent executions of a deployed stack",
        description="List the most recent workflow executions: status, input file, start time and duration.",
        epilog="examples: lyrics-classifier status --limit 20; lyrics-classifier status --json | jq '.[0]'",
    )
    status.add_argument("--limit", type=int, default=10, metavar="N", help="how many executions (default: 10)")
    status.add_argument("--json", action="store_true",
                        help="a JSON list instead of a table: name, status, started, stopped, seconds, input, arn")
    status.set_defaults(func=cmd_status)


# ----------------------------------------------------------------------------- AWS


def _session(args: argparse.Namespace):
    import boto3

    return boto3.session.Session(profile_name=args.profile, region_name=args.region)


def _aws_errors() -> tuple[type[Exception], ...]:
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return Boto3Error, BotoCoreError, ClientError


def stack_outputs(session, stack: str) -> dict[str, str]:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        response = session.client("cloudformation").describe_stacks(StackName=stack)
    except (NoCredentialsError, NoRegionError) as exc:
        raise UserError(f"{exc} (configure AWS credentials and a region, or pass --profile/--region)") from None
    except BotoCoreError as exc:  # no network, a wrong endpoint, a proxy refusing...
        raise UserError(f"cannot reach AWS: {exc}") from None
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", str(exc))
        if "does not exist" in message:
            raise UserError(f"stack {stack!r} not found in this account/region: deploy it first (cdk deploy) or pass --stack") from None
        raise UserError(f"cannot read stack {stack!r}: {message}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in response["Stacks"][0].get("Outputs", [])}
    missing = [k for k in REQUIRED_STACK_OUTPUTS if k not in outputs]
    if missing:
        raise UserError(f"stack {stack!r} has no output {', '.join(missing)}: is it a lyrics-classifier stack?")
    return outputs


def _optional(value: str | None) -> str:
    return "" if value in (None, "-") else value


def console_url(state_machine_or_execution_arn: str) -> str:
    region = state_machine_or_execution_arn.split(":")[3]
    kind = "executions/details" if ":execution:" in state_machine_or_execution_arn else "statemachines/view"
    return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/{kind}/{state_machine_or_execution_arn}"


# --------------------------------------------------------------------------- submit


def cmd_submit(args: argparse.Namespace) -> int:
    csv_path: Path = args.csv
    if not csv_path.is_file():
        raise UserError(f"{csv_path}: no such file")
    session = _session(args)
    outputs = stack_outputs(session, args.stack)
    bucket = outputs["InputBucketName"]
    prefix, suffix = _optional(outputs.get("InputPrefix")), _optional(outputs.get("InputSuffix"))
    key = args.key if args.key is not None else prefix + csv_path.name
    suffixes = tuple(s.strip().lower() for s in suffix.split(",")) if suffix else ("",)
    if not key.startswith(prefix) or not key.lower().endswith(suffixes):
        raise UserError(
            f"key {key!r} would not start a run: the stack starts one for keys under {prefix or '(any prefix)'!r} "
            f"ending with {' or '.join(repr(s) for s in suffixes)} (any case); rename the file or pass --key"
        )

    s3 = session.client("s3")
    since = datetime.now(timezone.utc) - CLOCK_SKEW
    size = csv_path.stat().st_size
    print(f"uploading {csv_path} ({size:,} bytes) to s3://{bucket}/{key}")
    try:
        s3.upload_file(str(csv_path), bucket, key)
        head = s3.head_object(Bucket=bucket, Key=key)
    except _aws_errors() as exc:
        raise UserError(f"upload failed: {exc}") from None
    version_id = head.get("VersionId")
    if version_id == "null":  # unversioned bucket
        version_id = None

    sfn = session.client("stepfunctions")
    print("waiting for the upload to start an execution ...", flush=True)
    execution = find_execution(
        sfn, outputs["StateMachineArn"], bucket=bucket, key=key, version_id=version_id, since=since, timeout=args.find_timeout
    )
    if execution is None:
        print(
            f"no execution for s3://{bucket}/{key} appeared within {args.find_timeout:.0f}s. EventBridge may be slow, "
            f"or the upload did not match the trigger. Check `lyrics-classifier status --stack {args.stack}` and "
            f"the state machine: {console_url(outputs['StateMachineArn'])}"
        )
        return 1
    print(f"execution {execution['name']} {execution['status']}")
    print(f"  console: {console_url(execution['executionArn'])}")
    if not (args.wait or args.download):
        return 0
    code, result = follow(sfn, execution["executionArn"], outputs, poll=args.poll)
    if args.download:
        download(s3, outputs, key, result, Path(args.download))
    return code


def download(s3, outputs: dict[str, str], key: str, result: dict[str, Any], folder: Path) -> None:
    """The run's outputs into `folder`: the classified CSV, summary and report, or the failure report."""
    from .workflow import failure_key

    bucket = result.get("bucket") or outputs["OutputBucketName"]
    keys = [result[k] for k in ("result_key", "summary_key", "report_key") if result.get(k)] or [failure_key(key)]
    folder.mkdir(parents=True, exist_ok=True)
    for name in keys:
        target = folder / name.rsplit("/", 1)[-1]
        try:
            s3.download_file(bucket, name, str(target))
        except _aws_errors() as exc:
            raise UserError(f"cannot download s3://{bucket}/{name}: {exc}") from None
        print(f"  downloaded {target}")


def execution_input_names(payload: str | None, bucket: str, key: str, version_id: str | None) -> bool:
    """Is this execution input the EventBridge event of this upload?"""
    try:
        event = json.loads(payload or "")
        detail = event["detail"]
        obj = detail["object"]
        if detail["bucket"]["name"] != bucket:
            return False
        if obj["key"] != key and unquote_plus(obj["key"]) != key:
            return False
    except (ValueError, KeyError, TypeError):
        return False
    return version_id is None or obj.get("version-id") in (None, version_id)


def find_execution(
    sfn, state_machine_arn: str, *, bucket: str, key: str, version_id: str | None, since: datetime,
    timeout: float, interval: float | None = None,
) -> dict[str, Any] | None:  # fmt: skip
    interval = FIND_INTERVAL if interval is None else interval
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while True:
        for execution in _executions_since(sfn, state_machine_arn, since):
            arn = execution["executionArn"]
            if arn in seen:
                continue
            seen.add(arn)
            described = sfn.describe_execution(executionArn=arn)
            if execution_input_names(described.get("input"), bucket, key, version_id):
                return described
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        time.sleep(min(interval, remaining))


def _executions_since(sfn, state_machine_arn: str, since: datetime):
    """Executions started at or after `since`, newest first (list_executions' order)."""
    token = None
    while True:
        kwargs = {"stateMachineArn": state_machine_arn, "maxResults": 100}
        if token:
            kwargs["nextToken"] = token
        page = sfn.list_executions(**kwargs)
        for execution in page["executions"]:
            if _aware(execution["startDate"]) < since:
                return
            yield execution
        token = page.get("nextToken")
        if not token:
            return


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def follow(sfn, execution_arn: str, outputs: dict[str, str], *, poll: float) -> tuple[int, dict[str, Any]]:
    """Print progress until the execution ends; (0 when it succeeded, else 1; its output)."""
    last = None
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        status = described["status"]
        progress = _map_progress(sfn, execution_arn)
        line = status if progress is None else f"{status}: {progress}"
        if line != last:
            print(f"  {datetime.now().strftime('%H:%M:%S')} {line}", flush=True)
            last = line
        if status in TERMINAL:
            break
        time.sleep(poll)

    if status == "SUCCEEDED":
        result = _json(described.get("output"))
        out_bucket = result.get("bucket") or outputs["OutputBucketName"]
        print("succeeded")
        for field in ("rows_in", "rows_classified", "rows_rejected"):
            if field in result:
                print(f"  {field.replace('_', ' ')}: {result[field]:,}")
        if result.get("result_key"):
            print(f"  result:  s3://{out_bucket}/{result['result_key']}")
        if result.get("summary_key"):
            print(f"  summary: s3://{out_bucket}/{result['summary_key']}")
        return 0, result
    print(f"{status.lower().replace('_', ' ')}: {described.get('error') or status}")
    if described.get("cause"):
        print(f"  reason: {described['cause']}")
    print(f"  failure reports: s3://{outputs['OutputBucketName']}/failed/")
    return 1, {}


def _map_progress(sfn, execution_arn: str) -> str | None:
    """`12/40 ranges classified, 1 failed` from the Distributed Map run, if there is one."""
    try:
        runs = sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", [])
        if not runs:
            return None
        counts = sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"]).get("itemCounts", {})
    except Exception:  # progress is best effort: the status line is what matters
        return None
    if not counts:
        return None
    text = f"{counts.get('succeeded', 0)}/{counts.get('total', 0)} ranges classified"
    if counts.get("failed"):
        text += f", {counts['failed']} failed"
    return text


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------- status


def cmd_status(args: argparse.Namespace) -> int:
    session = _session(args)
    outputs = stack_outputs(session, args.stack)
    sfn = session.client("stepfunctions")
    arn = outputs["StateMachineArn"]
    try:
        executions = sfn.list_executions(stateMachineArn=arn, maxResults=max(1, min(args.limit, 1000)))["executions"]
    except _aws_errors() as exc:
        raise UserError(f"cannot list executions: {exc}") from None
    if args.json:
        listed = []
        for execution in executions:
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            stop = execution.get("stopDate")
            listed.append({
                "name": execution["name"],
                "status": execution["status"],
                "started": _aware(execution["startDate"]).isoformat(),
                "stopped": _aware(stop).isoformat() if stop else None,
                "seconds": round(((_aware(stop) if stop else datetime.now(timezone.utc))
                                  - _aware(execution["startDate"])).total_seconds(), 3),
                "input": _input_key(described.get("input")),
                "arn": execution["executionArn"],
            })
        print(json.dumps(listed, indent=1))
        return 0
    print(f"state machine: {console_url(arn)}")
    print(f"input:  s3://{outputs['InputBucketName']}/{_optional(outputs.get('InputPrefix'))}*{_optional(outputs.get('InputSuffix'))}")
    print(f"output: s3://{outputs['OutputBucketName']}/results/")
    if not executions:
        print("no executions yet: upload a CSV (lyrics-classifier submit songs.csv)")
        return 0
    rows = []
    for execution in executions:
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        rows.append(
            (
                execution["name"],
                execution["status"],
                _aware(execution["startDate"]).strftime("%Y-%m-%d %H:%M:%S"),
                _duration(execution),
                _input_key(described.get("input")),
            )
        )
    headers = ("EXECUTION", "STATUS", "STARTED (UTC)", "DURATION", "INPUT")
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _duration(execution: dict[str, Any]) -> str:
    start = _aware(execution["startDate"])
    stop = execution.get("stopDate")
    seconds = ((_aware(stop) if stop else datetime.now(timezone.utc)) - start).total_seconds()
    text = f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f}min"
    return text if stop else f"{text} so far"


def _input_key(payload: str | None) -> str:
    try:
        detail = json.loads(payload or "")["detail"]
        return f"s3://{detail['bucket']['name']}/{detail['object']['key']}"
    except (ValueError, KeyError, TypeError):
        return "-"
