"""`lyrics-classifier predict [--model DIR] [--json] TEXT...` (`-` reads one lyric from stdin;
`--lines` / `--jsonl` read many from stdin)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def format_prediction(prediction, labels: tuple[str, ...]) -> str:
    if prediction.error is not None:
        return f"rejected: {prediction.error}"
    ranked = sorted(zip(labels, prediction.probabilities), key=lambda pair: -pair[1])
    scores = "  ".join(f"{label} {prob:.3f}" for label, prob in ranked)
    chosen = prediction.label if prediction.labels_above is None else "; ".join(prediction.labels_above) or "(none)"
    best = "" if prediction.labels_above is not None else f"  {prediction.score:.3f}"
    return f"{chosen}{best}    ({scores})  [{prediction.language or '?'}]"


def as_json(prediction, labels: tuple[str, ...]) -> dict:
    if prediction.error is not None:
        return {"label": None, "score": None, "scores": None, "error": prediction.error}
    return {
        "label": prediction.label,
        "score": round(prediction.score, 6),
        "scores": {label: round(p, 6) for label, p in zip(labels, prediction.probabilities)},
        "language": prediction.language,
        **({"labels": list(prediction.labels_above)} if prediction.labels_above is not None else {}),
    }


def add_label_arguments(parser: argparse.ArgumentParser) -> None:
    """--labels, --template, --multi-label, --threshold: the same on predict, run and evaluate."""
    from .labelset import DEFAULT_TEMPLATE, DEFAULT_THRESHOLD

    group = parser.add_argument_group("labels at run time (instead of the model's own)")
    group.add_argument("--labels", metavar="FILE|NAMES",
                       help='a label set file (JSON, the labels.json format) or comma-separated label names, '
                            '"happy,sad,angry"; the model embeds their descriptions at load time, no rebuild')
    group.add_argument("--template", metavar="TEXT",
                       help=f'turns a label name into its description, {{}} marking the name (default: '
                            f'"{DEFAULT_TEMPLATE}"); for names without descriptions')
    group.add_argument("--multi-label", action="store_true",
                       help="score each label on its own (a song can be sad and romantic) and list every label "
                            "at or above --threshold; without --labels, the model's own label descriptions")
    group.add_argument("--threshold", type=float, metavar="P",
                       help=f"multi-label: the score a label needs to be listed (default: {DEFAULT_THRESHOLD})")


def check_label_arguments(args: argparse.Namespace) -> None:
    """Option mistakes, before anything loads."""
    from .errors import UserError

    if args.template and not args.labels:
        raise UserError("--template shapes the names given with --labels: give --labels too")
    if args.threshold is not None and not args.multi_label:
        raise UserError("--threshold applies to --multi-label: give --multi-label too")


def label_set_from_args(args: argparse.Namespace, model_dir: Path):
    """The LabelSet the options ask for, or None for the model's own labels. With
    --multi-label and no --labels, the model's own descriptions."""
    from . import labelset
    from .errors import ModelError, UserError
    from .runtime import model_label_set

    check_label_arguments(args)
    if not args.labels and not args.multi_label:
        return None
    try:
        if args.labels:
            chosen = labelset.from_argument(args.labels, template=args.template)
        else:
            chosen = model_label_set(model_dir)
            if chosen is None:
                raise UserError("--multi-label needs label descriptions, and this model has none: give --labels")
        if args.multi_label:
            chosen = chosen.with_options(multi_label=True, threshold=args.threshold)
    except (labelset.LabelSetError, ModelError) as exc:
        raise UserError(str(exc)) from exc
    return chosen


def load_classifier(args: argparse.Namespace, threads: int | None = None):
    """The --model directory's classifier, with the label options applied."""
    from .errors import UserError
    from .labelset import LabelSetError
    from .runtime import Classifier, ModelError, default_model_dir

    model_dir = Path(args.model) if args.model else default_model_dir()
    try:
        chosen = label_set_from_args(args, model_dir)
        return Classifier.load(model_dir, threads=threads, labels=chosen)
    except (ModelError, LabelSetError) as exc:
        raise UserError(str(exc)) from exc


def _read_stdin() -> str:
    from .errors import UserError

    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # a text stream (tests, embedding programs): already decoded
        return sys.stdin.read()
    data = buffer.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"stdin is not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r})") from exc


def _json_lines(data: str) -> list[str]:
    """One JSON object per line, its lyric under "lyrics", "lyric" or "text" (or a bare string)."""
    from .errors import UserError

    texts = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise UserError(f"stdin line {number}: not JSON ({exc.msg})") from exc
        if isinstance(value, dict):
            value = next((value[k] for k in ("lyrics", "lyric", "text") if k in value), None)
        if not isinstance(value, str):
            raise UserError(f'stdin line {number}: expected a string or an object with "lyrics" or "text"')
        texts.append(value)
    return texts


def predict_command(args: argparse.Namespace) -> int:
    from .errors import UserError

    check_label_arguments(args)
    texts = list(args.texts)
    if args.stdin_format and texts:
        raise UserError(f"--{args.stdin_format} reads the lyrics from stdin: give no TEXT arguments")
    if not args.stdin_format and not texts:
        raise UserError("give one or more lyrics, `-` to read one from stdin, or --lines / --jsonl")
    if texts.count("-") > 1:
        raise UserError("`-` (read the lyric from stdin) can be given once")
    for number, text in enumerate(texts, start=1):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # argv bytes that were not UTF-8 (kept as surrogates)
            at = len(os.fsencode(text[: exc.start]))
            raise UserError(f"TEXT {number} is not UTF-8 (byte {at}: {os.fsencode(text)[at:at + 1]!r}); "
                            "pass UTF-8 text, or a file through --lines") from None
    if "-" in texts:
        texts[texts.index("-")] = _read_stdin()
    if args.stdin_format == "lines":
        texts = [line for line in _read_stdin().splitlines() if line.strip()]
    elif args.stdin_format == "jsonl":
        texts = _json_lines(_read_stdin())
    classifier = load_classifier(args)
    predictions = classifier.classify(texts)
    for text, prediction in zip(texts, predictions, strict=True):
        if args.json:
            print(json.dumps(as_json(prediction, classifier.labels), ensure_ascii=False))
        else:
            if len(texts) > 1:
                preview = " ".join(text.split())
                print(f"{preview[:60]}{'…' if len(preview) > 60 else ''}")
                print(f"  {format_prediction(prediction, classifier.labels)}")
            else:
                print(format_prediction(prediction, classifier.labels))
    return 1 if all(p.error for p in predictions) else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="classify lyrics given on the command line (or `-` for stdin)",
        description="Print, per text, the predicted label, its probability, every label's "
                    "probability and the text's language (ISO 639-1 code).",
        epilog="examples: lyrics-classifier predict \"Baila conmigo, mi amor\"; "
               "lyrics-classifier predict --labels \"happy,sad,angry\" \"I cried all night\"; "
               "cut -d, -f2 songs.txt | lyrics-classifier predict --lines --json",
    )
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="lyrics to classify; `-` reads one from stdin")
    stdin = parser.add_mutually_exclusive_group()
    stdin.add_argument("--lines", dest="stdin_format", action="store_const", const="lines",
                       help="read lyrics from stdin, one per line (blank lines skipped)")
    stdin.add_argument("--jsonl", dest="stdin_format", action="store_const", const="jsonl",
                       help='read lyrics from stdin as JSON Lines: a string, or an object with "lyrics" '
                            '(or "lyric", "text") per line')
    parser.add_argument("--model", metavar="DIR",
                        help="model directory (default: $LYRICS_CLASSIFIER_MODEL, else models/default)")
    parser.add_argument("--json", action="store_true",
                        help='one JSON object per line: {"label", "score", "scores": {label: prob}, "language"} '
                             '(multi-label: and "labels", those at or above the threshold)')
    add_label_arguments(parser)
    parser.set_defaults(func=predict_command)
