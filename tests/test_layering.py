"""The package's floors: library modules never import the CLI (its top floor), and the
classifier runtime never imports the AWS side or the model-building side."""

from __future__ import annotations

import os
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


def test_the_workflow_functions_import_without_the_classifiers_dependencies() -> None:
    """Split, Merge and ReportFailure ship without numpy, onnxruntime or tokenizers
    (lambdas/requirements-workflow.txt): importing them must not need those."""
    blocked = ("numpy", "onnxruntime", "tokenizers", "py3langid", "matplotlib")
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}: raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import lyrics_classifier.handlers.split, lyrics_classifier.handlers.merge, "
        "lyrics_classifier.handlers.report_failure, lyrics_classifier.report\n"
        "from lyrics_classifier.labelset import inline\n"
        "inline('a,b')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"})
    assert done.returncode == 0, done.stderr


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
