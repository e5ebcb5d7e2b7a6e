"""The classifier runtime: what the Classify Lambda and the local runner run.

Imports onnxruntime, tokenizers, numpy and py3langid only (never torch or transformers), so
it fits in a small Lambda asset and loads in about a second.

A model directory holds three files (README.md, "Model directory"):

    model.onnx       encoder + head in one graph; the runtime reads its ``logits`` output
    tokenizer.json   a Hugging Face tokenizers file
    config.json      id2label, plus (for models built by ``lyrics-classifier build-model``)
                     max_tokens, window_stride, max_windows, pooling, source, ...

Two kinds load the same way: the default sentence-embedding model with a zero-shot or
fitted head baked into the graph, and any Hugging Face sequence-classification model
exported to ONNX (config.json with id2label). Both produce per-window logits; a lyric's
logits are the mean over its windows, then softmax. For the built-in heads (linear in the
pooled sentence embedding) that equals applying the head to the mean window embedding.

Long lyrics are not truncated: they are cut into token windows of at most ``max_tokens``
tokens (special tokens included). Windows follow the lyric's lines: whole lines are packed
into a window until the next one would not fit (``window_packing`` "packed"), or each line
is a window of its own ("lines", for a sentence encoder), so no line is cut in two and no
token is encoded twice. Only a single line longer than a window is cut, into windows that share
``window_stride`` tokens (Hugging Face's ``stride``). At most ``max_windows`` windows per
lyric are run, spread evenly over the lyric, and an over-long text is sampled to a bounded
number of characters *before* tokenisation, so a 1 MB lyric costs about as much as a long
song.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError
from .labelset import LabelSet, LabelSetError, ZeroShotHead
from .labelset import parse as parse_label_set
from .language import detect as detect_language
from .language import load as load_language_model
from .notlyrics import reason as not_lyrics

MODEL_ENV = "LYRICS_CLASSIFIER_MODEL"
EMBEDDING = "sentence_embedding"  # the pooled, unit-length embedding every built graph outputs
LAMBDA_MB_PER_VCPU = 1769  # Lambda allocates one vCPU's worth of CPU per 1,769 MB

DEFAULT_MAX_TOKENS = 128
DEFAULT_STRIDE = 32
DEFAULT_MAX_WINDOWS = 16
CHARS_PER_TOKEN_BUDGET = 8  # generous: English lyrics average ~4-5 characters per token
BATCH_TOKENS = 1024  # padded tokens per onnxruntime call: 8 x 128 measured ~10% faster than 16 x 128 (MiniLM)
BATCH_WINDOWS = 64  # for short windows (one line each); 128-token windows stop at BATCH_TOKENS
GROUP_TEXTS = 512  # texts tokenised and sorted together (bounds memory on big chunks)

REFERENCE_LYRICS = "genre_examples.csv"  # multi-label scores rank a lyric among these
REQUIRED_FILES = ("model.onnx", "tokenizer.json", "config.json")

__all__ = [
    "Classifier",
    "Engine",
    "ModelError",
    "Prediction",
    "Windows",
    "default_model_dir",
    "model_label_set",
    "threads_for_environment",
]


@dataclass(frozen=True)
class Windows:
    """How a lyric is cut into token windows (see the module docstring)."""

    max_tokens: int
    stride: int
    max_windows: int
    per_line: bool  # "lines": each line its own window; else whole lines packed ("packed")
    dedupe: bool  # repeated lines encoded once

    @classmethod
    def from_config(cls, config: dict[str, Any], **overrides: Any) -> Windows:
        settings = {**config, **{k: v for k, v in overrides.items() if v is not None}}
        return cls(
            max_tokens=int(settings["max_tokens"]),
            stride=int(settings["window_stride"]),
            max_windows=int(settings["max_windows"]),
            per_line=settings.get("window_packing", "packed") == "lines",
            dedupe=bool(settings.get("dedupe_lines", False)),
        )

    @property
    def char_budget(self) -> int:
        return self.max_windows * self.max_tokens * CHARS_PER_TOKEN_BUDGET


@dataclass(frozen=True)
class Prediction:
    label: str | None  # None when the row is rejected
    score: float | None  # probability of `label`
    probabilities: tuple[float, ...] | None  # in Classifier.labels order
    error: str | None  # per-row rejection reason; None when classified
    windows: int = 0  # token windows used
    language: str = ""  # ISO 639-1 code (language.py); "" when rejected or without letters
    labels_above: tuple[str, ...] | None = None  # multi-label: labels scoring >= the threshold, best first


def default_model_dir() -> Path:
    """$LYRICS_CLASSIFIER_MODEL, else ./models/default."""
    value = os.environ.get(MODEL_ENV)
    return Path(value) if value else Path("models") / "default"


def _visible_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def threads_for_environment() -> int:
    """onnxruntime intra-op threads for where we run.

    On Lambda the CPU share follows the memory size (one vCPU per 1,769 MB); the sandbox
    may show two logical CPUs at sizes that pay for one, so count from the memory size,
    never more than the CPUs visible. Elsewhere: the CPUs this process may run on."""
    memory = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    if memory:
        try:
            megabytes = int(memory)
        except ValueError:
            megabytes = 0
        if megabytes > 0:
            return max(1, min(math.ceil(megabytes / LAMBDA_MB_PER_VCPU), _visible_cpus()))
    return _visible_cpus()


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


_SPACE = re.compile(r"\s+")
_NOT_A_WORD = re.compile(r"[\W_]+")


def dedupe_lines(text: str) -> str:
    """Each distinct line once, in first-seen order (choruses repeat; one copy carries the
    meaning). Lines compare by their words, ignoring case, punctuation and spacing, as a
    chorus is often transcribed "Oh, oh, we shine!" once and "oh oh we shine" the next time;
    lines without a word (emoji only, say) compare as written."""
    seen: set[str] = set()
    kept: list[str] = []
    for line in text.splitlines():
        key = _NOT_A_WORD.sub(" ", line.casefold()).strip() or _SPACE.sub(" ", line).strip()
        if key and key not in seen:
            seen.add(key)
            kept.append(line.strip())
    return "\n".join(kept)


def sample_text(text: str, budget: int, pieces: int) -> str:
    """At most ~`budget` characters of `text`: `pieces` evenly spaced slices when longer."""
    if len(text) <= budget:
        return text
    pieces = max(1, pieces)
    size = max(1, budget // pieces)
    last = len(text) - size
    starts = [round(i * last / max(1, pieces - 1)) for i in range(pieces)] if pieces > 1 else [0]
    return "\n".join(text[s : s + size] for s in starts)


def _pick_windows(count: int, cap: int) -> list[int]:
    """`cap` window indices spread evenly over `count` windows (all of them if they fit)."""
    if count <= cap:
        return list(range(count))
    if cap == 1:
        return [0]
    return sorted({round(i * (count - 1) / (cap - 1)) for i in range(cap)})


_NP_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32}


class Engine:
    """Tokenisation into windows, length-sorted dynamic-padding batches, one session. Public
    for model building (modelbuild runs its embedder graph through it, so that a built head
    sees exactly what the runtime feeds it); `Classifier` is the interface for classifying."""

    def __init__(
        self, model_path: Path, tokenizer_path: Path, config: dict[str, Any], threads: int | None
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        try:
            model_bytes = model_path.read_bytes()
        except OSError as exc:
            raise ModelError(f"{model_path}: cannot read it ({exc})") from exc
        self.sha256 = hashlib.sha256(model_bytes).hexdigest()

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads or threads_for_environment()))
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                model_bytes, options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"{model_path}: onnxruntime cannot load it: {exc}") from exc
        self.threads = options.intra_op_num_threads
        self.inputs = {i.name: _NP_TYPES.get(i.type, np.int64) for i in self.session.get_inputs()}
        if "input_ids" not in self.inputs:
            raise ModelError(f"{model_path}: the graph has no input_ids input")
        self.outputs = [o.name for o in self.session.get_outputs()]

        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:
            raise ModelError(f"{tokenizer_path}: cannot load it: {exc}") from exc
        # "packed": whole lines packed into windows of up to max_tokens (a transformer reads
        # the lines in context); "lines": each line its own window (a sentence encoder such as
        # USE-m3 reads a line as the sentence it was trained on). Callers may ask for others.
        self.default_windows = Windows.from_config(config)
        self._reference: dict[Windows, np.ndarray] = {}
        self._reference_lock = threading.Lock()
        # Lines are encoded whole, without special tokens; `pack` cuts the windows itself and
        # the post-processor adds [CLS]/[SEP] to each.
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.special_tokens = self.tokenizer.num_special_tokens_to_add(False)
        pad_id = config.get("pad_token_id")
        if pad_id is None:
            for token in ("[PAD]", "<pad>", "<PAD>"):
                pad_id = self.tokenizer.token_to_id(token)
                if pad_id is not None:
                    break
        self.pad_id = int(pad_id or 0)

    def reference_embeddings(self, windows: Windows) -> np.ndarray:
        """Pooled embeddings of the reference lyrics (data/genre_examples.csv: 570 snippets in
        nine languages), computed once per window setting: multi-label scores rank a lyric
        among them. A few seconds, once per container."""
        with self._reference_lock:
            if windows not in self._reference:
                self._reference[windows] = self.pooled(read_reference_lyrics(), EMBEDDING, windows)[0]
            return self._reference[windows]

    def rounded_embeddings(self, texts: Sequence[Any], windows: Windows | None = None, unit: bool = True
                           ) -> tuple[np.ndarray | None, list[str | None]]:
        """Label descriptions (and build-model's examples) as both build-model and the runtime
        embed them, so that labels given at run time score as labels built into a graph: each
        text batched alone (int8 activations are scaled per batch, so a description's
        embedding must not depend on the others in the set), scaled to unit length with
        `unit`, rounded to 1e-5 so that last-bit differences between CPU kernels (AVX-512
        VNNI, AVX2, arm64 dot-product) do not reach the scores or the model bytes."""
        vectors, errors, _ = self.pooled(texts, EMBEDDING, windows, alone=True)
        if vectors is None or any(errors):
            return None, errors
        if unit:
            vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.round(vectors, 5).astype(np.float32), errors

    @staticmethod
    def prepare(text: Any, windows: Windows) -> str | None | tuple[str]:
        """The text to tokenise, or a 1-tuple with the rejection reason."""
        if not isinstance(text, str):
            return ("lyrics missing",) if text is None else ("lyrics are not text",)
        if not text.strip():
            return ("empty lyrics",)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates (undecodable bytes let through): tokenizers refuses them
            text = text.encode("utf-8", "replace").decode("utf-8")
        if windows.dedupe:  # before sampling, so that the sample is of distinct lines
            text = dedupe_lines(text)
        return sample_text(text, windows.char_budget, windows.max_windows)

    def windows(self, texts: Sequence[Any], windows: Windows | None = None) -> tuple[list[list[Any]], list[str | None]]:
        """Per text, its windows as Encoding objects (or an error)."""
        windows = windows or self.default_windows
        prepared = [self.prepare(t, windows) for t in texts]
        errors: list[str | None] = [p[0] if isinstance(p, tuple) else None for p in prepared]
        todo = [i for i, p in enumerate(prepared) if isinstance(p, str)]
        result: list[list[Any]] = [[] for _ in texts]
        lines = [(i, line) for i in todo for line in prepared[i].splitlines() if line.strip()]
        encodings = self.tokenizer.encode_batch([line for _, line in lines], add_special_tokens=False)
        per_text: dict[int, list[Any]] = {i: [] for i in todo}
        for (i, _), enc in zip(lines, encodings, strict=True):
            if enc.ids:
                per_text[i].append(enc)
        for i, line_encodings in per_text.items():
            if not line_encodings:
                errors[i] = "lyrics contain no recognisable tokens"
                continue
            parts = self.pack(line_encodings, windows)
            result[i] = [parts[k] for k in _pick_windows(len(parts), windows.max_windows)]
        return result, errors

    def pack(self, lines: list[Any], windows: Windows) -> list[Any]:
        """Windows from consecutive line encodings: whole lines while they fit."""
        from tokenizers import Encoding

        budget = windows.max_tokens - self.special_tokens
        groups: list[list[Any]] = []
        used = budget
        for line in lines:
            if windows.per_line or used + len(line.ids) > budget:
                groups.append([])
                used = 0
            groups[-1].append(line)
            used += len(line.ids)
        packed = []
        for group in groups:
            merged = group[0] if len(group) == 1 else Encoding.merge(group, growing_offsets=True)
            if len(merged.ids) > budget:  # a single line longer than a window
                merged.truncate(budget, stride=windows.stride)
            packed.extend(self.tokenizer.post_process(part) for part in [merged, *merged.overflowing])
        return packed

    def run(self, encodings: list[Any], output: str) -> np.ndarray:
        """`output` for every window, in the order given (batched by length inside)."""
        order = sorted(range(len(encodings)), key=lambda k: len(encodings[k].ids), reverse=True)
        results: list[np.ndarray | None] = [None] * len(encodings)
        start = 0
        while start < len(order):
            longest = len(encodings[order[start]].ids)
            size = max(1, min(BATCH_WINDOWS, BATCH_TOKENS // max(1, longest)))
            batch = order[start : start + size]
            start += size
            ids = np.full((len(batch), longest), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(batch), longest), dtype=np.int64)
            types = np.zeros((len(batch), longest), dtype=np.int64)
            for row, k in enumerate(batch):
                enc = encodings[k]
                n = len(enc.ids)
                ids[row, :n] = enc.ids
                mask[row, :n] = 1
                types[row, :n] = enc.type_ids
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            feeds = {name: feeds[name].astype(dtype, copy=False) for name, dtype in self.inputs.items()
                     if name in feeds}
            (values,) = self.session.run([output], feeds)
            for row, k in enumerate(batch):
                results[k] = values[row]
        if not results:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack(results).astype(np.float32, copy=False)

    def pooled(self, texts: Sequence[Any], output: str, settings: Windows | None = None, alone: bool = False
               ) -> tuple[np.ndarray | None, list[str | None], list[int]]:
        """Mean over each text's windows of `output`; rows of rejected texts are zeros. With
        `alone`, each text's windows are batched only with each other (as in "lines" mode)."""
        settings = settings or self.default_windows
        windows, errors = self.windows(texts, settings)
        flat = [enc for per_text in windows for enc in per_text]
        counts = [len(per_text) for per_text in windows]
        if not flat:
            return None, errors, counts
        if settings.per_line or alone:
            # int8 dynamic quantisation scales activations per batch: batching a lyric's lines
            # only with each other makes its scores independent of the rows around it (a
            # lyric has up to max_windows lines, enough to fill a batch).
            values = np.concatenate([self.run(per_text, output) for per_text in windows if per_text])
        else:
            values = self.run(flat, output)
        pooled = np.zeros((len(texts), values.shape[1]), dtype=np.float32)
        start = 0
        for i, n in enumerate(counts):
            if n:
                pooled[i] = values[start : start + n].mean(axis=0)
            start += n
        return pooled, errors, counts


def read_reference_lyrics() -> list[str]:
    import csv
    from importlib import resources

    with (resources.files("lyrics_classifier") / "data" / REFERENCE_LYRICS).open(encoding="utf-8", newline="") as handle:
        return [row["lyrics"] for row in csv.DictReader(handle)]


def _read_config(model_dir: Path) -> dict[str, Any]:
    if not model_dir.exists():
        raise ModelError(
            f"model directory {model_dir} does not exist "
            "(build it with `lyrics-classifier build-model --out DIR`)"
        )
    if not model_dir.is_dir():
        raise ModelError(f"model directory {model_dir} is not a directory")
    missing = [name for name in REQUIRED_FILES if not (model_dir / name).is_file()]
    if missing:
        raise ModelError(
            f"model directory {model_dir} is missing {', '.join(missing)} "
            f"(a model directory holds {', '.join(REQUIRED_FILES)})"
        )
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{model_dir / 'config.json'}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise ModelError(f"{model_dir / 'config.json'}: expected a JSON object")
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise ModelError(f"{model_dir / 'config.json'}: no id2label (the class names)")
    try:
        ids = sorted(int(k) for k in id2label)
    except ValueError as exc:
        raise ModelError(f"{model_dir / 'config.json'}: id2label keys must be integers") from exc
    if ids != list(range(len(ids))):
        raise ModelError(f"{model_dir / 'config.json'}: id2label must number the labels 0..n-1")
    # Hugging Face exports carry no window settings: fall back to the position limit.
    if "max_tokens" not in config:
        limit = int(config.get("max_position_embeddings") or 512)
        config["max_tokens"] = min(512, limit)
    config.setdefault("window_stride", min(DEFAULT_STRIDE, int(config["max_tokens"]) // 4))
    config.setdefault("max_windows", DEFAULT_MAX_WINDOWS)
    if not 0 <= int(config["window_stride"]) < int(config["max_tokens"]) // 2:
        raise ModelError(f"{model_dir / 'config.json'}: window_stride must be below max_tokens / 2")
    if int(config["max_windows"]) < 1:
        raise ModelError(f"{model_dir / 'config.json'}: max_windows must be at least 1")
    return config


class Classifier:
    """A loaded model directory, with the model's own head or a label set chosen at run time
    (`with_labels`). Thread-safe for concurrent `classify` calls."""

    def __init__(self, model_dir: Path, config: dict[str, Any], engine: Engine,
                 label_set: LabelSet | None = None, head: ZeroShotHead | None = None) -> None:
        self.model_dir = model_dir
        self.config = config
        self._engine = engine
        self.label_set = label_set
        self._head = head
        if label_set is not None:
            self.labels: tuple[str, ...] = label_set.labels
            self.windows = zero_shot_windows(config)
        else:
            id2label = config["id2label"]
            self.labels = tuple(str(id2label[str(i)] if str(i) in id2label else id2label[i])
                                for i in range(len(id2label)))
            self.windows = engine.default_windows
        self.multi_label = bool(label_set and label_set.multi_label)
        self.logits_output = "logits" if "logits" in engine.outputs else engine.outputs[0]
        source = config.get("source")
        self.identity: dict[str, Any] = {
            "name": str(config.get("name") or config.get("_name_or_path") or model_dir.name),
            "labels": list(self.labels),
            "sha256": engine.sha256,
            "source": source.get("name") if isinstance(source, dict) else source,
            "kind": "zero-shot (labels at run time)" if label_set else config.get("kind", "sequence-classification"),
            "max_tokens": self.windows.max_tokens,
            "window_stride": self.windows.stride,
            "max_windows": self.windows.max_windows,
            "label_set": label_set.identity() if label_set else None,
        }

    @classmethod
    def load(cls, model_dir: str | os.PathLike, threads: int | None = None,
             dedupe_lines: bool | None = None, labels: LabelSet | None = None) -> Classifier:
        """`dedupe_lines` overrides the model's setting (repeated lines encoded once);
        `labels` replaces the model's labels (see `with_labels`)."""
        model_dir = Path(model_dir)
        config = _read_config(model_dir)
        if dedupe_lines is not None:
            config["dedupe_lines"] = dedupe_lines
        engine = Engine(model_dir / "model.onnx", model_dir / "tokenizer.json", config, threads)
        load_language_model()
        classifier = cls(model_dir, config, engine)
        return classifier.with_labels(labels) if labels is not None else classifier

    def with_labels(self, label_set: LabelSet) -> Classifier:
        """This model scoring `label_set` zero-shot: its descriptions embedded by the model's own
        encoder, each label's prototype their mean, as build-model would bake them into the
        graph (same labels, same scores). Shares the loaded session; needs a graph with a
        ``sentence_embedding`` output (every model build-model or train writes)."""
        if label_set.examples:
            raise LabelSetError(f"{label_set.source}: examples (a fitted head) need "
                                "`lyrics-classifier build-model --labels FILE`; at run time, give descriptions only")
        if EMBEDDING not in self._engine.outputs:
            raise ModelError(f"{self.model_dir}: this model has no {EMBEDDING} output, so it cannot take "
                             "labels at run time (models from build-model and train have one)")
        texts = [d for label in label_set.labels for d in label_set.descriptions[label]]
        windows = zero_shot_windows(self.config)
        head = ZeroShotHead.fit(label_set, self._unit_embeddings(texts, windows, label_set.source))
        if label_set.multi_label:
            head = head.with_reference(self._engine.reference_embeddings(windows))
        return Classifier(self.model_dir, self.config, self._engine, label_set, head)

    def model_label_set(self) -> LabelSet | None:
        """The model's own labels and descriptions as a label set (see `model_label_set`)."""
        return model_label_set(self.model_dir, self.config)

    def _unit_embeddings(self, texts: list[str], windows: Windows, what: str) -> np.ndarray:
        vectors, errors = self._engine.rounded_embeddings(texts, windows)
        for text, error in zip(texts, errors, strict=True):
            if error:
                raise LabelSetError(f"{what}: the description {text[:60]!r} cannot be embedded ({error})")
        assert vectors is not None
        return vectors

    @property
    def threads(self) -> int:
        return self._engine.threads

    @property
    def engine(self) -> Engine:
        """The tokenising, windowing and batching engine under this classifier (shared by
        every label set over the same model): for model building and inspection."""
        return self._engine

    def _scores(self, group: Sequence[Any]) -> tuple[np.ndarray | None, list[str | None], list[int]]:
        if self._head is None:
            logits, errors, counts = self._engine.pooled(group, self.logits_output, self.windows)
            return (_softmax(logits) if logits is not None else None), errors, counts
        embeddings, errors, counts = self._engine.pooled(group, EMBEDDING, self.windows)
        if embeddings is None:
            return None, errors, counts
        if self.multi_label:
            return self._head.independent_scores(embeddings), errors, counts
        return _softmax(self._head.logits(embeddings)), errors, counts

    def classify(self, texts: Sequence[str]) -> list[Prediction]:
        """One Prediction per text, in input order. Rejected texts (empty, not text) get a
        Prediction with `error` set instead of raising. Multi-label: the probabilities are
        independent per label (ZeroShotHead.independent_scores), and `labels_above` lists those
        at or above the threshold."""
        predictions: list[Prediction] = []
        threshold = self.label_set.threshold if self.label_set else 0.0
        for start in range(0, len(texts), GROUP_TEXTS):
            group = texts[start : start + GROUP_TEXTS]
            # Placeholders, links and stubs are rejected, not labelled (notlyrics.py); the
            # encoder never sees them (None: the engine's own reason, e.g. empty lyrics).
            refused = [not_lyrics(text) if isinstance(text, str) and text.strip() else None for text in group]
            probabilities, errors, counts = self._scores([None if r else text for r, text in zip(refused, group)])
            errors = [r or e for r, e in zip(refused, errors)]
            for i, error in enumerate(errors):
                if error is not None:
                    predictions.append(Prediction(None, None, None, error, 0))
                    continue
                assert probabilities is not None
                row = probabilities[i]
                best = int(row.argmax())
                above = None
                if self.multi_label:
                    above = tuple(self.labels[k] for k in np.argsort(-row, kind="stable") if row[k] >= threshold)
                predictions.append(
                    Prediction(
                        label=self.labels[best],
                        score=float(row[best]),
                        probabilities=tuple(float(p) for p in row),
                        error=None,
                        windows=counts[i],
                        language=detect_language(group[i]),
                        labels_above=above,
                    )
                )
        return predictions

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Sentence embeddings (mean of the window embeddings), for fitting heads. Only for
        graphs with a ``sentence_embedding`` output; rejected texts raise ValueError."""
        if EMBEDDING not in self._engine.outputs:
            raise ModelError(f"{self.model_dir}: this model has no sentence_embedding output")
        chunks = []
        for start in range(0, len(texts), GROUP_TEXTS):
            group = texts[start : start + GROUP_TEXTS]
            pooled, errors, _ = self._engine.pooled(group, EMBEDDING, self.windows)
            bad = [(start + i, e) for i, e in enumerate(errors) if e]
            if bad:
                raise ValueError(f"text {bad[0][0]}: {bad[0][1]}")
            assert pooled is not None
            chunks.append(pooled)
        if not chunks:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(chunks)

    def count_windows(self, texts: Sequence[str]) -> int:
        """Token windows these texts are cut into (for benchmarks: work per lyric)."""
        return sum(len(w) for w in self._engine.windows(texts, self.windows)[0])


def model_label_set(model_dir: str | os.PathLike, config: dict[str, Any] | None = None) -> LabelSet | None:
    """A model's own labels and descriptions as a label set, read from its config.json (None
    when it has no descriptions, as a trained or imported model): what --multi-label scores
    without --labels."""
    config = config or _read_config(Path(model_dir))
    head = config.get("head") or {}
    descriptions = head.get("descriptions")
    if not isinstance(descriptions, dict):
        return None
    document = {"name": str(config.get("name") or Path(model_dir).name), "labels": descriptions}
    if config.get("kind") == "zero-shot":
        document.update({k: head[k] for k in ("temperature", "centre", "bias") if head.get(k) is not None})
    return parse_label_set(json.dumps(document, ensure_ascii=False).encode(), f"the labels of {model_dir}")


def zero_shot_windows(config: dict[str, Any]) -> Windows:
    """The window settings for a zero-shot head over this model's encoder: what build-model
    records as ``zero_shot_windows`` (for USE-m3, whole lines packed, at most 3 windows, where a
    fitted head reads line by line), else the model's own."""
    return Windows.from_config(config, **(config.get("zero_shot_windows") or {}))
