"""`lyrics-classifier evaluate` and `train --report`: metrics with known answers, then the
command end to end on a few sample lyrics with the default model, and its one-line errors."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from pathlib import Path

import pytest

from lyrics_classifier.cli import main
from lyrics_classifier.evaluation import compute_metrics

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "lyrics.csv"
PER_GENRE = 6  # 30 lyrics in all: fast, and every genre in every one of 5 folds


# ---------------------------------------------------------------------------- metrics


def one_hot(labels: list[str], predicted: list[str | None], score: float = 0.9) -> list[tuple[float, ...] | None]:
    """Probabilities with `score` on the predicted label and the rest shared out."""
    rest = (1 - score) / (len(labels) - 1)
    return [None if p is None else tuple(score if label == p else rest for label in labels) for p in predicted]


def test_confusion_matrix_rows_are_true_labels_and_columns_predicted() -> None:
    labels = ["a", "b", "c"]
    true = ["a", "a", "b", "c"]
    predicted = ["a", "b", "b", "a"]
    metrics = compute_metrics(labels, true, one_hot(labels, predicted), predicted)
    assert metrics["labels"] == labels
    assert metrics["confusion_matrix"] == [
        [1, 1, 0],  # true a: once right, once taken for b
        [0, 1, 0],
        [1, 0, 0],  # true c: taken for a
    ]
    assert metrics["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0}


def test_precision_recall_and_f1_on_a_tiny_case() -> None:
    labels = ["cat", "dog"]
    true = ["cat", "cat", "cat", "dog"]
    predicted = ["cat", "cat", "dog", "dog"]
    metrics = compute_metrics(labels, true, one_hot(labels, predicted), predicted)
    cat, dog = metrics["per_class"]["cat"], metrics["per_class"]["dog"]
    assert metrics["accuracy"] == 0.75
    assert (cat["precision"], cat["recall"], cat["support"]) == (1.0, pytest.approx(2 / 3, abs=1e-6), 3)
    assert (dog["precision"], dog["recall"], dog["support"]) == (0.5, 1.0, 1)
    assert cat["f1"] == pytest.approx(0.8, abs=1e-6)
    assert dog["f1"] == pytest.approx(2 / 3, abs=1e-6)
    assert metrics["macro"]["f1"] == pytest.approx((0.8 + 2 / 3) / 2, abs=1e-6)
    assert metrics["macro"]["recall"] == pytest.approx((2 / 3 + 1) / 2, abs=1e-6)


def test_macro_averages_leave_out_labels_that_never_occur() -> None:
    labels = ["cat", "dog", "bird"]
    metrics = compute_metrics(labels, ["cat", "dog"], one_hot(labels, ["cat", "dog"]), ["cat", "dog"])
    assert metrics["macro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "labels": ["cat", "dog"]}


def test_expected_calibration_error_weights_each_bin_by_its_rows() -> None:
    labels = ["x", "y"]
    true = ["x", "x", "x", "y"]
    predicted = ["x", "x", "x", "x"]
    probabilities = [(0.95, 0.05), (0.95, 0.05), (0.65, 0.35), (0.65, 0.35)]
    metrics = compute_metrics(labels, true, probabilities, predicted)
    calibration = metrics["calibration"]
    assert calibration["edges"] == [k / 10 for k in range(11)]
    bins = calibration["bins"]
    assert [b["count"] for b in bins] == [0, 0, 0, 0, 0, 0, 2, 0, 0, 2]
    assert (bins[6]["mean_confidence"], bins[6]["accuracy"]) == (0.65, 0.5)
    assert (bins[9]["mean_confidence"], bins[9]["accuracy"]) == (0.95, 1.0)
    assert bins[0]["accuracy"] is None  # an empty bin has no accuracy, and weighs nothing
    # half the rows 0.05 underconfident (0.95, all right), half 0.15 overconfident (0.65, half right)
    assert calibration["ece"] == pytest.approx(0.5 * 0.05 + 0.5 * 0.15, abs=1e-6)


def test_a_score_of_one_falls_in_the_last_bin() -> None:
    metrics = compute_metrics(["x", "y"], ["x"], [(1.0, 0.0)], ["x"])
    assert metrics["calibration"]["bins"][-1]["count"] == 1
    assert metrics["calibration"]["ece"] == 0.0


def test_rejected_rows_are_counted_and_left_out_of_the_metrics() -> None:
    labels = ["x", "y"]
    true = ["x", "y", "y"]
    predicted = ["x", None, "y"]
    metrics = compute_metrics(labels, true, one_hot(labels, predicted), predicted)
    assert (metrics["rows"], metrics["rows_scored"], metrics["rows_rejected"]) == (3, 2, 1)
    assert metrics["accuracy"] == 1.0
    assert metrics["per_class"]["y"]["support"] == 1


def test_a_true_label_outside_the_label_order_is_refused() -> None:
    with pytest.raises(ValueError, match="'jazz'"):
        compute_metrics(["x", "y"], ["jazz"], [(0.9, 0.1)], ["x"])


def test_multi_label_metrics_say_they_score_the_top_label() -> None:
    metrics = compute_metrics(["x", "y"], ["x"], [(0.9, 0.8)], ["x"], multi_label=True)
    assert (metrics["scored_by"], metrics["multi_label"]) == ("top label", True)


# ---------------------------------------------------------------------------- the command


def sample_rows() -> list[dict[str, str]]:
    with open(SAMPLES, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    taken: dict[str, int] = {}
    chosen = []
    for row in rows:
        if taken.get(row["genre"], 0) < PER_GENRE:
            taken[row["genre"]] = taken.get(row["genre"], 0) + 1
            chosen.append(row)
    return chosen


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "title", "lyrics", "genre"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def evaluate(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["evaluate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def evaluated(default_model_dir: Path, tmp_path_factory) -> dict:
    """One run of `evaluate` on 30 sample lyrics, an empty lyric and a row without a label."""
    tmp = tmp_path_factory.mktemp("evaluate")
    rows = sample_rows()
    rows.append({"id": "empty", "title": "", "lyrics": "", "genre": "rock"})
    rows.append({"id": "unlabelled", "title": "", "lyrics": "la la la", "genre": ""})
    data = write_csv(tmp / "songs <b>.csv", rows)
    report = tmp / "report" / "nested"
    out, err = io.StringIO(), io.StringIO()  # capsys is per test; this runs once per module
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["evaluate", str(data), "--label-column", "genre", "--model", str(default_model_dir),
                     "--report", str(report)])
    return {"code": code, "out": out.getvalue(), "err": err.getvalue(), "report": report,
            "metrics": json.loads((report / "metrics.json").read_text(encoding="utf-8")),
            "html": (report / "report.html").read_text(encoding="utf-8")}


def test_evaluate_writes_the_metrics(evaluated: dict) -> None:
    assert evaluated["code"] == 0
    metrics = evaluated["metrics"]
    labels = ["rock", "pop", "hip hop", "country", "latin"]
    assert metrics["labels"] == labels
    assert (metrics["rows"], metrics["rows_scored"], metrics["rows_rejected"]) == (31, 30, 1)
    assert metrics["rejected_by_reason"] == {"empty lyrics": 1}
    assert metrics["input"]["rows_without_label"] == 1
    assert metrics["input"]["text_column"] == "lyrics"
    assert metrics["scored_by"] == "top label" and metrics["multi_label"] is False
    assert list(metrics["per_class"]) == labels
    assert all(metrics["per_class"][label]["support"] == PER_GENRE for label in labels)
    matrix = metrics["confusion_matrix"]
    assert [sum(row) for row in matrix] == [PER_GENRE] * 5
    assert metrics["accuracy"] == pytest.approx(sum(matrix[k][k] for k in range(5)) / 30, abs=1e-6)
    assert metrics["accuracy"] >= 0.6  # the default model does far better; this is a sanity floor
    assert sum(b["count"] for b in metrics["calibration"]["bins"]) == 30
    assert 0 <= metrics["calibration"]["ece"] <= 1
    assert metrics["model"]["labels"] == labels


def test_evaluate_prints_a_summary_and_progress(evaluated: dict) -> None:
    out, metrics = evaluated["out"], evaluated["metrics"]
    assert f"accuracy {metrics['accuracy']:.3f}" in out
    assert f"macro F1 {metrics['macro']['f1']:.3f}" in out
    assert f"ECE {metrics['calibration']['ece']:.3f}" in out
    assert re.search(r"^hip hop\s+\d\.\d{3}\s+\d\.\d{3}\s+\d\.\d{3}\s+6$", out, re.M)
    assert str(evaluated["report"] / "report.html") in out
    assert "classified 31/31 rows (100%)" in evaluated["err"]
    assert "\r" not in evaluated["err"]  # not a terminal: lines, not redraws


def test_the_report_lists_exactly_the_misclassified_rows(evaluated: dict) -> None:
    html, metrics = evaluated["html"], evaluated["metrics"]
    misses = html.count('<tr class="miss">')
    assert misses == metrics["rows_misclassified"]
    assert metrics["accuracy"] == pytest.approx(1 - misses / metrics["rows_scored"], abs=1e-6)
    assert f"Misclassified rows: {misses}" in html
    assert "Rejected rows: 1" in html and "empty lyrics" in html


def test_the_report_is_one_self_contained_page(evaluated: dict) -> None:
    html = evaluated["html"]
    assert html.lstrip().lower().startswith("<!doctype html")
    assert 'src="http' not in html and "href=" not in html and "<script" not in html
    assert html.count('src="data:image/png;base64,') == 2  # confusion matrix, reliability diagram
    assert "songs &lt;b&gt;.csv" in html and "<b>" not in html  # the file name is escaped


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unknown label column", "no label column 'mood'"),
        ("label not in the model", "2 rows have labels the classifier does not have: 'jazz' (2 rows)"),
        ("report is a file", "is an existing file, not a directory"),
        ("unclosed quote", "line 3: a quoted field is never closed"),
    ],
)
def test_evaluate_refuses_bad_input_before_classifying(case: str, expected: str, default_model_dir: Path,
                                                       tmp_path: Path, capsys) -> None:
    rows = sample_rows()[:3]
    data = write_csv(tmp_path / "songs.csv", rows)
    report = tmp_path / "report"
    label_column = "genre"
    if case == "unknown label column":
        label_column = "mood"
    elif case == "label not in the model":
        write_csv(data, rows + [{"id": "j1", "title": "", "lyrics": "blue notes", "genre": "jazz"},
                                {"id": "j2", "title": "", "lyrics": "swing", "genre": " jazz "}])
    elif case == "report is a file":
        report.write_text("not a directory")
    elif case == "unclosed quote":
        data.write_text('id,lyrics,genre\n1,one line,rock\n2,"never closed,pop\n3,fine,pop\n', encoding="utf-8")
    code, out, err = evaluate(capsys, str(data), "--label-column", label_column, "--model", str(default_model_dir),
                              "--report", str(report))
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err  # one line, no traceback, no progress
    assert expected in err
    assert not (report / "report.html").exists()


# ---------------------------------------------------------------------------- train --report


def test_train_report_scores_the_held_out_folds(tmp_path: Path) -> None:
    """The report's accuracy is the cross-validation's (equal folds: 6 lyrics of each genre, one
    per fold each), and the report is an output only: the model stays up to date without it."""
    from lyrics_classifier.modelbuild.build import train

    data = write_csv(tmp_path / "labelled.csv", sample_rows())
    logged: list[str] = []
    head = train(data, label_column="genre", out=tmp_path / "model", log=logged.append, report=tmp_path / "cv")
    metrics = json.loads((tmp_path / "cv" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["rows_scored"] == 30 and metrics["labels"] == sorted({r["genre"] for r in sample_rows()})
    assert metrics["accuracy"] == pytest.approx(head["cv_accuracy"], abs=1e-4)
    assert metrics["cross_validation"]["folds"] == head["cv_folds"] == 5
    html = (tmp_path / "cv" / "report.html").read_text(encoding="utf-8")
    assert html.count('<tr class="miss">') == metrics["rows_misclassified"]
    assert "  embedded 30/30 texts" in logged
    again: list[str] = []
    assert train(data, label_column="genre", out=tmp_path / "model", log=again.append) == head
    assert again == [f"{tmp_path / 'model'}: up to date (cross-validated accuracy {head['cv_accuracy']:.3f})"]
