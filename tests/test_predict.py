"""`lyrics-classifier predict`."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lyrics_classifier.cli import main

GENRES = ["rock", "pop", "hip hop", "country", "latin"]
LATIN = "Baila conmigo, mi corazón, la noche es nuestra hasta que salga el sol"
HIPHOP = "Spittin' bars on the mic, money on my mind, grinding on the block with my crew"


def test_predict_prints_label_score_and_every_probability(default_model_dir: Path, capsys) -> None:
    assert main(["predict", "--model", str(default_model_dir), LATIN]) == 0
    out = capsys.readouterr().out.strip()
    assert re.match(r"latin  [01]\.\d{3}    \(latin [01]\.\d{3}  ", out)
    assert out.endswith("[es]")  # the lyric's language
    for genre in GENRES:
        assert re.search(rf"[ (]{genre} [01]\.\d{{3}}", out)


def test_predict_json_one_object_per_line(default_model_dir: Path, capsys) -> None:
    assert main(["predict", "--json", "--model", str(default_model_dir), LATIN, HIPHOP, "  "]) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    assert len(lines) == 3
    latin, hiphop, empty = map(json.loads, lines)
    assert latin["label"] == "latin" and hiphop["label"] == "hip hop"
    assert set(latin) == {"label", "score", "scores", "language"}
    assert latin["language"] == "es" and hiphop["language"] == "en"
    assert list(latin["scores"]) == GENRES
    assert latin["score"] == max(latin["scores"].values())
    assert sum(latin["scores"].values()) == pytest.approx(1, abs=1e-4)
    assert empty == {"label": None, "score": None, "scores": None, "error": "empty lyrics"}


def test_predict_reads_one_lyric_from_stdin(default_model_dir: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(HIPHOP + "\n" + HIPHOP + "\n"))
    assert main(["predict", "--json", "--model", str(default_model_dir), "-"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == "hip hop"


def test_predict_uses_the_model_from_the_environment(default_model_dir: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("LYRICS_CLASSIFIER_MODEL", str(default_model_dir))
    assert main(["predict", LATIN, HIPHOP]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  latin  [01]\.", out, re.M) and re.search(r"^  hip hop  [01]\.", out, re.M)


def test_predict_with_a_missing_model_is_a_readable_error(tmp_path: Path, capsys) -> None:
    assert main(["predict", "--model", str(tmp_path / "nope"), LATIN]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model directory") and "nope" in err and "build-model" in err


def test_predict_all_rejected_exits_1(default_model_dir: Path, capsys) -> None:
    assert main(["predict", "--model", str(default_model_dir), ""]) == 1
    assert "rejected: empty lyrics" in capsys.readouterr().out


def test_predict_command_line(default_model_dir: Path) -> None:
    """The installed entry point, end to end (and `--help` stays fast: no torch import)."""
    result = subprocess.run(
        [sys.executable, "-m", "lyrics_classifier", "predict", "--json", "--model", str(default_model_dir), LATIN],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(result.stdout)["label"] == "latin"
    check = "import sys; from lyrics_classifier.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout.strip() == "False"


def _predict(model: Path, *args: str, stdin: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lyrics_classifier", "predict", "--model", str(model), *args],
                          input=stdin, capture_output=True)


def test_predict_reads_many_lyrics_from_stdin(default_model_dir: Path) -> None:
    lines = _predict(default_model_dir, "--lines", "--json", stdin=f"{LATIN}\n\n{HIPHOP}\n".encode())
    assert lines.returncode == 0
    assert [json.loads(x)["label"] for x in lines.stdout.decode().splitlines()] == ["latin", "hip hop"]
    jsonl = json.dumps({"id": 1, "lyrics": LATIN}) + "\n" + json.dumps(HIPHOP) + "\n"
    done = _predict(default_model_dir, "--jsonl", "--json", stdin=jsonl.encode())
    assert done.returncode == 0
    assert [json.loads(x)["label"] for x in done.stdout.decode().splitlines()] == ["latin", "hip hop"]


def test_predict_bad_stdin_is_a_one_line_error(default_model_dir: Path) -> None:
    for args, stdin, message in (
        (("-",), b"caf\xe9 con leche", "error: stdin is not UTF-8 text (byte 3"),
        (("--jsonl",), b'{"lyrics": "ok"}\n{not json\n', "error: stdin line 2: not JSON"),
        (("--jsonl",), b'{"title": "no lyrics"}\n', 'error: stdin line 1: expected a string or an object'),
        (("--lines", "extra text"), b"", "error: --lines reads the lyrics from stdin"),
    ):
        done = _predict(default_model_dir, *args, stdin=stdin)
        err = done.stderr.decode()
        assert done.returncode == 2 and err.startswith(message), (args, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
