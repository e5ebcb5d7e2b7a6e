"""`lyrics-classifier evaluate LABELLED.csv --label-column COL --report DIR`: how well a model
classifies lyrics whose labels are known.

`compute_metrics` is pure (labels in, numbers out) and shared with `train --report`, which
scores its out-of-fold predictions the same way; `write_report` writes ``metrics.json`` and
one self-contained ``report.html`` (charts drawn with matplotlib, embedded as PNG data URIs).
matplotlib is imported inside `write_report` only, so `predict`, `run` and the Lambdas never
load it.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .errors import InputError, UserError

__all__ = [
    "CALIBRATION_BINS",
    "LabelledRows",
    "compute_metrics",
    "prediction_rows",
    "prepare_report_dir",
    "read_labelled_rows",
    "register",
    "write_report",
]

CALIBRATION_BINS = 10  # equal-width bins of the top score
BATCH_ROWS = 256  # rows per classify call: progress granularity, not speed
PREVIEW_CHARS = 200
MAX_REPORT_ROWS = 500  # misclassified rows listed in report.html (the most confident first)
MAX_REJECTED_ROWS = 100
TOP_SCORES = 3
SCORED_BY = "top label"  # multi-label classifiers too: the labels above the threshold are not scored


# ---------------------------------------------------------------------------- metrics


def _ratio(numerator: float, denominator: float) -> float:
    """0.0 for an empty denominator (a class never predicted has precision 0, as scikit-learn's
    default zero_division gives)."""
    return numerator / denominator if denominator else 0.0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def compute_metrics(
    labels: Sequence[str],
    true_labels: Sequence[str],
    probabilities: Sequence[Sequence[float] | None],
    predicted: Sequence[str | None],
    *,
    multi_label: bool = False,
) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, macro averages, the confusion matrix
    (rows: true label, columns: predicted, both in `labels` order) and calibration (the top
    score in CALIBRATION_BINS equal-width bins: count, mean confidence and accuracy per bin,
    and the expected calibration error, the count-weighted mean |accuracy - confidence|).

    A row whose prediction is None was rejected by the classifier (empty lyrics, ...): it is
    counted in ``rows_rejected`` and left out of every metric. `probabilities` are per row in
    `labels` order; the confidence of a row is the probability of its predicted label. Macro
    averages are over the labels that occur as a true or a predicted label (as scikit-learn's
    default), so labels absent from both do not pull them down. Raises ValueError for a true
    or predicted label not in `labels` or for sequences of different lengths."""
    labels = list(labels)
    if not (len(true_labels) == len(probabilities) == len(predicted)):
        raise ValueError("true_labels, probabilities and predicted must have one entry per row")
    index = {label: k for k, label in enumerate(labels)}
    unknown = sorted({t for t in true_labels if t not in index}
                     | {p for p in predicted if p is not None and p not in index})
    if unknown:
        raise ValueError(f"labels not in the label order: {', '.join(map(repr, unknown))}")

    n = len(labels)
    matrix = [[0] * n for _ in range(n)]
    bin_count = [0] * CALIBRATION_BINS
    bin_confidence = [0.0] * CALIBRATION_BINS
    bin_correct = [0] * CALIBRATION_BINS
    rejected = 0
    for truth, row, guess in zip(true_labels, probabilities, predicted, strict=True):
        if guess is None or row is None:
            rejected += 1
            continue
        matrix[index[truth]][index[guess]] += 1
        confidence = float(row[index[guess]])
        # the last bin is closed: a score of 1.0 belongs to [0.9, 1.0]
        k = min(CALIBRATION_BINS - 1, max(0, int(confidence * CALIBRATION_BINS)))
        bin_count[k] += 1
        bin_confidence[k] += confidence
        bin_correct[k] += truth == guess

    scored = sum(map(sum, matrix))
    correct = sum(matrix[k][k] for k in range(n))
    per_class: dict[str, dict[str, Any]] = {}
    for k, label in enumerate(labels):
        support = sum(matrix[k])
        predicted_as = sum(matrix[r][k] for r in range(n))
        precision = _ratio(matrix[k][k], predicted_as)
        recall = _ratio(matrix[k][k], support)
        f1 = _ratio(2 * precision * recall, precision + recall)
        per_class[label] = {"precision": _round(precision), "recall": _round(recall), "f1": _round(f1),
                            "support": support, "predicted": predicted_as}
    present = [label for label, c in per_class.items() if c["support"] or c["predicted"]]

    def macro(key: str) -> float | None:
        return _round(sum(per_class[label][key] for label in present) / len(present)) if present else None

    bins = [
        {
            "lower": _round(k / CALIBRATION_BINS),
            "upper": _round((k + 1) / CALIBRATION_BINS),
            "count": bin_count[k],
            "mean_confidence": _round(bin_confidence[k] / bin_count[k]) if bin_count[k] else None,
            "accuracy": _round(bin_correct[k] / bin_count[k]) if bin_count[k] else None,
        }
        for k in range(CALIBRATION_BINS)
    ]
    ece = (sum(abs(bin_correct[k] - bin_confidence[k]) for k in range(CALIBRATION_BINS)) / scored
           if scored else None)  # sum_k n_k/N * |acc_k - conf_k|, with n_k * acc_k = correct_k
    return {
        "scored_by": SCORED_BY,
        "multi_label": multi_label,
        "rows": len(true_labels),
        "rows_scored": scored,
        "rows_rejected": rejected,
        "rows_misclassified": scored - correct,
        "accuracy": _round(correct / scored) if scored else None,
        "macro": {"precision": macro("precision"), "recall": macro("recall"), "f1": macro("f1"),
                  "labels": present},
        "per_class": per_class,
        "labels": labels,
        "confusion_matrix": matrix,
        "calibration": {
            "edges": [_round(k / CALIBRATION_BINS) for k in range(CALIBRATION_BINS + 1)],
            "bins": bins,
            "ece": _round(ece),
        },
    }


def prediction_rows(
    labels: Sequence[str],
    texts: Sequence[str],
    true_labels: Sequence[str],
    probabilities: Sequence[Sequence[float] | None],
    predicted: Sequence[str | None],
    *,
    errors: Sequence[str | None] | None = None,
    lines: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """One record per row for `write_report`: row (1-based), line (in the input file, when
    known), a text preview, the true and predicted label, the score, the top scores, and the
    rejection reason of a rejected row."""
    rows = []
    for i, (text, truth, row, guess) in enumerate(zip(texts, true_labels, probabilities, predicted, strict=True)):
        record: dict[str, Any] = {
            "row": i + 1,
            "line": lines[i] if lines is not None else None,
            "text": " ".join(str(text).split())[:PREVIEW_CHARS],
            "true": truth,
            "predicted": guess,
            "score": None,
            "top": [],
            "error": errors[i] if errors is not None else None,
        }
        if guess is not None and row is not None:
            ranked = sorted(zip(labels, row, strict=True), key=lambda pair: -pair[1])[:TOP_SCORES]
            record["score"] = round(float(row[list(labels).index(guess)]), 6)
            record["top"] = [[label, round(float(p), 6)] for label, p in ranked]
        elif record["error"] is None:
            record["error"] = "rejected"
        rows.append(record)
    return rows


# ---------------------------------------------------------------------------- the report


def prepare_report_dir(report_dir: str | os.PathLike[str]) -> Path:
    """Create the report directory if needed and check that files can be written there:
    called before anything is classified, so that a bad path fails in a second, not after an
    hour of work."""
    path = Path(report_dir)
    if path.exists() and not path.is_dir():
        raise UserError(f"--report {path}: is an existing file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # os.access misjudges ACLs and read-only mounts
            pass
    except OSError as exc:
        raise UserError(f"--report {path}: cannot write there ({exc.strerror or exc})") from exc
    return path


def _write_atomic(path: Path, text: str) -> None:
    """The whole file or, on a failure, the old one: never a half-written report."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(report_dir: str | os.PathLike[str], metrics: dict[str, Any], rows: Sequence[dict[str, Any]],
                 *, title: str = "Evaluation") -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``report.html`` into `report_dir` (created if needed);
    returns their paths. `rows` are `prediction_rows` records; the page lists the misclassified
    and the rejected ones. Raises UserError when the directory cannot be written."""
    path = prepare_report_dir(report_dir)
    html_text = _render_html(metrics, rows, title)
    metrics_path, html_path = path / "metrics.json", path / "report.html"
    try:
        _write_atomic(metrics_path, json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
        _write_atomic(html_path, html_text)
    except OSError as exc:
        raise UserError(f"--report {path}: cannot write the report ({exc.strerror or exc})") from exc
    return metrics_path, html_path


def _png_data_uri(figure: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)  # the Agg canvas: no display, and no change to pyplot's global backend
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _plain(text: str, limit: int = 24) -> str:
    """A label as matplotlib text: "$" would start mathtext, long names are cut."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _confusion_png(labels: Sequence[str], matrix: Sequence[Sequence[int]]) -> str:
    from matplotlib.figure import Figure

    n = len(labels)
    size = min(12.0, max(4.0, 0.75 * n + 2))
    figure = Figure(figsize=(size, size * 0.85))
    axes = figure.add_subplot()
    # colour by the share of the true label's rows (recall per cell), so that rare labels show too
    shares = [[cell / (sum(row) or 1) for cell in row] for row in matrix]
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the true label's rows")
    axes.set_xticks(range(n), [_plain(label) for label in labels], rotation=45, ha="right")
    axes.set_yticks(range(n), [_plain(label) for label in labels])
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    if n <= 30:  # beyond that the numbers overlap; the HTML table has them
        for r in range(n):
            for c in range(n):
                axes.text(c, r, str(matrix[r][c]), ha="center", va="center", fontsize=9,
                          color="white" if shares[r][c] > 0.5 else "black")
    axes.set_title("Confusion matrix")
    return _png_data_uri(figure)


def _reliability_png(calibration: dict[str, Any]) -> str:
    from matplotlib.figure import Figure

    bins = calibration["bins"]
    width = 1.0 / len(bins)
    centres = [(b["lower"] + b["upper"]) / 2 for b in bins]
    figure = Figure(figsize=(5.5, 6.0))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    top.bar(centres, [b["accuracy"] or 0.0 for b in bins], width=width * 0.95, color="#4c78a8",
            edgecolor="#2f4b6b", label="accuracy in the bin")
    used = [b for b in bins if b["count"]]
    top.plot([(b["lower"] + b["upper"]) / 2 for b in used], [b["mean_confidence"] for b in used],
             marker="o", linestyle="", color="#e45756", label="mean confidence in the bin")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    ece = calibration.get("ece")
    top.set_title("Reliability diagram" + (f" (ECE {ece:.3f})" if ece is not None else ""))
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centres, [b["count"] for b in bins], width=width * 0.95, color="#9d9d9d")
    bottom.set_xlabel("confidence (score of the predicted label)")
    bottom.set_ylabel("rows")
    return _png_data_uri(figure)


def _fmt(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _render_html(metrics: dict[str, Any], rows: Sequence[dict[str, Any]], title: str) -> str:
    import warnings

    from .report import page, table

    esc = _escape
    labels = metrics["labels"]
    with warnings.catch_warnings():  # a glyph missing from matplotlib's font is not worth a warning
        warnings.simplefilter("ignore")
        confusion = _confusion_png(labels, metrics["confusion_matrix"])
        reliability = _reliability_png(metrics["calibration"])

    source = metrics.get("input") or {}
    model = metrics.get("model") or {}
    facts = [
        ("input", source.get("file")),
        ("label column", source.get("label_column")),
        ("text column", source.get("text_column")),
        ("method", metrics.get("method")),
        ("model", model.get("name")),
        ("model sha256", str(model.get("sha256"))[:12] if model.get("sha256") else None),
        ("label set", (model.get("label_set") or {}).get("name") if isinstance(model.get("label_set"), dict) else None),
        ("rows evaluated", f"{metrics['rows']:,}"),
        ("rows scored", f"{metrics['rows_scored']:,}"),
        ("rows rejected", f"{metrics['rows_rejected']:,} (not in the metrics)"),
        ("rows without a label",
         f"{source['rows_without_label']:,} (skipped)" if source.get("rows_without_label") else None),
        ("accuracy", _fmt(metrics["accuracy"])),
        ("macro F1", _fmt(metrics["macro"]["f1"])),
        ("expected calibration error", _fmt(metrics["calibration"]["ece"])),
        ("scored by", metrics["scored_by"] + (" (multi-label scores: the labels above the threshold are not scored)"
                                               if metrics.get("multi_label") else "")),
    ]
    body = [f"<h1>{esc(title)}</h1>",
            "<dl class=\"facts\">" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts if v) + "</dl>"]

    per_class = metrics["per_class"]
    body.append("<h2>Per label</h2>\n" + table(
        ("label", "precision", "recall", "F1", "support", "predicted"),
        [(label, _fmt(c["precision"]), _fmt(c["recall"]), _fmt(c["f1"]), c["support"], c["predicted"])
         for label, c in per_class.items()]
        + [("macro average", _fmt(metrics["macro"]["precision"]), _fmt(metrics["macro"]["recall"]),
            _fmt(metrics["macro"]["f1"]), metrics["rows_scored"], metrics["rows_scored"])],
        numeric=(1, 2, 3, 4, 5)))

    body.append("<h2>Confusion matrix</h2>\n<p class=\"muted\">rows: the true label; columns: the predicted "
                "label; colour: the share of the true label's rows</p>\n"
                f"<img alt=\"confusion matrix\" src=\"{confusion}\">\n"
                + table(("true \\ predicted", *labels),
                        [(label, *row) for label, row in zip(labels, metrics["confusion_matrix"], strict=True)],
                        numeric=tuple(range(1, len(labels) + 1))))

    bins = metrics["calibration"]["bins"]
    body.append("<h2>Calibration</h2>\n<p class=\"muted\">rows by the score of their predicted label: a "
                "well-calibrated model is right in 70% of the rows it scores 0.7</p>\n"
                f"<img alt=\"reliability diagram\" src=\"{reliability}\">\n"
                + table(("confidence", "rows", "mean confidence", "accuracy"),
                        [(f"{b['lower']:.1f}–{b['upper']:.1f}", b["count"], _fmt(b["mean_confidence"]),
                          _fmt(b["accuracy"])) for b in bins], numeric=(1, 2, 3)))

    wrong = sorted((r for r in rows if r["error"] is None and r["predicted"] != r["true"]),
                   key=lambda r: (-r["score"], r["row"]))
    shown = wrong[:MAX_REPORT_ROWS]
    note = f" (the {len(shown):,} most confident of {len(wrong):,})" if len(wrong) > len(shown) else ""
    body.append(f"<h2>Misclassified rows: {len(wrong):,}{note}</h2>\n<p class=\"muted\">most confident "
                "first: a confident mistake is often a wrong label in the file</p>\n"
                + table(("row", "line", "true", "predicted", "score", "top scores", "lyrics (preview)"),
                        [(r["row"], r["line"] if r["line"] is not None else "", r["true"], r["predicted"],
                          _fmt(r["score"]), ", ".join(f"{label} {p:.3f}" for label, p in r["top"]), r["text"])
                         for r in shown], numeric=(0, 1, 4), row_class="miss"))

    rejected = [r for r in rows if r["error"] is not None]
    if rejected:
        body.append(f"<h2>Rejected rows: {len(rejected):,}</h2>\n" + table(
            ("row", "line", "true", "reason", "lyrics (preview)"),
            [(r["row"], r["line"] if r["line"] is not None else "", r["true"], r["error"], r["text"])
             for r in rejected[:MAX_REJECTED_ROWS]], numeric=(0, 1)))
    return page(title, "\n".join(body))


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


# ---------------------------------------------------------------------------- reading the CSV


@dataclass(frozen=True)
class LabelledRows:
    texts: list[str]
    labels: list[str]  # stripped
    lines: list[int]  # where each record starts in the file (1-based)
    text_column: str
    label_column: str
    rows_without_label: int  # skipped: an empty label cell


def _column(header: list[str], requested: str, path: Path, what: str) -> int:
    """The column named `requested`: exactly, else ignoring case (as the text column)."""
    names = [name.strip() for name in header]
    lowered = [name.lower() for name in names]
    if requested.strip() in names:
        return names.index(requested.strip())
    if requested.strip().lower() in lowered:
        return lowered.index(requested.strip().lower())
    raise UserError(f"{path}: no {what} column {requested!r}; the columns are: {', '.join(map(repr, names))}")


def read_labelled_rows(path: str | os.PathLike[str], label_column: str, text_column: str | None = None) -> LabelledRows:
    """The labelled rows of a CSV, read strictly: an unclosed quote, a row with a different
    number of fields than the header, or bytes that are not UTF-8 raise a one-line UserError
    naming the line. Rows with an empty label are skipped (and counted); an empty lyric is
    kept, for the classifier to reject and the report to count."""
    from .csvfile import find_text_column, iter_records

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror or exc}") from exc
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: not UTF-8 (byte {data[exc.start:exc.start + 1]!r}); "
                        "save the file as UTF-8 CSV") from exc
    records = iter_records(io.StringIO(content, newline=""))
    try:
        header_record = next(records, None)
        if header_record is None:
            raise UserError(f"{path}: the file is empty: expected a CSV with a header row")
        header = header_record.fields
        label_index = _column(header, label_column, path, "label")
        try:
            text_index = find_text_column(header, text_column)
        except InputError as exc:
            if text_column:
                raise UserError(f"{path}: {exc}") from exc
            columns = ", ".join(repr(h.strip()) for h in header)
            raise UserError(f"{path}: no lyrics column: looked for 'lyrics', 'lyric', 'text' (any case) but the "
                            f"columns are: {columns}; name it with --text-column") from exc
        if text_index == label_index:
            raise UserError(f"{path}: the label column and the text column are the same column "
                            f"({header[text_index].strip()!r})")
        texts, labels, lines, unlabelled = [], [], [], 0
        for record in records:
            if len(record.fields) != len(header):
                raise UserError(f"{path}: line {record.line}: {len(record.fields)} fields where the header has "
                                f"{len(header)}; quote fields that contain commas")
            label = record.fields[label_index].strip()
            if not label:
                unlabelled += 1
                continue
            texts.append(record.fields[text_index])
            labels.append(label)
            lines.append(record.line)
    except InputError as exc:  # csvfile's strict reader: an unclosed quote, a NUL byte, ...
        raise UserError(f"{path}: {exc}") from exc
    if not labels:
        raise UserError(f"{path}: no labelled rows: the {header[label_index].strip()!r} column is empty in every row")
    return LabelledRows(texts, labels, lines, header[text_index].strip(), header[label_index].strip(), unlabelled)


def check_labels(rows: LabelledRows, known: Sequence[str], path: Path, hint: str = "") -> None:
    """Every true label must be one the classifier can predict, else the metrics are wrong
    without saying so: name the strays (and how many rows carry them) before classifying."""
    known_set = set(known)
    strays = Counter(label for label in rows.labels if label not in known_set)
    if not strays:
        return
    listed = ", ".join(f"{label!r} ({n} row{'s' if n != 1 else ''})" for label, n in strays.most_common(10))
    more = f" and {len(strays) - 10} more" if len(strays) > 10 else ""
    raise UserError(f"{path}: {sum(strays.values())} rows have labels the classifier does not have: {listed}{more}; "
                    f"its labels are {', '.join(map(repr, known))}{hint}")


# ---------------------------------------------------------------------------- the command


class _Progress:
    """Progress lines on stderr, "classified N/M rows (P%)": redrawn in place on a terminal,
    else printed at most every few seconds (and the last one), so that a log stays short."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream, self.total = stream, total
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.started = self.last = time.perf_counter()
        self.width = 0

    def update(self, done: int) -> None:
        now = time.perf_counter()
        rate = done / (now - self.started) if now > self.started else 0.0
        line = f"classified {done:,}/{self.total:,} rows ({done / (self.total or 1):.0%}), {rate:,.1f} lyrics/s"
        if self.tty:
            self.stream.write("\r" + line.ljust(self.width))
            self.width = len(line)
            if done == self.total:
                self.stream.write("\n")
            self.stream.flush()
        elif done == self.total or now - self.last >= 5:
            print(line, file=self.stream, flush=True)
            self.last = now


def _summary_table(metrics: dict[str, Any], metrics_path: Path, html_path: Path) -> str:
    per_class = metrics["per_class"]
    width = max([len("label"), len("macro average"), *(len(label) for label in per_class)])
    lines = [
        f"{metrics['rows']:,} rows: {metrics['rows_scored']:,} scored, {metrics['rows_rejected']:,} rejected"
        + (f", {metrics['input']['rows_without_label']:,} without a label (skipped)"
           if metrics.get("input", {}).get("rows_without_label") else ""),
        f"accuracy {_fmt(metrics['accuracy'])}   macro F1 {_fmt(metrics['macro']['f1'])}   "
        f"ECE {_fmt(metrics['calibration']['ece'])}" + ("   (multi-label: scored by the top label)"
                                                         if metrics.get("multi_label") else ""),
        "",
        f"{'label':<{width}}  precision  recall     F1  support",
    ]
    for label, c in per_class.items():
        lines.append(f"{label:<{width}}  {_fmt(c['precision']):>9}  {_fmt(c['recall']):>6}  {_fmt(c['f1']):>5}"
                     f"  {c['support']:>7,}")
    macro = metrics["macro"]
    lines.append(f"{'macro average':<{width}}  {_fmt(macro['precision']):>9}  {_fmt(macro['recall']):>6}  "
                 f"{_fmt(macro['f1']):>5}  {metrics['rows_scored']:>7,}")
    lines += ["", f"report:  {html_path}", f"metrics: {metrics_path}"]
    return "\n".join(lines)


def evaluate_command(args: argparse.Namespace) -> int:
    from .predict import check_label_arguments, load_classifier

    check_label_arguments(args)
    report_dir = prepare_report_dir(args.report)  # before any costly step
    path = Path(args.csv)
    rows = read_labelled_rows(path, args.label_column, args.text_column)
    classifier = load_classifier(args)
    check_labels(rows, classifier.labels, path,
                 "" if args.labels else " (to evaluate other labels, give them with --labels)")

    progress = _Progress(sys.stderr, len(rows.texts))
    started = time.perf_counter()
    predictions = []
    for start in range(0, len(rows.texts), BATCH_ROWS):
        predictions.extend(classifier.classify(rows.texts[start : start + BATCH_ROWS]))
        progress.update(len(predictions))
    seconds = time.perf_counter() - started
    probabilities = [p.probabilities for p in predictions]
    predicted = [p.label if p.error is None else None for p in predictions]
    errors = [p.error for p in predictions]
    if all(errors):
        reasons = Counter(errors)
        raise UserError(f"{path}: none of the {len(errors):,} labelled rows could be classified ("
                        + "; ".join(f"{reason}: {n:,}" for reason, n in reasons.most_common()) + ")")

    metrics = compute_metrics(classifier.labels, rows.labels, probabilities, predicted,
                              multi_label=classifier.multi_label)
    metrics["method"] = "the model's predictions on the labelled rows"
    metrics["input"] = {"file": str(path), "label_column": rows.label_column, "text_column": rows.text_column,
                        "rows_without_label": rows.rows_without_label}
    metrics["rejected_by_reason"] = dict(Counter(e for e in errors if e))
    metrics["model"] = classifier.identity
    metrics["classify_seconds"] = round(seconds, 3)
    report_rows = prediction_rows(classifier.labels, rows.texts, rows.labels, probabilities, predicted,
                                  errors=errors, lines=rows.lines)
    metrics_path, html_path = write_report(report_dir, metrics, report_rows,
                                           title=f"Evaluation of {classifier.identity['name']} on {path.name}")
    print(_summary_table(metrics, metrics_path, html_path))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from .predict import add_label_arguments

    parser = subparsers.add_parser(
        "evaluate",
        help="score a model on a labelled CSV: accuracy, per-label F1, confusion matrix, calibration",
        description="Classify every row of a CSV whose labels are known and compare: print accuracy, "
                    "macro F1, per-label precision/recall/F1 and the expected calibration error, and write "
                    "DIR/metrics.json and DIR/report.html (one self-contained page: confusion matrix, "
                    "reliability diagram, the misclassified rows). Rows with an empty label are skipped; "
                    "rows the classifier rejects (empty lyrics) are counted and left out of the metrics. "
                    "Multi-label scores are evaluated by their top label.",
        epilog="example: lyrics-classifier evaluate samples/lyrics.csv --label-column genre --report eval/; "
               "with labels given at run time: lyrics-classifier evaluate moods.csv --label-column mood "
               "--labels \"happy,sad,angry\" --report eval-moods/",
    )
    parser.add_argument("csv", type=Path, metavar="LABELLED.csv", help="a UTF-8 CSV with a header row")
    parser.add_argument("--label-column", required=True, metavar="NAME", help="the column holding the true labels")
    parser.add_argument("--text-column", metavar="NAME",
                        help="the column holding the lyrics (default: the first of lyrics, lyric, text; any case)")
    parser.add_argument("--model", metavar="DIR",
                        help="model directory (default: $LYRICS_CLASSIFIER_MODEL, else models/default)")
    parser.add_argument("--report", required=True, type=Path, metavar="DIR",
                        help="directory for metrics.json and report.html (created if needed)")
    add_label_arguments(parser)
    parser.set_defaults(func=evaluate_command)
