"""`lyrics-classifier predict [--model DIR] [--json] TEXT...` (`-` reads one lyric from stdin)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def format_prediction(prediction, labels: tuple[str, ...]) -> str:
    if prediction.error is not None:
        return f"rejected: {prediction.error}"
    ranked = sorted(zip(labels, prediction.probabilities), key=lambda pair: -pair[1])
    scores = "  ".join(f"{label} {prob:.3f}" for label, prob in ranked)
    return f"{prediction.label}  {prediction.score:.3f}    ({scores})  [{prediction.language or '?'}]"


def as_json(prediction, labels: tuple[str, ...]) -> dict:
    if prediction.error is not None:
        return {"label": None, "score": None, "scores": None, "error": prediction.error}
    return {
        "label": prediction.label,
        "score": round(prediction.score, 6),
        "scores": {label: round(p, 6) for label, p in zip(labels, prediction.probabilities)},
        "language": prediction.language,
    }


def predict_command(args: argparse.Namespace) -> int:
    from .errors import UserError
    from .runtime import Classifier, ModelError, default_model_dir

    texts = list(args.texts)
    if texts.count("-") > 1:
        raise UserError("`-` (read the lyric from stdin) can be given once")
    if "-" in texts:
        texts[texts.index("-")] = sys.stdin.read()
    model_dir = Path(args.model) if args.model else default_model_dir()
    try:
        classifier = Classifier.load(model_dir)
    except ModelError as exc:
        raise UserError(str(exc)) from exc
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
    )
    parser.add_argument("texts", nargs="+", metavar="TEXT", help="lyrics to classify; `-` reads one from stdin")
    parser.add_argument("--model", metavar="DIR",
                        help="model directory (default: $LYRICS_CLASSIFIER_MODEL, else models/default)")
    parser.add_argument("--json", action="store_true",
                        help='one JSON object per line: {"label", "score", "scores": {label: prob}, "language"}')
    parser.set_defaults(func=predict_command)
