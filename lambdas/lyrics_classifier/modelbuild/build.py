"""build-model and train: a source sentence encoder + a head -> a model directory.

Deterministic and cached. Every input that shapes the output (source files, labels file or
training CSV, options, the code of this package that runs, tool versions) goes into an
input hash stored in config.json; a build whose hash matches the directory's (and whose
model.onnx still has the recorded sha256) is a no-op that prints "up to date". The costly
encoder export is cached separately (see encoder.py), keyed by source, tools and code.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from .. import labelset
from ..errors import UserError
from . import encoder as enc

FORMAT = "lyrics-classifier-model/1"
DEFAULT_OUT = Path("models") / "default"
DEFAULT_MAX_TOKENS = 128
DEFAULT_STRIDE = 16
DEFAULT_MAX_WINDOWS = 3  # MiniLM, corpus: 3 windows 93.4% vs 16: 94.0% at 1.2x the speed; 2: 91.6%
_CODE_MODULES = (
    "lyrics_classifier.runtime",
    "lyrics_classifier.labelset",
    "lyrics_classifier.modelbuild.build",
    "lyrics_classifier.modelbuild.encoder",
    "lyrics_classifier.modelbuild.graph",
    "lyrics_classifier.modelbuild.usem3",
)

Log = Callable[[str], None]


# The window settings measured best (docs/performance.md, `bench/languages.py`), by encoder
# and head. MiniLM reads whole lines packed into 128-token windows, at most 3 per lyric. So
# does USE-m3 under a zero-shot head (its prototypes are of whole descriptions: 86.0% on the
# English samples packed, 66.0% line by line); under a fitted head, USE-m3 reads each distinct
# line as its own window, at most 32 per lyric (cross-validated 86.1% against 85.4%).
ENCODER_WINDOWS = {
    ("minilm", "zero-shot"): {"max_windows": DEFAULT_MAX_WINDOWS, "window_packing": "packed"},
    ("minilm", "fitted"): {"max_windows": DEFAULT_MAX_WINDOWS, "window_packing": "packed"},
    ("use-m3", "zero-shot"): {"max_windows": DEFAULT_MAX_WINDOWS, "window_packing": "packed"},
    ("use-m3", "fitted"): {"max_windows": 32, "window_packing": "lines"},
}


@dataclass(frozen=True)
class Options:
    max_tokens: int = DEFAULT_MAX_TOKENS
    stride: int = DEFAULT_STRIDE
    max_windows: int | None = None  # None: the encoder's (ENCODER_WINDOWS)
    precision: str = "int8"  # or "fp32"
    dedupe_lines: bool = True
    fusion: str = "runtime"  # transformer fusions by onnxruntime at load, or "offline"
    window_packing: str | None = None  # "packed" or "lines"; None: the encoder's

    def for_encoder(self, encoder: str, head: str) -> Options:
        """These options with the window defaults of the encoder and head ("zero-shot" or
        "fitted") filled in."""
        defaults = ENCODER_WINDOWS.get((encoder, head), ENCODER_WINDOWS[("minilm", head)])
        return replace(
            self,
            max_windows=defaults["max_windows"] if self.max_windows is None else self.max_windows,
            window_packing=self.window_packing or defaults["window_packing"],
        )

    def check(self) -> None:
        if not 8 <= self.max_tokens <= 512:
            raise UserError(f"--max-tokens must be between 8 and 512 (got {self.max_tokens})")
        if not 0 <= self.stride < self.max_tokens // 2:
            raise UserError(f"--stride must be at least 0 and below --max-tokens / 2 (got {self.stride})")
        if self.max_windows is not None and self.max_windows < 1:
            raise UserError(f"--max-windows must be at least 1 (got {self.max_windows})")
        if self.precision not in ("int8", "fp32"):
            raise UserError(f"--precision must be int8 or fp32 (got {self.precision})")
        if self.fusion not in ("runtime", "offline"):
            raise UserError(f"--fusion must be runtime or offline (got {self.fusion})")
        if self.window_packing not in (None, "packed", "lines"):
            raise UserError(f"--windows must be packed or lines (got {self.window_packing})")

    @property
    def variant(self) -> str:
        return self.precision if self.fusion == "runtime" else f"{self.precision}-fused"

    def as_config(self) -> dict[str, Any]:
        return {
            "max_tokens": self.max_tokens,
            "window_stride": self.stride,
            "max_windows": self.max_windows,
            "window_packing": self.window_packing,
            "window_pooling": "mean of window logits",
            "dedupe_lines": self.dedupe_lines,
        }


# ---------------------------------------------------------------------------- labels


# The genre labels each encoder was tuned with: the multilingual encoder's descriptions are in
# nine languages and come with example lyrics (a fitted head); MiniLM's are English, zero-shot.
DEFAULT_LABELS = {"use-m3": "labels.json", "minilm": "labels-english.json"}


def default_labels_file(encoder: str = enc.DEFAULT_ENCODER) -> Path:
    return Path(str(resources.files("lyrics_classifier") / "data" / DEFAULT_LABELS.get(encoder, "labels.json")))


def load_labels(path: Path | None, encoder: str = enc.DEFAULT_ENCODER) -> dict[str, Any]:
    """{"name", "temperature", "centre", "bias", "labels": {label: [description, ...]},
    "examples"}, from a label set file (the format of labelset.py, which the runtime reads
    too). "examples", optional, names a labelled CSV of example lyrics beside the labels file:
    {"file": "examples.csv", "label_column": "genre", "C": 1.0, "description_weight": 1.0};
    with examples, build-model fits a logistic-regression head on the embeddings of the
    examples and of the descriptions instead of the zero-shot head."""
    path = Path(path) if path else default_labels_file(encoder)
    try:
        label_set = labelset.from_file(path)
    except labelset.LabelSetError as exc:
        raise UserError(str(exc)) from exc
    labels = {label: list(descriptions) for label, descriptions in label_set.descriptions.items()}
    return {
        "name": label_set.name,
        "temperature": label_set.temperature,
        "centre": label_set.centre,
        "bias": label_set.bias,
        "labels": labels,
        "examples": _load_examples(path, label_set.examples, labels) if label_set.examples else None,
    }


def _load_examples(labels_path: Path, examples: Any, labels: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(examples, dict) or not isinstance(examples.get("file"), str):
        raise UserError(f"labels file {labels_path}: examples must be {{\"file\": \"examples.csv\", ...}}")
    file = labels_path.parent / examples["file"]
    column = str(examples.get("label_column", "label"))
    texts, found, skipped = read_labelled_csv(file, column, examples.get("text_column"))
    unknown = sorted(set(found) - set(labels))
    if unknown:
        raise UserError(f"{file}: labels not in {labels_path.name}: {', '.join(unknown)}")
    try:
        regularization = float(examples.get("C", 1.0))
        weight = float(examples.get("description_weight", 1.0))
    except (TypeError, ValueError) as exc:
        raise UserError(f"labels file {labels_path}: examples C and description_weight must be numbers") from exc
    if regularization <= 0 or weight < 0:
        raise UserError(f"labels file {labels_path}: examples C must be positive, description_weight >= 0")
    return {"file": examples["file"], "label_column": column, "C": regularization, "description_weight": weight,
            "texts": texts, "labels": found, "skipped": skipped}


# ---------------------------------------------------------------------------- common


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _up_to_date(out: Path, input_hash: str) -> bool:
    try:
        config = json.loads((out / "config.json").read_text())
        return (
            config.get("input_hash") == input_hash
            and (out / "tokenizer.json").is_file()
            and enc.sha256_file(out / "model.onnx") == config.get("model_sha256")
        )
    except (OSError, ValueError):
        return False


def _engine(embedder: Path, source: enc.Source, options: Options):
    """The runtime's windowing/batching engine over an embedder graph, one thread (so the
    floats, and hence the model bytes, do not depend on the machine's core count)."""
    from ..runtime import Engine

    config = {
        "max_tokens": options.max_tokens,
        "window_stride": options.stride,
        "max_windows": options.max_windows,
        "window_packing": options.window_packing,
        "dedupe_lines": options.dedupe_lines,
        "pad_token_id": source.pad_token_id,
    }
    return Engine(embedder, source.path / "tokenizer.json", config, threads=1)


def _embedder(source: enc.Source, cache: Path, options: Options, log: Log) -> Path:
    variants = enc.embedders(source, cache, log)
    if options.variant not in variants:
        raise UserError(f"--fusion offline applies to transformer encoders, not {source.name}")
    return variants[options.variant]


def check_out_dir(out: Path) -> None:
    """Before any work: --out is a directory, or can become one."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; name a directory for the model (it holds model.onnx, ...)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None


def _write(out: Path, model, source: enc.Source, config: dict[str, Any]) -> str:
    """model.onnx, tokenizer.json, config.json into `out`, config last (it is the marker of
    a complete build). Returns the sha256 of model.onnx."""
    out.mkdir(parents=True, exist_ok=True)
    data = model.SerializeToString()
    sha = hashlib.sha256(data).hexdigest()
    config = {**config, "model_sha256": sha}
    files = {
        "model.onnx": data,
        "tokenizer.json": (source.path / "tokenizer.json").read_bytes(),
        "config.json": (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode(),
    }
    stale = out / "config.json"
    if stale.exists():
        stale.unlink()
    for name, payload in files.items():
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; Lambda runs the asset as another user
        os.replace(tmp, out / name)
    return sha


def zero_shot_windows(kind: str, encoder: str, options: Options) -> dict[str, Any]:
    if kind == "zero-shot":
        return {"max_windows": options.max_windows, "window_packing": options.window_packing}
    defaults = Options(max_tokens=options.max_tokens, stride=options.stride).for_encoder(encoder, "zero-shot")
    return {"max_windows": defaults.max_windows, "window_packing": defaults.window_packing}


def _base_config(kind: str, name: str, labels: list[str], source: enc.Source, options: Options) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "name": name,
        "kind": kind,
        "id2label": {str(i): label for i, label in enumerate(labels)},
        "label2id": {label: i for i, label in enumerate(labels)},
        **options.as_config(),
        # Labels given at run time get a zero-shot head: it reads windows as a built one would.
        "zero_shot_windows": zero_shot_windows(kind, source.encoder, options),
        "pooling": source.pooling,
        "normalize": source.normalize,
        "pad_token_id": source.pad_token_id,
        "precision": options.precision,
        "graph_fusion": (
            "onnxruntime transformer optimiser, offline" if options.fusion == "offline"
            else "onnxruntime graph optimisations at load (measured faster for int8 than offline fusion)"
        ),
        "quantization": (
            "onnxruntime dynamic int8 (int8 weights per channel, uint8 activations)"
            if options.precision == "int8" else None
        ),
        "outputs": ["logits", "probabilities", "sentence_embedding"],
        "source": enc.describe(source),
    }


# ---------------------------------------------------------------------------- build-model


def _embed(engine, texts: list[str], what: str, unit: bool = True):
    """Sentence embeddings as the runtime pools them (the mean of the window embeddings), as
    the runtime embeds label descriptions (runtime.Engine.rounded_embeddings)."""
    vectors, errors = engine.rounded_embeddings(texts, unit=unit)
    if vectors is None:
        index = next(i for i, e in enumerate(errors) if e)
        raise UserError(f"{what} could not be embedded ({errors[index]}): {texts[index][:60]!r}")
    return vectors


def logistic_regression(regularization: float):
    """The one classifier every fitted head uses (train, few-shot labels, and the
    cross-validation that chose the default's settings)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=regularization, max_iter=5000)


def fit_logistic(features, y, classes: int, regularization: float, weights=None):
    """(weight [classes, hidden], bias [classes]) of a multinomial logistic regression:
    logits = features @ weight.T + bias."""
    import numpy as np

    fitted = logistic_regression(regularization).fit(features, y, sample_weight=weights)
    weight, bias = fitted.coef_, fitted.intercept_
    if classes == 2:  # scikit-learn keeps one row for a binary problem
        weight = np.vstack([-weight[0] / 2, weight[0] / 2])
        bias = np.array([-bias[0] / 2, bias[0] / 2])
    return weight, bias


def build_model(
    out: Path = DEFAULT_OUT,
    *,
    encoder: str = enc.DEFAULT_ENCODER,
    source_dir: Path | None = None,
    labels_file: Path | None = None,
    options: Options = Options(),
    cache_dir: Path | None = None,
    force: bool = False,
    log: Log = print,
) -> bool:
    """Build the model directory for a labels file: a zero-shot head, or with examples a fitted
    one. Returns False when it was already up to date."""
    import numpy as np
    import onnx

    from ..labelset import label_prototypes
    from .graph import append_linear_head, append_zero_shot_head

    options.check()
    out = Path(out)
    check_out_dir(out)
    cache = Path(cache_dir) if cache_dir else enc.default_cache_dir()
    source = enc.resolve_source(encoder, source_dir, cache)
    spec = load_labels(labels_file, encoder)
    options = options.for_encoder(source.encoder, "fitted" if spec["examples"] else "zero-shot")
    input_hash = _hash(
        {
            "command": "build-model",
            "source": source.files_sha256,
            "labels": spec,
            "options": options.as_config() | {"variant": options.variant},
            "tools": enc.tool_versions(),
            "code": enc.code_hash(*_CODE_MODULES),
        }
    )
    if not force and _up_to_date(out, input_hash):
        log(f"{out}: up to date")
        return False
    embedder = _embedder(source, cache, options, log)
    labels = list(spec["labels"])
    texts = [d for label in labels for d in spec["labels"][label]]
    owner = [i for i, label in enumerate(labels) for _ in spec["labels"][label]]
    engine = _engine(embedder, source, options)
    log(f"embedding {len(texts)} descriptions of {len(labels)} labels")
    vectors = _embed(engine, texts, "a label description")
    examples = spec["examples"]
    graph = onnx.load(str(embedder))
    if examples:
        log(f"embedding {len(examples['texts'])} example lyrics ({examples['file']})")
        # what the head will see at run time: the mean of a lyric's window embeddings
        features = np.vstack([_embed(engine, examples["texts"], "an example lyric", unit=False), vectors])
        y = np.array([labels.index(label) for label in examples["labels"]] + owner)
        weights = np.array([1.0] * len(examples["texts"]) + [examples["description_weight"]] * len(texts))
        weight, bias = fit_logistic(features, y, len(labels), examples["C"], weights)
        model = append_linear_head(graph, weight, bias)
        kind = "few-shot"
        head = {
            "type": "logistic regression (scikit-learn) on the sentence embeddings of the example "
                    "lyrics and of the label descriptions, softmax",
            "C": examples["C"],
            "description_weight": examples["description_weight"],
            "examples": {"file": examples["file"], "rows": len(examples["texts"]),
                         "counts": {label: examples["labels"].count(label) for label in labels}},
        }
    else:
        bias = np.array([spec["bias"][label] for label in labels], dtype=np.float32) if spec["bias"] else None
        prototypes, centre = label_prototypes(vectors, owner, len(labels), spec["centre"])
        model = append_zero_shot_head(graph, prototypes, centre, spec["temperature"], bias)
        kind = "zero-shot"
        head = {
            "type": "zero-shot: cosine similarity to each label's prototype (normalised mean of its "
                    "description embeddings; centred: minus the mean prototype) / temperature, softmax",
            "temperature": spec["temperature"],
            "centre": spec["centre"],
            "bias": spec["bias"],
        }
    config = _base_config(kind, spec["name"], labels, source, options)
    config["head"] = head | {"descriptions": spec["labels"]}
    config["input_hash"] = input_hash
    sha = _write(out, model, source, config)
    log(f"{out}: built {options.precision} {kind} model for {', '.join(labels)} (model.onnx sha256 {sha[:12]})")
    return True


# ---------------------------------------------------------------------------- train


def read_labelled_csv(path: Path, label_column: str, text_column: str | None) -> tuple[list[str], list[str], int]:
    """(texts, labels, rows skipped for an empty text or label), read strictly as `evaluate`
    reads (an unclosed quote or a short row is an error naming its line, never merged rows)."""
    from ..evaluation import read_labelled_rows

    rows = read_labelled_rows(path, label_column, text_column)
    kept = [(text, label) for text, label in zip(rows.texts, rows.labels, strict=True) if text.strip()]
    skipped = rows.rows_without_label + len(rows.texts) - len(kept)
    return [text for text, _ in kept], [label for _, label in kept], skipped


def train(
    csv_path: Path,
    *,
    label_column: str,
    text_column: str | None = None,
    out: Path,
    encoder: str = enc.DEFAULT_ENCODER,
    source_dir: Path | None = None,
    options: Options = Options(),
    folds: int = 5,
    regularization: float = 1.0,
    cache_dir: Path | None = None,
    force: bool = False,
    log: Log = print,
    report: Path | None = None,
) -> dict[str, Any]:
    """Fit a logistic-regression head on sentence embeddings, bake it into the graph. With
    `report`, also write metrics.json and report.html there (evaluation.py) for the out-of-fold
    predictions of the cross-validation: every row scored by a head fitted without its fold. An
    up-to-date model is kept, but embedded again for a report."""
    import numpy as np
    import onnx

    from ..evaluation import prepare_report_dir
    from .graph import EMBEDDING, append_linear_head

    options.check()
    out = Path(out)
    check_out_dir(out)
    # an output, not an input (never in the hash); checked before anything costly
    report_dir = prepare_report_dir(report) if report is not None else None
    texts, labels, skipped = read_labelled_csv(Path(csv_path), label_column, text_column)
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise UserError(f"{csv_path}: column {label_column!r} needs at least two different labels")
    counts = {c: labels.count(c) for c in classes}
    smallest = min(counts.values())
    if smallest < 2:
        rare = ", ".join(c for c, n in counts.items() if n < 2)
        raise UserError(f"{csv_path}: every label needs at least two examples ({rare} has one)")
    if regularization <= 0:
        raise UserError("--C must be positive")
    cache = Path(cache_dir) if cache_dir else enc.default_cache_dir()
    source = enc.resolve_source(encoder, source_dir, cache)
    options = options.for_encoder(source.encoder, "fitted")
    input_hash = _hash(
        {
            "command": "train",
            "source": source.files_sha256,
            "data": hashlib.sha256(json.dumps([texts, labels]).encode()).hexdigest(),
            "options": options.as_config() | {"variant": options.variant},
            "folds": folds,
            "C": regularization,
            "tools": enc.tool_versions() | {"scikit-learn": _version("scikit-learn")},
            "code": enc.code_hash(*_CODE_MODULES, "lyrics_classifier.modelbuild.commands"),
        }
    )
    up_to_date = not force and _up_to_date(out, input_hash)
    if up_to_date:
        config = json.loads((out / "config.json").read_text())
        log(f"{out}: up to date (cross-validated accuracy {config['head']['cv_accuracy']:.3f})")
        if report_dir is None:
            return config["head"]
    from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_val_score

    from ..runtime import GROUP_TEXTS

    embedder = _embedder(source, cache, options, log)
    engine = _engine(embedder, source, options)
    log(f"embedding {len(texts)} texts ({skipped} rows skipped: empty text or label)")
    # In the runtime's groups of texts (as Classifier.embed), a progress line per group. Under
    # packed windows the grouping shapes the embeddings (int8 activations are scaled per batch).
    chunks = []
    for start in range(0, len(texts), GROUP_TEXTS):
        pooled, errors, _ = engine.pooled(texts[start : start + GROUP_TEXTS], EMBEDDING)
        assert not any(errors) and pooled is not None  # read_labelled_csv skips empty texts
        chunks.append(pooled)
        log(f"  embedded {start + len(pooled)}/{len(texts)} texts")
    features = np.concatenate(chunks)
    y = np.array([classes.index(label) for label in labels])

    k = max(2, min(folds, smallest))
    cv = StratifiedKFold(k, shuffle=True, random_state=0)  # the report's folds are the score's folds
    if up_to_date:
        head = config["head"]
        sha = config.get("model_sha256")
    else:
        scores = cross_val_score(logistic_regression(regularization), features, y, cv=cv)
        log(f"cross-validated accuracy ({k} folds): {scores.mean():.3f} ± {scores.std():.3f} "
            f"({', '.join(f'{s:.2f}' for s in scores)})")
        weight, bias = fit_logistic(features, y, len(classes), regularization)
        graph = append_linear_head(onnx.load(str(embedder)), weight, bias)
        head = {
            "type": "logistic regression on the sentence embedding (scikit-learn), softmax",
            "C": regularization,
            "trained_on": {"file": Path(csv_path).name, "rows": len(texts), "skipped": skipped,
                           "label_column": label_column, "counts": counts},
            "cv_folds": k,
            "cv_accuracy": round(float(scores.mean()), 4),
            "cv_accuracy_std": round(float(scores.std()), 4),
        }
        config = _base_config("trained", f"lyrics-{label_column}-trained", classes, source, options)
        config["head"] = head
        config["input_hash"] = input_hash
        sha = _write(out, graph, source, config)
        log(f"{out}: trained head for {', '.join(classes)} (model.onnx sha256 {sha[:12]})")
    if report_dir is not None:
        from ..evaluation import compute_metrics, prediction_rows, write_report

        held_out = cross_val_predict(logistic_regression(regularization), features, y, cv=cv, method="predict_proba")
        probabilities = [tuple(float(p) for p in row) for row in held_out]
        predicted = [classes[int(row.argmax())] for row in held_out]
        metrics = compute_metrics(classes, labels, probabilities, predicted)
        metrics["method"] = (f"out-of-fold: each row scored by a head fitted on the other {k - 1} of the {k} "
                             "cross-validation folds (rows: the training rows, skipped rows not counted)")
        metrics["input"] = {"file": str(csv_path), "label_column": label_column,
                            "text_column": text_column or "the first of lyrics, lyric, text", "rows_skipped": skipped}
        metrics["model"] = {"name": config["name"], "dir": str(out), "sha256": sha}
        metrics["cross_validation"] = {"folds": k, "accuracy_mean_of_folds": head["cv_accuracy"]}
        rows = prediction_rows(classes, texts, labels, probabilities, predicted)
        _, html_path = write_report(report_dir, metrics, rows,
                                    title=f"Cross-validation of {config['name']} on {Path(csv_path).name}")
        log(f"out-of-fold accuracy {metrics['accuracy']:.3f}, macro F1 {metrics['macro']['f1']:.3f}, "
            f"ECE {metrics['calibration']['ece']:.3f}; report: {html_path}")
    return head


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"
