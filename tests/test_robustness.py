"""Misuse and faults a new user meets: one line of reason, a documented exit code (0 ok, 1
failed run, 2 usage or environment, 130 interrupted), output paths checked before any work,
and nothing half-written."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OFFLINE = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1"}


def cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lyrics_classifier", *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})}, timeout=timeout)


def one_line_error(done: subprocess.CompletedProcess, code: int, text: str) -> None:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], done.stderr


def big_csv(path: Path, copies: int = 20) -> Path:
    with open(REPO / "samples" / "multilingual.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "lyrics"])
        for copy in range(copies):
            writer.writerows([f"{r['id']}-{copy}", r["lyrics"]] for r in rows)
    return path


@pytest.mark.slow
def test_ctrl_c_during_run_exits_130_and_writes_nothing(tmp_path):
    source = big_csv(tmp_path / "big.csv")
    out = tmp_path / "out" / "big.classified.csv"
    # SIGINT as a terminal sends it (a shell's background job would ignore it)
    process = subprocess.Popen([sys.executable, "-m", "lyrics_classifier", "run", str(source), "-o", str(out)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert process.stderr is not None
    assert process.stderr.readline().startswith(("indexing", "classified"))  # the run is under way
    time.sleep(2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "terminate called" not in stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_output_that_is_a_directory_is_refused_before_any_work(tmp_path):
    one_line_error(cli("run", "samples/lyrics.csv", "-o", str(tmp_path)), 2, "is a directory; name a file")
    assert list(tmp_path.iterdir()) == []


def test_an_output_folder_that_cannot_be_made_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(cli("run", "samples/lyrics.csv", "-o", str(blocker / "out.csv")), 2, "cannot write to")


@pytest.mark.parametrize("command", [["status"], ["submit", "samples/lyrics.csv"]])
def test_no_network_is_one_line(command):
    one_line_error(cli(*command, env=OFFLINE), 2, "cannot reach AWS")


def test_train_refuses_an_out_that_is_a_file_before_embedding(tmp_path):
    target = tmp_path / "model"
    target.write_text("not a directory")
    one_line_error(cli("train", "samples/lyrics.csv", "--label-column", "genre", "--out", str(target)),
                   2, "is a file; name a directory")


def test_train_reads_csv_strictly(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text('lyrics,genre\n"never closed,rock\nfine,pop\nalso fine,pop\n', encoding="utf-8")
    one_line_error(cli("train", str(bad), "--label-column", "genre", "--out", str(tmp_path / "m")),
                   2, "line 2: a quoted field is never closed")


def run_file(tmp_path: Path, content: str, *extra: str) -> subprocess.CompletedProcess:
    source = tmp_path / "songs.csv"
    source.write_text(content, encoding="utf-8")
    return cli("run", str(source), "-q", *extra)


def test_blank_lines_are_counted_not_lost(tmp_path):
    done = run_file(tmp_path, "lyrics\nhello my love\n\n\nsecond song here\n   \n")
    assert done.returncode == 0, done.stderr
    import json

    summary = json.loads((tmp_path / "songs.summary.json").read_text())
    assert summary["rows_in"] == 3 and summary["rows_rejected"] == 1  # "   " is an empty lyric in one column
    assert summary["blank_lines_skipped"] == 2
    assert "skipped:  2 blank lines (not rows)" in done.stdout


def test_a_whitespace_only_last_line_is_a_blank_line_not_a_broken_row(tmp_path):
    done = run_file(tmp_path, "id,lyrics\n1,hello my love\n   \n")
    assert done.returncode == 0, done.stderr
    assert "1 rows" in done.stdout and "skipped:  1 blank line (not rows)" in done.stdout


def test_input_columns_named_like_the_added_ones_never_give_duplicate_names(tmp_path):
    done = run_file(tmp_path, "id,lyrics,label,predicted_label\n1,hello there my love,x,y\n")
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "songs.classified.csv", newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert len(header) == len(set(h.lower() for h in header))
    assert header[:6] == ["id", "lyrics", "label", "predicted_label", "predicted2_label", "predicted2_score"]


def test_a_field_over_the_size_limit_is_named_as_such():
    import io

    from lyrics_classifier.csvfile import MAX_FIELD_BYTES, iter_records
    from lyrics_classifier.errors import InputError

    text = 'id,lyrics\n1,"' + "x" * (MAX_FIELD_BYTES + 10) + '"\n'
    with pytest.raises(InputError, match=r"line 2: a field holds more than 16 MiB"):
        list(iter_records(io.StringIO(text, newline="")))


def test_quiet_failure_prints_the_reason_and_no_log_lines(tmp_path):
    done = run_file(tmp_path, "id,lyrics\n1,a,b\n")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        'error: line 2: 3 fields, but the header has 2 columns; quote fields that contain commas ("like, this")',
        f"failure report: {tmp_path / 'songs.error.json'}",
    ]


def test_a_closed_pipe_is_no_traceback(tmp_path):
    source = tmp_path / "songs.csv"
    source.write_text("lyrics\nhello my love\n", encoding="utf-8")
    # `true` exits at once: by the time the summary is printed, nobody reads the pipe
    done = subprocess.run(f"{sys.executable} -m lyrics_classifier run {source} -q | true",
                          shell=True, capture_output=True, text=True, cwd=REPO)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr


@pytest.mark.parametrize("command", ["build-model", "train", "predict", "run", "evaluate", "submit", "status", "serve"])
def test_every_command_explains_itself(command):
    """--help: a description, an example, each default said once and never None/False, and
    the same option names with the same metavars wherever they recur."""
    done = cli(command, "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "example" in text.lower()
    assert "(default: None)" not in text and "(default: False)" not in text and ") (default:" not in text
    # build-model bakes a label set file into a model; elsewhere --labels also takes names
    labels = "FILE" if command == "build-model" else "FILE|NAMES"
    for option, metavar in (("--model", "DIR"), ("--text-column", "NAME"), ("--labels", labels),
                            ("--stack", "NAME"), ("--concurrency", "N")):
        if f"{option} " in text:
            assert f"{option} {metavar}" in text, (option, metavar)


def test_predict_refuses_undecodable_argv_in_one_line():
    done = subprocess.run([sys.executable, "-m", "lyrics_classifier", "predict", b"caf\xe9 con leche, mi amor"],
                          capture_output=True, text=True, cwd=REPO)
    one_line_error(done, 2, "TEXT 1 is not UTF-8 (byte 3: b'\\xe9')")


def test_the_classifier_takes_text_with_undecodable_bytes_kept_as_surrogates(default_model_dir):
    from lyrics_classifier.runtime import Classifier

    (prediction,) = Classifier.load(default_model_dir, threads=1).classify(["caf\udce9 con leche, mi amor"])
    assert prediction.error is None and prediction.label is not None


def test_an_input_that_is_a_directory_says_so(tmp_path):
    one_line_error(cli("run", str(tmp_path)), 2, "is a directory: give the CSV file")
