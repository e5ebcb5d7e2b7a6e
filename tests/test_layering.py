"""The package's floors: library modules never import the CLI (its top floor), and the
classifier runtime never imports the AWS side or the model-building side."""

from __future__ import annotations

import subprocess
import sys

import pytest

LIBRARY = [
    "lyrics_classifier.errors", "lyrics_classifier.contract", "lyrics_classifier.csvfile",
    "lyrics_classifier.index", "lyrics_classifier.language", "lyrics_classifier.runtime",
    "lyrics_classifier.workflow", "lyrics_classifier.local", "lyrics_classifier.deployed",
    "lyrics_classifier.predict", "lyrics_classifier.modelbuild.build",
    "lyrics_classifier.modelbuild.usem3",
]


def imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("module", LIBRARY)
def test_library_modules_do_not_import_the_cli(module: str) -> None:
    assert "lyrics_classifier.cli" not in imported_after(module)


def test_the_runtime_imports_neither_aws_nor_model_building() -> None:
    loaded = imported_after("lyrics_classifier.runtime")
    for unwanted in ("boto3", "moto", "torch", "transformers", "onnx", "lyrics_classifier.modelbuild"):
        assert unwanted not in loaded, unwanted


def test_the_wheel_carries_the_workflow_and_the_label_data(tmp_path) -> None:
    """A non-editable install runs the workflow: the ASL file and the default labels (with the
    few-shot examples) are package data."""
    import zipfile
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp_path), str(repo)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("lyrics_classifier-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("statemachine/workflow.asl.json", "data/labels.json", "data/labels-english.json",
                 "data/genre_examples.csv"):
        assert f"lyrics_classifier/{name}" in names, name
