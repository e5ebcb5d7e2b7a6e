"""`lyrics-classifier predict [--model DIR] [--json] TEXT...` (`-` reads one lyric from stdin;
`--lines` / `--jsonl` read many from stdin)."""

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
    from .runtime import Classifier, ModelError, default_model_dir

    texts = list(args.texts)
    if args.stdin_format and texts:
        raise UserError(f"--{args.stdin_format} reads the lyrics from stdin: give no TEXT arguments")
    if not args.stdin_format and not texts:
        raise UserError("give one or more lyrics, `-` to read one from stdin, or --lines / --jsonl")
    if texts.count("-") > 1:
        raise UserError("`-` (read the lyric from stdin) can be given once")
    if "-" in texts:
        texts[texts.index("-")] = _read_stdin()
    if args.stdin_format == "lines":
        texts = [line for line in _read_stdin().splitlines() if line.strip()]
    elif args.stdin_format == "jsonl":
        texts = _json_lines(_read_stdin())
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
        epilog="examples: lyrics-classifier predict \"Baila conmigo, mi amor\"; "
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
                        help='one JSON object per line: {"label", "score", "scores": {label: prob}, "language"}')
    parser.set_defaults(func=predict_command)
