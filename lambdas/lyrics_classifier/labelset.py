"""Label sets: the labels a run classifies into, chosen at run time, no rebuild.

A label set is a small JSON document (the same format `build-model --labels` takes):

    {"name": "moods", "template": "a {} song", "labels": ["happy", "sad", "angry"]}
    {"labels": {"sad": ["a song about loss", "tears and goodbyes"], "happy": "sunshine and dancing"}}
    ["happy", "sad", "angry"]                  (names only: the template makes the descriptions)
    {"sad": "a song about loss", ...}           (label -> description(s))

Optional keys: "temperature" (0.05), "centre" (false), "bias" ({label: number}),
"multi_label" (false), "threshold" (0.8), and "examples" (build-model only: it fits a head
on example lyrics). Inline labels, "happy,sad,angry", are the names-only
form with a comma between names.

The runtime embeds the descriptions with the model's own encoder at load time and scores a
lyric exactly as a zero-shot head built into the graph would (`zero_shot_logits`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:  # Split reads label sets in a Lambda asset without numpy: only the head needs it
    import numpy as np

# The best of six templates on the genre samples given by name (46.0% against 43.9% for
# "a {} song": within noise; `python bench/labels.py`); it reads well for moods and genres.
DEFAULT_TEMPLATE = "this is a {} song"
PLACEHOLDER = "{}"
DEFAULT_TEMPERATURE = 0.05
# Multi-label scores are percentiles among reference lyrics (ZeroShotHead.independent_scores):
# 0.8 lists a label when a lyric is nearer to it than 4 in 5 of them. On the genre samples
# (one true genre each), 0.7 and 0.8 give the best F1 (`python bench/labels.py`); 0.8 lists fewer wrong labels.
DEFAULT_THRESHOLD = 0.8
MAX_LABELS = 200
MAX_BYTES = 1024 * 1024  # a label set is a few KB; this bounds what Split reads and embeds
LIST_SEPARATOR = ";"  # multi-label: the labels column lists the labels above the threshold


class LabelSetError(InputError):
    """The label set cannot be used as it is; the message says which part and why."""


@dataclass(frozen=True)
class LabelSet:
    name: str
    descriptions: dict[str, tuple[str, ...]]  # label -> its descriptions, in the file's order
    temperature: float = DEFAULT_TEMPERATURE
    centre: bool = False
    bias: dict[str, float] | None = None
    multi_label: bool = False
    threshold: float = DEFAULT_THRESHOLD
    template: str | None = None  # how names-only labels became descriptions
    examples: dict[str, Any] | None = None  # build-model's few-shot examples (raw, unread)
    sha256: str = ""  # of the document's bytes: the summary records it
    source: str = ""  # where it came from: a path, an s3:// URI, or "inline"
    document: bytes = field(default=b"", repr=False)  # the bytes as given (uploaded as-is)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.descriptions)

    def identity(self) -> dict[str, Any]:
        """What a summary records about the label set."""
        return {
            "name": self.name,
            "source": self.source,
            "sha256": self.sha256,
            "labels": list(self.labels),
            "multi_label": self.multi_label,
            "threshold": self.threshold if self.multi_label else None,
        }

    def with_options(self, *, multi_label: bool | None = None, threshold: float | None = None) -> LabelSet:
        """This set with multi-label scoring switched on or off (the document is rewritten, so
        that its hash names what ran)."""
        data = json.loads(self.document) if self.document else {}
        if not isinstance(data, dict) or "labels" not in data:
            data = {"labels": data}
        if multi_label is not None:
            data["multi_label"] = multi_label
        if threshold is not None:
            data["threshold"] = threshold
        return parse(json.dumps(data, ensure_ascii=False, indent=1).encode(), self.source,
                     name=self.name, template=self.template)


def _descriptions(label: str, value: Any, template: str, where: str) -> tuple[str, ...]:
    if value is None:
        before, _, after = template.partition(PLACEHOLDER)
        if before[-2:] in ("a ", "A ") and before[-3:-2] in ("", " ") and label[:1].lower() in "aeiou":
            before = before[:-1] + "n "  # "a {} song" + "angry" -> "an angry song"
        return (f"{before}{label}{after}",)
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(d, str) and d.strip() for d in values):
        raise LabelSetError(f"{where}: label {label!r} needs a description or a list of non-empty descriptions")
    return tuple(values)


def parse(document: bytes | str, where: str, *, name: str | None = None, template: str | None = None) -> LabelSet:
    """A LabelSet from a JSON document (see the module docstring); LabelSetError if unusable.
    `template` applies to labels given by name only (the document's own "template" wins)."""
    raw = document.encode("utf-8") if isinstance(document, str) else bytes(document)
    if len(raw) > MAX_BYTES:
        raise LabelSetError(f"{where}: {len(raw):,} bytes; a label set is at most {MAX_BYTES:,}")
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise LabelSetError(f"{where}: not UTF-8 text") from exc
    except ValueError as exc:
        raise LabelSetError(f"{where}: not valid JSON ({exc})") from exc
    spec: dict[str, Any] = {}
    if isinstance(data, list):
        inner: Any = data
    elif isinstance(data, dict) and isinstance(data.get("labels"), dict | list):
        spec = {k: v for k, v in data.items() if k != "labels"}
        inner = data["labels"]
    elif isinstance(data, dict):
        inner = data
    else:
        raise LabelSetError(f"{where}: expected a JSON object or a list of label names")
    chosen_template = spec.get("template", template) or DEFAULT_TEMPLATE
    if not isinstance(chosen_template, str) or PLACEHOLDER not in chosen_template:
        raise LabelSetError(f"{where}: template must be text with {{}} where the label goes (got {chosen_template!r})")
    if isinstance(inner, list):
        if not all(isinstance(label, str) for label in inner):
            raise LabelSetError(f"{where}: label names must be strings")
        pairs = [(label.strip(), None) for label in inner]
    else:
        pairs = [(str(label).strip(), value) for label, value in inner.items()]
    if any(not label for label, _ in pairs):
        raise LabelSetError(f"{where}: a label name is empty")
    seen = [label.casefold() for label, _ in pairs]
    duplicates = sorted({label for label, key in zip((p[0] for p in pairs), seen) if seen.count(key) > 1})
    if duplicates:
        raise LabelSetError(f"{where}: label {duplicates[0]!r} is given twice")
    if len(pairs) < 2:
        raise LabelSetError(f"{where}: at least two labels are needed (got {len(pairs)})")
    if len(pairs) > MAX_LABELS:
        raise LabelSetError(f"{where}: {len(pairs)} labels; at most {MAX_LABELS}")
    descriptions = {label: _descriptions(label, value, chosen_template, where) for label, value in pairs}
    names_only = any(value is None for _, value in pairs)

    def number(key: str, default: float) -> float:
        value = spec.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise LabelSetError(f"{where}: {key} must be a number (got {value!r})")
        return float(value)

    temperature = number("temperature", DEFAULT_TEMPERATURE)
    if not temperature > 0:
        raise LabelSetError(f"{where}: temperature must be positive")
    threshold = number("threshold", DEFAULT_THRESHOLD)
    if not 0 < threshold < 1:
        raise LabelSetError(f"{where}: threshold must be between 0 and 1 (got {threshold})")
    for key in ("centre", "multi_label"):
        if not isinstance(spec.get(key, False), bool):
            raise LabelSetError(f"{where}: {key} must be true or false")
    bias = spec.get("bias")
    if bias is not None:
        if not isinstance(bias, dict) or set(bias) - set(descriptions) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in bias.values()):
            raise LabelSetError(f"{where}: bias must map label names to numbers")
        bias = {label: float(bias.get(label, 0.0)) for label in descriptions}
    multi_label = bool(spec.get("multi_label", False))
    if multi_label and any(LIST_SEPARATOR in label for label in descriptions):
        raise LabelSetError(f"{where}: multi-label names cannot contain {LIST_SEPARATOR!r} (it separates them)")
    examples = spec.get("examples")
    if examples is not None and not isinstance(examples, dict):
        raise LabelSetError(f"{where}: examples must be {{\"file\": \"examples.csv\", ...}}")
    return LabelSet(
        name=str(spec.get("name") or name or "labels"),
        descriptions=descriptions,
        temperature=temperature,
        centre=bool(spec.get("centre", False)),
        bias=bias,
        multi_label=multi_label,
        threshold=threshold,
        template=chosen_template if names_only else None,
        examples=examples,
        sha256=hashlib.sha256(raw).hexdigest(),
        source=where,
        document=raw,
    )


def from_file(path: str | Path, *, template: str | None = None) -> LabelSet:
    path = Path(path)
    try:
        document = path.read_bytes()
    except OSError as exc:
        raise LabelSetError(f"labels file {path}: {exc.strerror or exc}") from exc
    return parse(document, f"labels file {path}", name=path.stem, template=template)


def inline(names: str, *, template: str | None = None) -> LabelSet:
    """"happy,sad,angry" -> a names-only set, its descriptions made by the template."""
    labels = [name.strip() for name in names.split(",")]
    document = {"name": "inline", "template": template or DEFAULT_TEMPLATE, "labels": labels}
    return parse(json.dumps(document, ensure_ascii=False).encode(), "inline labels")


def from_argument(value: str, *, template: str | None = None) -> LabelSet:
    """--labels: a labels file if one exists at that path (or the value ends with .json),
    else comma-separated names."""
    if value.lower().endswith(".json") or Path(value).is_file():
        return from_file(value, template=template)
    return inline(value, template=template)


# ----------------------------------------------------------------------------- the head


def label_prototypes(descriptions: np.ndarray, owner: list[int], labels: int, centre: bool) -> tuple[np.ndarray, np.ndarray]:
    """(prototypes [L, H], centre [H]): each label's prototype is the mean of its description
    embeddings; with `centre`, the mean of the prototypes (what all labels share: "this is a
    song") is subtracted first. Prototypes are then normalised to unit length."""
    import numpy as np

    owner_array = np.asarray(owner)
    prototypes = np.stack([descriptions[owner_array == i].mean(axis=0) for i in range(labels)])
    mean = prototypes.mean(axis=0) if centre else np.zeros(prototypes.shape[1], dtype=np.float32)
    prototypes = prototypes - mean
    prototypes /= np.linalg.norm(prototypes, axis=1, keepdims=True)
    return prototypes.astype(np.float32), mean.astype(np.float32)


@dataclass(frozen=True)
class ZeroShotHead:
    """logits = (e - centre) . prototype / temperature (+ bias): what build-model bakes into a
    graph (modelbuild.graph.append_zero_shot_head), here applied to pooled embeddings."""

    prototypes: np.ndarray  # [L, H], unit length
    centre: np.ndarray  # [H]
    temperature: float
    bias: np.ndarray | None  # [L]
    reference: np.ndarray | None = None  # [L, N] multi-label: each label's logits of N reference lyrics, sorted

    @classmethod
    def fit(cls, label_set: LabelSet, description_vectors: np.ndarray) -> ZeroShotHead:
        """From the unit embeddings of every description, in label order."""
        import numpy as np

        owner = [i for i, label in enumerate(label_set.labels) for _ in label_set.descriptions[label]]
        prototypes, centre = label_prototypes(description_vectors, owner, len(label_set.labels), label_set.centre)
        bias = (np.array([label_set.bias[label] for label in label_set.labels], dtype=np.float32)
                if label_set.bias else None)
        return cls(prototypes, centre, label_set.temperature, bias)

    def with_reference(self, embeddings: np.ndarray) -> ZeroShotHead:
        """This head able to score labels independently, against these reference lyrics."""
        import numpy as np

        reference = np.sort(self.logits(embeddings).T, axis=1)
        return ZeroShotHead(self.prototypes, self.centre, self.temperature, self.bias, reference)

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        logits = (embeddings - self.centre) @ self.prototypes.T / self.temperature
        return logits + self.bias if self.bias is not None else logits

    def independent_scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Multi-label: per label, the share of the reference lyrics that are further from the
        label than this lyric is (0.95: nearer to "sad" than 95% of them). A label's score
        depends on that label alone, whatever else is in the set, and means the same for a
        label named in two words or described in fifty sentences."""
        import numpy as np

        assert self.reference is not None
        logits = self.logits(embeddings)
        count = self.reference.shape[1]
        below = np.stack([np.searchsorted(self.reference[k], logits[:, k], side="right")
                          for k in range(logits.shape[1])], axis=1)
        return (below / (count + 1)).astype(np.float32)
