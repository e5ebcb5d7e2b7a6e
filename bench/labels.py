"""`make bench` (part 3): labels at run time. Genre accuracy of the default model's encoder
when the genres are given at run time, by name only (`--labels "rock,pop,..."`) under
several templates and temperatures, or with descriptions (labels files), against the model's
own fitted head; and what a label set costs to load.

Every sample row (samples/lyrics.csv and samples/multilingual.csv, 1,140 snippets) is
scored: no label set here was tuned on them, except the model's own head, whose tuning
halves are excluded from its row (held-out halves only, as in bench/languages.py).

    python bench/labels.py [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from languages import ENGLISH_GROUP, load_samples  # noqa: E402

from lyrics_classifier import labelset  # noqa: E402
from lyrics_classifier.runtime import Classifier  # noqa: E402

GENRES = "rock,pop,hip hop,country,latin"
TEMPLATES = ("{}", "a {} song", "{} music", "a song about {}", "this is a {} song", "{} lyrics")
TEMPERATURES = (0.01, 0.02, 0.05, 0.1)  # the ranking never changes; the confidence does
MULTI_LABEL_THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95)
DATA = Path(__file__).resolve().parents[1] / "lambdas" / "lyrics_classifier" / "data"


def accuracy(classifier: Classifier, rows: list[dict[str, str]]) -> tuple[float, float, float]:
    """(all rows, English samples, other languages) accuracy."""
    return scores(classifier, rows)[:3]


def scores(classifier: Classifier, rows: list[dict[str, str]]) -> tuple[float, float, float, float, float]:
    """(accuracy: all rows, English samples, other languages; mean log-loss; mean confidence)."""
    predictions = classifier.classify([r["lyrics"] for r in rows])
    truth = [classifier.labels.index(r["genre"]) for r in rows]
    log_loss = -sum(math.log(max(p.probabilities[t], 1e-12)) for p, t in zip(predictions, truth)) / len(rows)
    confidence = sum(p.score for p in predictions) / len(rows)
    hits = [p.label == r["genre"] for p, r in zip(predictions, rows, strict=True)]

    def share(keep) -> float:
        chosen = [h for h, r in zip(hits, rows) if keep(r)]
        return sum(chosen) / len(chosen) if chosen else float("nan")

    return (share(lambda r: True), share(lambda r: r["group"] == ENGLISH_GROUP),
            share(lambda r: r["group"] not in (ENGLISH_GROUP, "en")), log_loss, confidence)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/default", help="model directory (default: %(default)s)")
    args = parser.parse_args()
    rows = load_samples()
    model = Classifier.load(args.model)
    print(f"# Labels at run time ({args.model}, {len(rows)} sample lyrics)\n")
    print("| label set | all | English samples | other languages |")
    print("|---|---:|---:|---:|")
    held_out = [r for r in rows if r["half"] == "held-out"]
    a, e, o = accuracy(model, held_out)
    print(f"| the model's own fitted head (held-out halves only) | {a:.1%} | {e:.1%} | {o:.1%} |")
    results = {}
    for template in TEMPLATES:
        results[template] = accuracy(model.with_labels(labelset.inline(GENRES, template=template)), rows)
        a, e, o = results[template]
        print(f"| names, template `{template}` | {a:.1%} | {e:.1%} | {o:.1%} |")
    for name in ("labels.json", "labels-english.json"):
        spec = labelset.from_file(DATA / name)
        # descriptions only: labels.json's examples make a fitted head, which needs build-model
        descriptions = labelset.parse(json.dumps({"labels": spec.descriptions, "temperature": spec.temperature,
                                                  "centre": spec.centre}).encode(), name)
        a, e, o = accuracy(model.with_labels(descriptions), rows)
        count = sum(len(v) for v in spec.descriptions.values())
        print(f"| descriptions of {name} ({count}), zero-shot | {a:.1%} | {e:.1%} | {o:.1%} |")
    best = max(results, key=lambda k: results[k][0])
    print(f"\nbest template: `{best}` (the default: `{labelset.DEFAULT_TEMPLATE}`)")

    print("\n| temperature (names, default template) | accuracy | mean log-loss | mean confidence |")
    print("|---:|---:|---:|---:|")
    for temperature in TEMPERATURES:
        document = {"temperature": temperature, "labels": GENRES.split(",")}
        a, _, _, loss, confidence = scores(model.with_labels(labelset.parse(json.dumps(document), "bench")), rows)
        print(f"| {temperature} | {a:.1%} | {loss:.3f} | {confidence:.1%} |")

    print("\n## Multi-label (held-out halves; each lyric has one true genre, so every other listed label is wrong)\n")
    print("| label set | threshold | true genre listed | wrong labels per lyric | nothing listed | F1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for what, label_set in (("names", labelset.inline(GENRES)), ("the model's descriptions", model.model_label_set())):
        multi = model.with_labels(label_set.with_options(multi_label=True))
        predictions = multi.classify([r["lyrics"] for r in held_out])
        for threshold in MULTI_LABEL_THRESHOLDS:
            listed = [[label for label, p in zip(multi.labels, prediction.probabilities) if p >= threshold]
                      for prediction in predictions]
            hits = sum(r["genre"] in chosen for chosen, r in zip(listed, held_out))
            wrong = sum(len(chosen) for chosen in listed) - hits
            precision = hits / max(1, hits + wrong)
            recall = hits / len(held_out)
            f1 = 2 * precision * recall / max(1e-9, precision + recall)
            print(f"| {what} | {threshold} | {recall:.1%} | {wrong / len(held_out):.2f} | "
                  f"{sum(not c for c in listed) / len(held_out):.1%} | {f1:.2f} |")

    print("\n| loading labels at run time | ms (median of 5) |\n|---|---:|")
    for what, label_set in (("5 names", labelset.inline(GENRES)),
                            ("labels-english.json descriptions", labelset.from_file(DATA / "labels-english.json"))):
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            model.with_labels(label_set)
            timings.append((time.perf_counter() - started) * 1000)
        print(f"| {what} ({sum(len(v) for v in label_set.descriptions.values())} descriptions) | "
              f"{sorted(timings)[2]:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
