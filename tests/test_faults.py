"""The deployed path under AWS's rules, through the local runner: every step meets the faults
AWS delivers (`run --fault STEP:KIND`, faults.py) and the run ends as it must. repeat, timeout
and throttle leave the output byte-identical to a clean run and no failure report; fail and
the execution's timeout leave a failure report and no result."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lyrics_classifier import local
from lyrics_classifier.faults import FaultPlan, parse_fault

pytestmark = pytest.mark.slow
SAMPLES = Path(__file__).resolve().parents[1] / "samples"
RECOVERABLE = [f"{step}:{kind}" for step in ("split", "classify", "merge") for kind in ("repeat", "timeout", "throttle")]


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> Path:
    """40 rows of the sample, with one empty lyric (a rejected row is part of the output too)."""
    with open(SAMPLES / "lyrics.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, text = rows[0], rows[0].index("lyrics")
    empty = ["" if i == text else "x" for i in range(len(header))]
    path = tmp_path_factory.mktemp("songs") / "songs.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows[1:41], empty])
    return path


def run(songs: Path, out: Path, *faults: str) -> local.RunResult:
    return local.run_workflow(songs, output=out / "songs.classified.csv", concurrency=2,
                              faults=FaultPlan([parse_fault(f) for f in faults]))


@pytest.fixture(scope="module")
def clean(songs, default_model_dir, tmp_path_factory) -> local.RunResult:
    import os

    os.environ["LYRICS_CLASSIFIER_MODEL"] = str(default_model_dir)
    return run(songs, tmp_path_factory.mktemp("clean"))


@pytest.mark.parametrize("fault", RECOVERABLE)
def test_a_fault_aws_recovers_from_leaves_the_output_of_a_clean_run(songs, clean, tmp_path, fault):
    result = run(songs, tmp_path, fault)
    assert result.faults_struck.get(fault, 0) >= 1, "the fault never struck"
    assert result.output_csv.read_bytes() == clean.output_csv.read_bytes()
    summary = json.loads(result.summary_path.read_text())
    assert {k: summary[k] for k in ("rows_in", "rows_classified", "rejected_by_reason", "label_counts")} == \
        {k: clean.summary[k] for k in ("rows_in", "rows_classified", "rejected_by_reason", "label_counts")}
    assert not (tmp_path / "songs.error.json").exists()


@pytest.mark.parametrize("faults, error, reason", [
    (("split:fail",), "InjectedFault", "Split failed"),
    (("classify:fail",), "States.ExceedToleratedFailureThreshold", "1 of 1 ranges were not classified: range 0"),
    (("merge:fail",), "InjectedFault", "Merge failed"),
    # ReportFailure, run again or late, still reports what failed
    (("merge:fail", "report-failure:repeat"), "InjectedFault", "Merge failed"),
    (("merge:fail", "report-failure:timeout"), "InjectedFault", "Merge failed"),
    (("merge:fail", "report-failure:throttle"), "InjectedFault", "Merge failed"),
    # the failure path fails too: the execution ends FAILED uncaught, and Cleanup reports it
    (("merge:fail", "report-failure:fail"), "InjectedFault", "the run failed and so did its failure handling"),
    # the execution's own timeout, which no Catch sees: Cleanup reports it
    (("execution:timeout",), "States.Timeout", "the execution reached its time limit"),
])
def test_a_fault_that_ends_the_run_leaves_a_failure_report_and_no_result(songs, clean, tmp_path, faults, error, reason):
    with pytest.raises(local.RunFailed) as failed:
        run(songs, tmp_path, *faults)
    report = json.loads((tmp_path / "songs.error.json").read_text())
    assert report["error"] == error and reason in report["reason"] and reason in str(failed.value)
    assert report["result_kept"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["songs.error.json"]  # no result, summary or report


def test_run_fault_on_the_command_line(songs, clean, tmp_path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lyrics_classifier", "run", str(songs), "-q",
                               "-o", str(tmp_path / "out.csv"), *args], capture_output=True, text=True, timeout=300)

    done = cli("--fault", "merge:repeat", "--fault", "classify:timeout")
    assert done.returncode == 0, done.stderr
    assert "faults:   classify:timeout x1, merge:repeat x1" in done.stdout
    assert (tmp_path / "out.csv").read_bytes() == clean.output_csv.read_bytes()
    failed = cli("--fault", "execution:timeout")
    assert failed.returncode == 1 and "error: the execution reached its time limit" in failed.stderr
    assert "Traceback" not in failed.stderr
    wrong = cli("--fault", "merge:explode")
    assert wrong.returncode == 2 and "the kind for merge must be one of repeat, timeout, throttle, fail" in wrong.stderr


def test_the_operations_page_examples_run_as_written(tmp_path):
    """docs/operations.md's `run --fault` lines, in a scratch directory that sees the repo's
    .venv, samples and models: exit 0, or 1 where the line says so."""
    import os
    import re

    repo = Path(__file__).resolve().parents[1]
    for name in (".venv", "samples", "models"):
        os.symlink(repo / name, tmp_path / name)
    lines = [line.strip() for line in (repo / "docs" / "operations.md").read_text().splitlines()
             if line.startswith("    .venv/bin/lyrics-classifier run ")]
    assert len(lines) >= 2
    for line in lines:
        command, _, comment = line.partition("#")
        expected = int(m.group(1)) if (m := re.search(r"exit (\d)", comment)) else 0
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == expected, f"{command}\n{done.stderr[-2000:]}"
    assert (tmp_path / "build" / "faults" / "lyrics.classified.csv").is_file()
    assert (tmp_path / "build" / "faults" / "timeout.error.json").is_file()
