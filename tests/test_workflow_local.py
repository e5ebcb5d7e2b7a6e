"""The whole workflow through the local runner: the ASL file in moto's Step Functions
interpreter, moto S3, and the real handlers with the real default model."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lyrics_classifier import local
from lyrics_classifier.csvfile import iter_records
from lyrics_classifier.handlers import classify

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture(autouse=True)
def _model(default_model_dir, monkeypatch):
    monkeypatch.setenv("LYRICS_CLASSIFIER_MODEL", str(default_model_dir))


def run(tmp_path: Path, data: bytes | str, name: str = "songs.csv", **options) -> local.RunResult:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    options.setdefault("concurrency", 2)
    return local.run_workflow(path, **options)


def read_rows(path: Path) -> list[list[str]]:
    # bytes, not read_text(): universal newlines would turn a quoted "\r\n" into "\n"
    return list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))


def test_sample_lyrics_end_to_end(tmp_path):
    source = SAMPLES / "lyrics.csv"
    target = tmp_path / "lyrics.csv"
    target.write_bytes(source.read_bytes())
    result = local.run_workflow(target, concurrency=2)
    assert result.output_csv == tmp_path / "lyrics.classified.csv"
    assert result.summary_path == tmp_path / "lyrics.summary.json"
    inputs = read_rows(target)
    outputs = read_rows(result.output_csv)
    assert len(outputs) == len(inputs)
    width = len(inputs[0])
    for original, row in zip(inputs[1:], outputs[1:]):
        assert row[:width] == original
        assert row[width] in ("rock", "pop", "hip hop", "country", "latin")
    summary = json.loads(result.summary_path.read_text())
    assert summary["rows_in"] == len(inputs) - 1 == summary["rows_classified"]
    assert summary["ranges"] == 1  # a small file is one range, one part
    assert set(summary["timings"]) >= {"split_seconds", "classify_seconds_sum", "merge_seconds"}


BAD_INPUTS = {
    # name: (file bytes, expected failure reason or None if it must succeed)
    "empty file": (b"", "the file is empty"),
    "no text column": (b"id,title\n1,x\n", "no lyrics column found: looked for 'lyrics', 'lyric', 'text'"),
    "unbalanced quotes": (b'id,lyrics\n1,"never closed\n2,fine\n', "line 2: a quoted field is never closed"),
    "binary named .csv": (bytes(range(256)) * 64, "looks binary"),
    "more fields than header": (b"id,lyrics\n1,hello,extra\n", "line 2: 3 fields, but the header has 2"),
    "header only": (b"id,lyrics\n", None),
    "multi-line quoted lyrics": (b'id,lyrics\n1,"first line\nsecond line\r\nthird"\n', None),
    "utf-8 BOM": ("\ufeffid,Lyrics\n1,la vida es una fiesta\n".encode("utf-8"), None),
    "latin-1 bytes": ("id,lyrics\n1,mi corazón está bailando\n".encode("latin-1"), None),
    "utf-16": ("id,lyrics\n1,corazón\n2,highway\n".encode("utf-16"), None),
    "empty lyrics rows": (b'id,lyrics\n1,\n2,"   "\n3,real words here\n', None),
    "duplicate ids": (b"id,lyrics\n1,one\n1,two\n", None),
    "extra columns with commas quotes newlines": (
        b'id,lyrics,note\n1,words,"a, ""b""\nc"\n', None
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_readably_or_accounts_for_every_row(tmp_path, case):
    data, reason = BAD_INPUTS[case]
    csv_path, summary_path, error_path = local.output_paths(tmp_path / "songs.csv", None)
    if reason is not None:
        with pytest.raises(local.RunFailed, match=reason.replace("(", r"\(")) as excinfo:
            run(tmp_path, data)
        assert not csv_path.exists() and not summary_path.exists()  # no partial output
        report = json.loads(error_path.read_text())
        assert report["reason"] == str(excinfo.value) and report["error"] == "InputError"
        return
    result = run(tmp_path, data)
    text = data.decode("utf-16") if case == "utf-16" else data.decode("utf-8-sig" if case != "latin-1 bytes" else "latin-1")
    inputs = list(iter_records(io.StringIO(text, newline="")))
    outputs = read_rows(result.output_csv)
    assert len(outputs) == len(inputs)
    for original, row in zip(inputs[1:], outputs[1:]):
        assert row[: len(original.fields)] == original.fields
    summary = result.summary
    assert summary["rows_in"] == len(inputs) - 1 == summary["rows_classified"] + summary["rows_rejected"]
    if case == "empty lyrics rows":
        assert summary["rejected_by_reason"] == {"empty lyrics": 2}
        assert [row[-2] for row in outputs[1:]] == ["empty lyrics", "empty lyrics", ""]


def test_text_column_by_name_and_a_missing_one(tmp_path):
    result = run(tmp_path, "song_id,Body\n1,dirt road and a pickup truck\n", text_column="body")
    assert result.summary["text_column"] == "Body" and result.summary["rows_classified"] == 1
    with pytest.raises(local.RunFailed, match=r"text column 'words' is not in the header; the columns are: 'id', 'lyrics'"):
        run(tmp_path, "id,lyrics\n1,x\n", text_column="words")


def test_a_200_kb_lyric_is_classified(tmp_path):
    long_lyric = "we ride the thunder down the highway tonight\n" * 4700
    assert len(long_lyric) > 200_000
    data = io.StringIO()
    csv.writer(data).writerows([["id", "lyrics"], ["1", long_lyric], ["2", "short one"]])
    result = run(tmp_path, data.getvalue())
    rows = read_rows(result.output_csv)
    assert rows[1][1] == long_lyric and rows[1][2] and result.summary["rows_classified"] == 2


def test_key_with_spaces_and_non_ascii(tmp_path):
    result = run(tmp_path, "lyrics\nbaila conmigo\n", name="mis canciones ñ (2024).csv")
    assert result.output_csv.name == "mis canciones ñ (2024).classified.csv"
    assert result.summary["input"]["key"] == "mis canciones ñ (2024).csv"


def test_a_file_of_several_ranges_passes_through_the_state_machine(tmp_path, three_ranges):
    result = run(tmp_path, three_ranges, range_mb=6)
    assert result.summary["ranges"] == 3 and result.summary["rows_in"] == 2900
    assert result.summary["rejected_by_reason"] == {"empty lyrics": 2}
    assert [row[0] for row in read_rows(result.output_csv)[1:]] == [str(i) for i in range(2900)]


def test_classify_that_fails_once_is_retried_and_the_run_succeeds(tmp_path, three_ranges):
    failed_once: set[int] = set()

    def flaky_classify(event, context):
        index = event["range"]["index"]
        if index not in failed_once:
            failed_once.add(index)
            raise ConnectionResetError("connection reset by peer while reading the range")
        return classify.handler(event, context)

    handlers = local.default_handlers() | {"Classify": flaky_classify}
    result = run(tmp_path, three_ranges, range_mb=6, handlers=handlers)
    assert failed_once == {0, 1, 2}
    assert result.summary["rows_in"] == 2900


def test_classify_that_always_fails_ends_in_the_failure_report_and_no_result(tmp_path, three_ranges):
    def broken_classify(event, context):
        if event["range"]["index"] == 1:
            raise MemoryError("Runtime exited: out of memory")
        return classify.handler(event, context)

    handlers = local.default_handlers() | {"Classify": broken_classify}
    with pytest.raises(local.RunFailed, match=r"1 of 3 ranges were not classified: range 1") as excinfo:
        run(tmp_path, three_ranges, range_mb=6, handlers=handlers)
    assert excinfo.value.report["execution_id"].startswith("local-")
    assert excinfo.value.first_error == "Classify: MemoryError: Runtime exited: out of memory"
    csv_path, summary_path, error_path = local.output_paths(tmp_path / "songs.csv", None)
    assert error_path.exists() and not csv_path.exists() and not summary_path.exists()


def test_throttled_classify_invocations_slow_the_run_down_instead_of_failing_it(tmp_path, three_ranges):
    # Three ranges at once against a concurrency cap of one: Lambda answers 429 and the
    # state machine's jittered TooManyRequestsException retry waits until a slot is free.
    result = run(tmp_path, three_ranges, range_mb=6, concurrency=3, classify_concurrency=1)
    assert result.throttled > 0
    assert result.summary["rows_in"] == 2900 and result.summary["ranges"] == 3


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "lyrics_classifier", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=300,
    )


def test_cli_run_prints_a_summary_and_writes_beside_the_input(tmp_path):
    (tmp_path / "songs.csv").write_text("id,lyrics\n1,whiskey on the porch\n2,\n")
    done = _cli("run", "songs.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 rows in" in done.stdout and "1 classified, 1 rejected" in done.stdout
    assert "rejected: 1 x empty lyrics" in done.stdout
    assert "classified 1/1 ranges (100%), 2 rows" in done.stderr  # progress
    assert (tmp_path / "songs.classified.csv").exists() and (tmp_path / "songs.summary.json").exists()


def test_cli_run_failure_is_a_readable_reason_not_a_traceback(tmp_path):
    (tmp_path / "songs.csv").write_text("id,title\n1,x\n")
    done = _cli("run", "songs.csv", "-q", cwd=tmp_path)
    assert done.returncode == 1
    assert "error: no lyrics column found" in done.stderr and "Traceback" not in done.stderr + done.stdout
    assert "failure report: songs.error.json" in done.stderr
    missing = _cli("run", "nope.csv", cwd=tmp_path)
    assert missing.returncode == 2 and "error: nope.csv: no such file" in missing.stderr
    same = _cli("run", "songs.csv", "-o", "songs.csv", cwd=tmp_path)
    assert same.returncode == 2 and "error: --output songs.csv is the input file" in same.stderr
    no_model = _cli("run", "songs.csv", "--model", "absent", cwd=tmp_path)
    assert no_model.returncode == 2 and "error: no model at absent (model.onnx is missing)" in no_model.stderr


def test_cli_run_help_explains_the_options(tmp_path):
    done = _cli("run", "--help", cwd=tmp_path)
    for option in ("--output", "--text-column", "--range-mb", "--concurrency", "--model"):
        assert option in done.stdout
    text = " ".join(done.stdout.split())
    assert "(default: None)" not in text and "(default: False)" not in text
    assert ") (default:" not in text  # each default said once
    assert "examples: lyrics-classifier run " in text and "language" in text


def test_cli_version(tmp_path):
    from importlib.metadata import version

    done = _cli("--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"lyrics-classifier {version('lyrics-classifier')}"


@contextlib.contextmanager
def in_process_stack(model_dir: Path, monkeypatch):
    """The state machine on moto with the real handlers, executions started by hand with the
    events EventBridge would deliver: yields (s3, start), start(event, name) -> described."""
    import time

    import boto3
    from moto import mock_aws

    from lyrics_classifier import awsrules
    from lyrics_classifier.handlers import settings

    for key, value in {"AWS_DEFAULT_REGION": local.REGION, "POWERTOOLS_METRICS_DISABLED": "true"}.items():
        monkeypatch.setenv(key, value)
    awsrules.apply()
    given = settings.Settings(output_bucket=local.OUTPUT_BUCKET, model_dir=str(model_dir))
    with settings.use(given), mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        router = local.LambdaRouter(local.default_handlers(), local.Progress())
        boto3.DEFAULT_SESSION.events.register("before-send.lambda.Invoke", router)
        s3, sfn = boto3.client("s3"), boto3.client("stepfunctions")
        for bucket in (local.INPUT_BUCKET, local.OUTPUT_BUCKET):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        machine = sfn.create_state_machine(
            name="events", definition=local.load_definition(2), roleArn=f"arn:aws:iam::{local.ACCOUNT}:role/x"
        )["stateMachineArn"]

        def start(event: dict, name: str) -> dict:
            arn = sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps(event))["executionArn"]
            while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
                time.sleep(0.1)
            return described

        yield s3, start


def event_for(s3, key: str, version_id: str | None = None, **detail) -> dict:
    head = s3.head_object(Bucket=local.INPUT_BUCKET, Key=key, **({"VersionId": version_id} if version_id else {}))
    event = local.object_created_event(local.INPUT_BUCKET, key, head)
    event["detail"].update(detail)
    return event


def output(s3, key: str) -> bytes:
    return s3.get_object(Bucket=local.OUTPUT_BUCKET, Key=key)["Body"].read()


def test_the_same_event_delivered_twice_runs_once(default_model_dir, monkeypatch):
    """EventBridge delivers at least once: the second execution ends at `Duplicate`, also when
    it arrives long after the first finished."""
    with in_process_stack(default_model_dir, monkeypatch) as (s3, start):
        s3.put_object(Bucket=local.INPUT_BUCKET, Key="songs.csv", Body=b"lyrics\nhello road\n")
        event = event_for(s3, "songs.csv")
        first, second = start(event, "first"), start(event, "second")
        assert first["status"] == second["status"] == "SUCCEEDED"
        assert json.loads(first["output"])["status"] == "complete"
        assert json.loads(second["output"])["duplicate_of"] == "first"
        work = s3.list_objects_v2(Bucket=local.OUTPUT_BUCKET, Prefix="runs/second/").get("Contents", [])
        assert work == []


def test_events_as_aws_sends_them(default_model_dir, monkeypatch):
    """URL-encoded keys, multipart and copy uploads, and versions delivered out of order: an
    older version's event arriving last never replaces the newer version's result."""
    with in_process_stack(default_model_dir, monkeypatch) as (s3, start):
        key = "mis canciones ñ.csv"
        s3.put_object(Bucket=local.INPUT_BUCKET, Key=key, Body=b"lyrics\nbaila conmigo\n")
        event = event_for(s3, key, reason="CompleteMultipartUpload")
        event["detail"]["object"]["key"] = "mis+canciones+%C3%B1.csv"  # as S3 notifications encode keys
        assert start(event, "encoded")["status"] == "SUCCEEDED"
        assert b"baila conmigo" in output(s3, "results/mis canciones ñ.classified.csv")

        s3.copy_object(Bucket=local.INPUT_BUCKET, Key="copy.csv", CopySource={"Bucket": local.INPUT_BUCKET, "Key": key})
        assert start(event_for(s3, "copy.csv", reason="CopyObject"), "copied")["status"] == "SUCCEEDED"
        assert b"baila conmigo" in output(s3, "results/copy.classified.csv")

        old = s3.put_object(Bucket=local.INPUT_BUCKET, Key="songs.csv", Body=b"lyrics\nfirst words\n")["VersionId"]
        new = s3.put_object(Bucket=local.INPUT_BUCKET, Key="songs.csv", Body=b"lyrics\nsecond words\n")["VersionId"]
        assert start(event_for(s3, "songs.csv", new), "newer")["status"] == "SUCCEEDED"
        late = start(event_for(s3, "songs.csv", old), "older")
        assert late["status"] == "SUCCEEDED" and json.loads(late["output"])["status"] == "superseded"
        result = output(s3, "results/songs.classified.csv")
        assert b"second words" in result and b"first words" not in result
        assert "Contents" not in s3.list_objects_v2(Bucket=local.OUTPUT_BUCKET, Prefix="failed/")
        assert s3.list_multipart_uploads(Bucket=local.OUTPUT_BUCKET).get("Uploads", []) == []


def test_the_output_format_follows_the_name_asked_for(tmp_path):
    (tmp_path / "songs.csv").write_text("id,lyrics\n1,whiskey on the porch\n2,baila conmigo toda la noche\n")
    plain = _cli("run", "songs.csv", "-q", "-o", "plain.csv", cwd=tmp_path)
    packed = _cli("run", "songs.csv", "-q", "-o", "packed.csv.gz", cwd=tmp_path)
    assert plain.returncode == packed.returncode == 0, plain.stderr + packed.stderr
    import gzip

    assert gzip.decompress((tmp_path / "packed.csv.gz").read_bytes()) == (tmp_path / "plain.csv").read_bytes()
    assert (tmp_path / "packed.summary.json").is_file() and (tmp_path / "packed.report.html").is_file()
    for name in ("out.parquet", "out.xlsx"):  # refused before any work, not written as CSV
        done = _cli("run", "songs.csv", "-o", f"sub/{name}", cwd=tmp_path)
        assert done.returncode == 2 and "cannot write" in done.stderr and "name a .csv (or .tsv) file" in done.stderr
    assert not (tmp_path / "sub").exists()


def test_tsv_and_semicolon_files_run_and_keep_their_delimiter(tmp_path):
    (tmp_path / "songs.tsv").write_text("id\tlyrics\n1\twhiskey on the porch, tonight\n")
    done = _cli("run", "songs.tsv", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = (tmp_path / "songs.classified.tsv").read_text().splitlines()
    assert rows[0].startswith("id\tlyrics\tlabel\tscore\t") and rows[1].startswith("1\twhiskey on the porch, tonight\t")
    # a header that reads as comma-separated just as well: --delimiter says which it is
    (tmp_path / "odd.csv").write_text("id,no;lyrics\n1,2;baila conmigo toda la noche\n")
    done = _cli("run", "odd.csv", "-q", "--delimiter", "semicolon", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "odd.classified.csv").read_text().splitlines()[1].startswith("1,2;baila conmigo toda la noche;")
    wrong = _cli("run", "odd.csv", "--delimiter", "colon", cwd=tmp_path)
    assert wrong.returncode == 2 and "use one of comma" in wrong.stderr


def test_a_gzip_file_runs_and_its_result_is_gzip_too(tmp_path):
    import gzip

    data = b"id,lyrics\n1,whiskey on the porch tonight\n2,baila conmigo toda la noche\n"
    (tmp_path / "songs.csv.gz").write_bytes(gzip.compress(data))
    (tmp_path / "plain.csv").write_bytes(data)
    assert _cli("run", "songs.csv.gz", "-q", cwd=tmp_path).returncode == 0
    assert _cli("run", "plain.csv", "-q", cwd=tmp_path).returncode == 0
    assert gzip.decompress((tmp_path / "songs.classified.csv.gz").read_bytes()) == \
        (tmp_path / "plain.classified.csv").read_bytes()
    summary = json.loads((tmp_path / "songs.summary.json").read_text())
    assert summary["input"]["compression"] == "gzip" and summary["rows_in"] == 2


def test_a_json_lines_file_runs_and_its_result_is_json_lines(tmp_path):
    rows = [{"id": "a1", "lyrics": "whiskey on the porch tonight"}, {"id": "a2", "Lyrics": "Instrumental"}]
    (tmp_path / "songs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = _cli("run", "songs.jsonl", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in (tmp_path / "songs.classified.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == ["a1", "a2"] and out[0]["label"] == "country"
    assert out[1]["label"] is None and out[1]["error"] == "not lyrics: a placeholder"
    wrong = _cli("run", "songs.jsonl", "-o", "songs.csv", cwd=tmp_path)
    assert wrong.returncode == 2 and "the input is JSON Lines, so is the output" in wrong.stderr
