"""`submit` and `status` against moto: a stack with the real output names (moto
CloudFormation), versioned buckets, and a state machine run by moto's interpreter.

moto has no EventBridge -> Step Functions delivery, so `FakeEventBridge` plays it: a thread
that watches the input bucket for new object versions and starts an execution with the
"Object Created" event as input, as the stack's rule does. The CLI under test does not
know about it: it uploads, then searches the executions by their input, as it does on AWS.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timezone

import boto3
import pytest
from moto import mock_aws

from lyrics_classifier import deployed
from lyrics_classifier.cli import main

REGION = "eu-west-1"
STACK = "LyricsClassifier"
INPUT_BUCKET = "lyrics-input-bucket"
OUTPUT_BUCKET = "lyrics-output-bucket"

SUCCEEDS = {
    "StartAt": "Merge",
    "States": {
        "Merge": {
            "Type": "Pass",
            "Result": {
                "bucket": OUTPUT_BUCKET,
                "result_key": "results/songs.classified.csv",
                "summary_key": "results/songs.summary.json",
                "rows_in": 3,
                "rows_classified": 2,
                "rows_rejected": 1,
            },
            "End": True,
        }
    },
}
FAILS = {
    "StartAt": "Failed",
    "States": {"Failed": {"Type": "Fail", "Error": "InputError", "Cause": "songs.csv: no lyrics column (looked for lyrics, lyric, text)"}},
}


@pytest.fixture
def aws(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setattr(deployed, "FIND_INTERVAL", 0.1)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield boto3.session.Session(region_name=REGION)


def deploy(session, definition: dict, *, prefix: str = "", suffix: str = ".csv") -> str:
    """A stand-in for the CDK stack: same output keys, versioned input bucket, a state machine."""
    sfn = session.client("stepfunctions")
    arn = sfn.create_state_machine(
        name=f"{STACK}-Workflow",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/workflow",
    )["stateMachineArn"]
    template = {
        "Resources": {
            "Input": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": INPUT_BUCKET}},
            "Output": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": OUTPUT_BUCKET}},
        },
        "Outputs": {
            "InputBucketName": {"Value": {"Ref": "Input"}},
            "InputPrefix": {"Value": prefix or "-"},
            "InputSuffix": {"Value": suffix or "-"},
            "OutputBucketName": {"Value": {"Ref": "Output"}},
            "StateMachineArn": {"Value": arn},
        },
    }
    session.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    session.client("s3").put_bucket_versioning(Bucket=INPUT_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return arn


def s3_event(bucket: str, key: str, version_id: str | None, size: int = 0) -> dict:
    """The EventBridge "Object Created" event, as the stack's rule passes it to the state machine."""
    obj = {"key": key, "size": size, "etag": uuid.uuid4().hex, "sequencer": "0066"}
    if version_id:
        obj["version-id"] = version_id
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": obj,
            "request-id": "R",
            "requester": "123456789012",
            "reason": "PutObject",
        },
    }


class FakeEventBridge:
    """Starts an execution for every new object version in the input bucket."""

    def __init__(self, session, state_machine_arn: str, delay: float = 0.3):
        self.s3 = session.client("s3")
        self.sfn = session.client("stepfunctions")
        self.arn = state_machine_arn
        self.delay = delay
        self.seen: set[tuple[str, str]] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        for v in self.s3.list_object_versions(Bucket=INPUT_BUCKET).get("Versions", []):
            self.seen.add((v["Key"], v["VersionId"]))
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)

    def _run(self):
        while not self.stop.is_set():
            for v in self.s3.list_object_versions(Bucket=INPUT_BUCKET).get("Versions", []):
                if (v["Key"], v["VersionId"]) in self.seen:
                    continue
                self.seen.add((v["Key"], v["VersionId"]))
                time.sleep(self.delay)  # EventBridge delivery is not instant
                self.sfn.start_execution(
                    stateMachineArn=self.arn,
                    name=str(uuid.uuid4()),
                    input=json.dumps(s3_event(INPUT_BUCKET, v["Key"], v["VersionId"], v["Size"])),
                )
            time.sleep(0.05)


@pytest.fixture
def songs(tmp_path):
    path = tmp_path / "songs.csv"
    path.write_text("id,lyrics\n1,hello darkness my old friend\n2,country roads take me home\n3,\n")
    return path


def test_submit_wait_reports_the_result(aws, songs, capsys):
    arn = deploy(aws, SUCCEEDS)
    sfn = aws.client("stepfunctions")
    # Decoys: executions for another key and for an older version of the same key.
    sfn.start_execution(stateMachineArn=arn, name="other-file", input=json.dumps(s3_event(INPUT_BUCKET, "other.csv", "v0")))
    sfn.start_execution(stateMachineArn=arn, name="older-upload", input=json.dumps(s3_event(INPUT_BUCKET, "songs.csv", "old")))
    with FakeEventBridge(aws, arn):
        rc = main(["submit", str(songs), "--stack", STACK, "--region", REGION, "--wait", "--poll", "0.05", "--find-timeout", "20"])
    out = capsys.readouterr().out
    print(out)
    assert rc == 0
    assert f"to s3://{INPUT_BUCKET}/songs.csv" in out
    assert "other-file" not in out and "older-upload" not in out
    assert "succeeded" in out
    assert f"s3://{OUTPUT_BUCKET}/results/songs.classified.csv" in out
    assert f"s3://{OUTPUT_BUCKET}/results/songs.summary.json" in out
    assert "rows classified: 2" in out
    body = aws.client("s3").get_object(Bucket=INPUT_BUCKET, Key="songs.csv")["Body"].read()
    assert body == songs.read_bytes()


def test_submit_finds_the_execution_of_this_upload_among_re_uploads(aws, songs, capsys):
    arn = deploy(aws, SUCCEEDS)
    with FakeEventBridge(aws, arn, delay=0.0):
        assert main(["submit", str(songs), "--stack", STACK, "--find-timeout", "20"]) == 0
        first = capsys.readouterr().out
        assert main(["submit", str(songs), "--stack", STACK, "--find-timeout", "20"]) == 0
        second = capsys.readouterr().out
    name = lambda out: next(line.split()[1] for line in out.splitlines() if line.startswith("execution "))  # noqa: E731
    assert name(first) != name(second)
    executions = aws.client("stepfunctions").list_executions(stateMachineArn=arn)["executions"]
    assert {name(first), name(second)} == {e["name"] for e in executions}


def test_submit_wait_reports_the_failure_reason(aws, songs, capsys):
    arn = deploy(aws, FAILS)
    with FakeEventBridge(aws, arn):
        rc = main(["submit", str(songs), "--stack", STACK, "--wait", "--poll", "0.05", "--find-timeout", "20"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "failed: InputError" in out
    assert "no lyrics column" in out
    assert f"s3://{OUTPUT_BUCKET}/failed/" in out


def test_submit_uses_the_input_prefix(aws, songs, capsys):
    arn = deploy(aws, SUCCEEDS, prefix="uploads/")
    with FakeEventBridge(aws, arn, delay=0.0):
        assert main(["submit", str(songs), "--stack", STACK, "--find-timeout", "20"]) == 0
    assert f"s3://{INPUT_BUCKET}/uploads/songs.csv" in capsys.readouterr().out


def test_submit_without_an_execution_says_so(aws, songs, capsys):
    deploy(aws, SUCCEEDS)  # no FakeEventBridge: nothing starts an execution
    rc = main(["submit", str(songs), "--stack", STACK, "--find-timeout", "0.5"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "no execution for" in out and "status --stack" in out


def test_submit_refuses_keys_the_trigger_ignores(aws, tmp_path, capsys):
    deploy(aws, SUCCEEDS)
    tsv = tmp_path / "songs.tsv"
    tsv.write_text("lyrics\nla la\n")
    assert main(["submit", str(tsv), "--stack", STACK]) == 2
    assert "would not start a run" in capsys.readouterr().err
    assert main(["submit", str(tmp_path / "missing.csv"), "--stack", STACK]) == 2


def test_unknown_stack_is_a_user_error(aws, songs, capsys):
    assert main(["status", "--stack", "NoSuchStack"]) == 2
    assert "not found" in capsys.readouterr().err


def test_status_lists_recent_executions(aws, capsys):
    arn = deploy(aws, SUCCEEDS)
    sfn = aws.client("stepfunctions")
    for key in ("a.csv", "b.csv"):
        sfn.start_execution(stateMachineArn=arn, name=key.removesuffix(".csv"), input=json.dumps(s3_event(INPUT_BUCKET, key, None)))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        e["status"] == "RUNNING" for e in sfn.list_executions(stateMachineArn=arn)["executions"]
    ):
        time.sleep(0.05)
    assert main(["status", "--stack", STACK]) == 0
    out = capsys.readouterr().out
    assert "EXECUTION" in out and "STATUS" in out
    assert f"s3://{INPUT_BUCKET}/a.csv" in out and f"s3://{INPUT_BUCKET}/b.csv" in out
    assert "SUCCEEDED" in out
    assert "states/home?region=eu-west-1" in out


def test_status_with_no_executions(aws, capsys):
    deploy(aws, SUCCEEDS)
    assert main(["status", "--stack", STACK]) == 0
    assert "no executions yet" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("key", "version", "expected"),
    [
        ("songs.csv", "v1", True),
        ("songs.csv", "v2", False),  # another upload of the same key
        ("other.csv", "v1", False),
        ("my+songs.csv", "v1", True),  # S3 event keys may arrive URL-encoded
    ],
)
def test_execution_input_matching(key, version, expected):
    wanted = "my songs.csv" if key.startswith("my") else "songs.csv"
    payload = json.dumps(s3_event(INPUT_BUCKET, key, version))
    assert deployed.execution_input_names(payload, INPUT_BUCKET, wanted, "v1") is expected
    assert deployed.execution_input_names(payload, "another-bucket", wanted, "v1") is False
    assert deployed.execution_input_names("not json", INPUT_BUCKET, wanted, "v1") is False


@pytest.mark.aws
def test_real_aws_smoke(tmp_path, capsys):
    """Against a deployed stack, only when asked: LYRICS_CLASSIFIER_SMOKE_STACK=<stack name>
    (and AWS credentials/region in the environment). Uploads samples/lyrics.csv under a unique
    name, waits for the run, and checks the result object exists."""
    import os
    from pathlib import Path

    stack = os.environ.get("LYRICS_CLASSIFIER_SMOKE_STACK")
    if not stack:
        pytest.skip("set LYRICS_CLASSIFIER_SMOKE_STACK=<deployed stack> (with AWS credentials) to run")
    sample = Path(__file__).resolve().parents[1] / "samples" / "lyrics.csv"
    upload = tmp_path / f"smoke-{uuid.uuid4().hex[:8]}.csv"
    upload.write_bytes(sample.read_bytes())
    rc = main(["submit", str(upload), "--stack", stack, "--wait", "--find-timeout", "300"])
    out = capsys.readouterr().out
    print(out)
    assert rc == 0, out
    result_uri = next(line.split()[-1] for line in out.splitlines() if line.strip().startswith("result:"))
    bucket, key = result_uri.removeprefix("s3://").split("/", 1)
    head = boto3.client("s3").head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] > sample.stat().st_size
