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
