"""Shared fixtures. The default model is built once (build-model is cached by input hash)."""

from __future__ import annotations

import csv
import io
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"


@pytest.fixture(scope="session")
def minilm_model_dir() -> Path:
    """The English model (`build-model --encoder minilm`), built once; make bench uses it too."""
    model_dir = REPO / "models" / "minilm"
    subprocess.run(
        [sys.executable, "-m", "lyrics_classifier", "build-model", "--encoder", "minilm", "--out", str(model_dir)],
        check=True, capture_output=True,
    )  # a no-op when up to date
    return model_dir


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The default model (multilingual genres), built if missing."""
    model_dir = Path(os.environ.get("LYRICS_CLASSIFIER_MODEL", REPO / "models" / "default"))
    if not (model_dir / "model.onnx").exists():
        subprocess.run(
            [sys.executable, "-m", "lyrics_classifier", "build-model", "--out", str(model_dir)],
            check=True,
        )
    return model_dir


def wide_csv(rows: int, seed: int = 0) -> bytes:
    """Short lyrics with bulky pass-through columns (quoted, with commas, quotes and line
    breaks; CRLF): a file of several byte ranges that is cheap to classify."""
    rng = random.Random(seed)
    words = "love night road heart fire dance rain city gold river dream truck corazón".split()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["id", "lyrics", "notes"])
    for i in range(rows):
        lyric = "\n".join(" ".join(rng.choice(words) for _ in range(6)) for _ in range(2))
        writer.writerow([i, "" if i % 1000 == 999 else lyric, ", ".join(rng.choice(words) for _ in range(700)) + ' "quoted"'])
    return buffer.getvalue().encode("utf-8")


@pytest.fixture(scope="session")
def three_ranges() -> bytes:
    """~14 MB: three ranges at the smallest range size (6 MiB)."""
    from lyrics_classifier.contract import MIN_RANGE_BYTES

    data = wide_csv(2900)
    assert 2 * MIN_RANGE_BYTES < len(data) < 3 * MIN_RANGE_BYTES
    return data
