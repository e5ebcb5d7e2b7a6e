"""`lyrics-classifier serve`, driven by the real AWS CLI (awscli from the package index), as a
user would try the deployed workflow without an account."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
AWS = Path(sys.executable).with_name("aws")  # installed with the test extra
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:LyricsClassifier-Workflow"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def stack():
    """The serve process and the environment that points a client at it."""
    port = free_port()
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    env.pop("AWS_PROFILE", None)
    process = subprocess.Popen([sys.executable, "-m", "lyrics_classifier", "serve", "--port", str(port)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    first = process.stdout.readline()  # blocks until the stack is deployed (or the process died)
    assert first.startswith(f"ready: http://127.0.0.1:{port}"), first + process.stderr.read()
    yield env, process
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def aws(env, *args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run([str(AWS), *args], env=env, capture_output=True, input=stdin, timeout=120)
    assert done.returncode == 0, f"aws {' '.join(args)}: {done.stderr.decode()}"
    return done.stdout


def wait_for_execution(env, key: str, timeout: float = 120) -> dict:
    """The execution the upload of `key` started, once it has ended (found by its input, as
    `submit` finds it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = json.loads(aws(env, "stepfunctions", "list-executions", "--state-machine-arn", MACHINE))
        for execution in listed["executions"]:
            described = json.loads(aws(env, "stepfunctions", "describe-execution",
                                       "--execution-arn", execution["executionArn"]))
            if json.loads(described["input"])["detail"]["object"]["key"] == key and described["status"] != "RUNNING":
                return described
        time.sleep(0.5)
    raise AssertionError(f"no finished execution for {key} within {timeout}s")


def keys(env, prefix: str, bucket: str = "lyrics-output") -> list[str]:
    listed = aws(env, "s3api", "list-objects-v2", "--bucket", bucket, "--prefix", prefix)
    return [o["Key"] for o in json.loads(listed or b"{}").get("Contents", [])]


def small_csv(tmp_path: Path, rows: int = 8) -> Path:
    with open(REPO / "samples" / "lyrics.csv", newline="", encoding="utf-8") as handle:
        sample = list(csv.DictReader(handle))[:rows]
    path = tmp_path / "small.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "lyrics"])
        writer.writeheader()
        writer.writerows({"id": r["id"], "lyrics": r["lyrics"]} for r in sample)
    return path


def test_an_upload_with_the_aws_cli_is_classified(stack):
    env, _ = stack
    aws(env, "s3", "cp", str(REPO / "samples" / "lyrics.csv"), "s3://lyrics-input/lyrics.csv")
    assert wait_for_execution(env, "lyrics.csv")["status"] == "SUCCEEDED"
    result = aws(env, "s3", "cp", "s3://lyrics-output/results/lyrics.classified.csv", "-")
    rows = list(csv.DictReader(io.StringIO(result.decode("utf-8"))))
    with open(REPO / "samples" / "lyrics.csv", newline="", encoding="utf-8") as handle:
        assert [r["id"] for r in rows] == [r["id"] for r in csv.DictReader(handle)]
    assert {r["label"] for r in rows} <= {"rock", "pop", "hip hop", "country", "latin"}
    listing = aws(env, "s3", "ls", "s3://lyrics-output/results/").decode()
    assert "lyrics.summary.json" in listing and "lyrics.report.html" in listing


def test_a_label_set_in_the_bucket_is_chosen_by_the_upload_folder(stack, tmp_path):
    env, _ = stack
    labels = json.dumps({"labels": {"sad": "a sad song about tears", "happy": "a happy song about joy"}}).encode()
    aws(env, "s3", "cp", "-", "s3://lyrics-input/labels/moods.json", stdin=labels)
    aws(env, "s3", "cp", str(small_csv(tmp_path)), "s3://lyrics-input/moods/small.csv")
    assert wait_for_execution(env, "moods/small.csv")["status"] == "SUCCEEDED"
    summary = json.loads(aws(env, "s3", "cp", "s3://lyrics-output/results/moods/small.summary.json", "-"))
    assert summary["label_set"]["sha256"] == hashlib.sha256(labels).hexdigest()
    assert summary["label_set"]["source"] == "s3://lyrics-input/labels/moods.json"
    assert set(summary["label_counts"]) == {"sad", "happy"} and summary["rows_classified"] == 8


def test_a_missing_label_set_fails_the_run_with_a_readable_report(stack, tmp_path):
    env, _ = stack
    aws(env, "s3", "cp", str(small_csv(tmp_path)), "s3://lyrics-input/nowhere/small.csv")
    assert wait_for_execution(env, "nowhere/small.csv")["status"] == "FAILED"
    report = json.loads(aws(env, "s3", "cp", "s3://lyrics-output/failed/nowhere/small.error.json", "-"))
    assert report["reason"].startswith("s3://lyrics-input/labels/nowhere.json does not exist")
    assert "results/nowhere/" not in aws(env, "s3", "ls", "--recursive", "s3://lyrics-output/results/").decode()


def test_submit_and_status_work_against_the_local_stack(stack, tmp_path):
    env, _ = stack
    done = subprocess.run([sys.executable, "-m", "lyrics_classifier", "submit", str(small_csv(tmp_path)),
                           "--key", "submitted.csv", "--wait", "--poll", "0.5"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "s3://lyrics-output/results/submitted.classified.csv" in done.stdout
    status = subprocess.run([sys.executable, "-m", "lyrics_classifier", "status"], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "s3://lyrics-input/submitted.csv" in status.stdout and "SUCCEEDED" in status.stdout
    listed = subprocess.run([sys.executable, "-m", "lyrics_classifier", "status", "--json"], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    mine = [e for e in json.loads(listed.stdout) if e["input"] == "s3://lyrics-input/submitted.csv"]
    assert mine and mine[0]["status"] == "SUCCEEDED" and mine[0]["seconds"] > 0


def test_submit_download_fetches_the_result_or_the_failure_report(stack, tmp_path):
    env, _ = stack
    source = small_csv(tmp_path)
    done = subprocess.run([sys.executable, "-m", "lyrics_classifier", "submit", str(source), "--key", "fetched.csv",
                           "--download", str(tmp_path / "got"), "--poll", "0.5"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "got").iterdir()) == [
        "fetched.classified.csv", "fetched.report.html", "fetched.summary.json"]
    assert len((tmp_path / "got" / "fetched.classified.csv").read_text().splitlines()) > 8
    failed = subprocess.run([sys.executable, "-m", "lyrics_classifier", "submit", str(source), "--key",
                             "missing-labels/x.csv", "--download", str(tmp_path / "bad"), "--poll", "0.5"],
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert failed.returncode == 1
    report = json.loads((tmp_path / "bad" / "x.error.json").read_text())
    assert "labels/missing-labels.json does not exist" in report["reason"]


def test_an_upper_case_suffix_starts_a_run_as_the_deployed_rule_does(stack, tmp_path):
    env, _ = stack
    aws(env, "s3", "cp", str(small_csv(tmp_path)), "s3://lyrics-input/SHOUTED.CSV")
    assert wait_for_execution(env, "SHOUTED.CSV")["status"] == "SUCCEEDED"
    assert "SHOUTED.classified.csv" in aws(env, "s3", "ls", "s3://lyrics-output/results/").decode()


def test_serve_meets_faults_and_cleans_up_a_run_that_timed_out(tmp_path):
    """`serve --fault`: the same harness as `run --fault`. The execution's own timeout is
    seen by no Catch; the Cleanup rule still writes the report and aborts the upload."""
    port = free_port()
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    log = tmp_path / "serve.log"
    process = subprocess.Popen([sys.executable, "-m", "lyrics_classifier", "serve", "--port", str(port),
                                "--fault", "execution:timeout", "--fault", "split:repeat"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
    try:
        assert process.stdout.readline().startswith("ready:"), log.read_text()
        aws(env, "s3", "cp", str(small_csv(tmp_path)), "s3://lyrics-input/late.csv")
        wait_for_execution(env, "late.csv")
        deadline = time.monotonic() + 30
        while "failed/late.error.json" not in keys(env, "failed/"):
            assert time.monotonic() < deadline, f"no failure report; serve said: {log.read_text()[-3000:]}"
            time.sleep(0.5)
        report = json.loads(aws(env, "s3", "cp", "s3://lyrics-output/failed/late.error.json", "-"))
        assert report["error"] == "States.Timeout" and "time limit" in report["reason"]
        uploads = json.loads(aws(env, "s3api", "list-multipart-uploads", "--bucket", "lyrics-output") or b"{}")
        assert not uploads.get("Uploads")
        assert not [key for key in keys(env, "results/") if "late" in key]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def test_ctrl_c_stops_the_stack(stack):
    _, process = stack
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    assert "stopped" in process.stdout.read()
