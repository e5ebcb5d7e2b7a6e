"""`make bench` (part 2): genre accuracy per language, on the held-out halves of the samples.

Two sample files, every snippet written for this project:

    samples/lyrics.csv        200 English snippets, 40 per genre (its latin: Spanish or Spanglish)
    samples/multilingual.csv  snippets in 8 more languages, every genre in each, plus
                              English-language ones (latin among them); column `language`

Each (file, language, genre) group is halved by id order: even positions are the tuning half,
odd ones the held-out half. The default model's head is fitted on the tuning halves (they
are `lambdas/lyrics_classifier/data/genre_examples.csv`, written by `--write-examples`;
a test checks that file against this split); the held-out halves are only measured.

    python bench/languages.py [--model DIR ...] [--write-examples] [--choose-head LABELS.json]

`--choose-head` is how the default head's settings were chosen: 5-fold cross-validation on
the tuning halves only (folds stratified by file and genre), over C and the weight of the
label descriptions, with the encoder of the given model.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENGLISH = REPO / "samples" / "lyrics.csv"
MULTILINGUAL = REPO / "samples" / "multilingual.csv"
EXAMPLES = REPO / "lambdas" / "lyrics_classifier" / "data" / "genre_examples.csv"
ENGLISH_GROUP = "English samples"  # samples/lyrics.csv as a whole


def load_samples() -> list[dict[str, str]]:
    """Every snippet with `group` (ENGLISH_GROUP or the language code of multilingual.csv)
    and `half` ("tuning" or "held-out")."""
    rows = []
    for path in (ENGLISH, MULTILINGUAL):
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                group = row["language"] if "language" in row else ENGLISH_GROUP
                rows.append({"id": row["id"], "lyrics": row["lyrics"], "genre": row["genre"], "group": group,
                             "file": path.name})
    by_cell: dict[tuple[str, str, str], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_cell[(row["file"], row["group"], row["genre"])].append(row)
    for cell in by_cell.values():
        for k, row in enumerate(sorted(cell, key=lambda r: r["id"])):
            row["half"] = "tuning" if k % 2 == 0 else "held-out"
    return rows


def examples_rows(rows: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    """(id, lyrics, genre) of the tuning halves, in file order: genre_examples.csv's rows."""
    return [(r["id"], r["lyrics"], r["genre"]) for r in rows if r["half"] == "tuning"]


def write_examples(rows: list[dict[str, str]], path: Path = EXAMPLES) -> int:
    examples = examples_rows(rows)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "lyrics", "genre"])
        writer.writerows(examples)
    return len(examples)


def accuracy_by_group(classifier, rows: list[dict[str, str]]) -> dict[tuple[str, str], tuple[int, int]]:
    """{(group, half): (right, total)}, plus ("all other languages", half) over multilingual.csv."""
    predictions = classifier.classify([r["lyrics"] for r in rows])
    scores: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row, prediction in zip(rows, predictions, strict=True):
        right = int(prediction.label == row["genre"])
        keys = [(row["group"], row["half"])]
        if row["group"] != ENGLISH_GROUP:
            keys.append(("multilingual.csv, all", row["half"]))
        for key in keys:
            scores[key][0] += right
            scores[key][1] += 1
    return {key: (right, total) for key, (right, total) in scores.items()}


def table(classifier, rows: list[dict[str, str]]) -> str:
    scores = accuracy_by_group(classifier, rows)
    groups = sorted({g for g, _ in scores}, key=lambda g: (g != ENGLISH_GROUP, g == "multilingual.csv, all", g))
    lines = [f"{'group':24s} {'tuning':>14s} {'held-out':>14s}"]
    for group in groups:
        cells = []
        for half in ("tuning", "held-out"):
            right, total = scores.get((group, half), (0, 0))
            cells.append(f"{right / total:6.1%} ({right}/{total})" if total else "-")
        lines.append(f"{group:24s} {cells[0]:>14s} {cells[1]:>14s}")
    return "\n".join(lines)


def choose_head(model: Path, labels_file: Path, rows: list[dict[str, str]]) -> None:
    import json

    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from lyrics_classifier.modelbuild.build import fit_logistic
    from lyrics_classifier.runtime import Classifier

    classifier = Classifier.load(model)
    spec = json.loads(labels_file.read_text(encoding="utf-8"))["labels"]
    labels = list(spec)
    tuning = [r for r in rows if r["half"] == "tuning"]

    # as build-model fits the head: the runtime's pooled embedding (mean of the windows')
    features = classifier.embed([r["lyrics"] for r in tuning])
    y = np.array([labels.index(r["genre"]) for r in tuning])
    descriptions = classifier.embed([d for label in labels for d in spec[label]])
    owner = np.array([i for i, label in enumerate(labels) for _ in spec[label]])
    strata = [f"{r['file']}/{r['genre']}" for r in tuning]
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(features, strata))
    print(f"5-fold cross-validation on the {len(tuning)} tuning snippets (+ {len(owner)} descriptions "
          f"in every training fold), encoder of {model}:")
    print(f"{'C':>6s} " + " ".join(f"{'desc w ' + str(w):>10s}" for w in (0.0, 0.5, 1.0, 2.0)))
    for regularization in (1.0, 3.0, 10.0, 30.0, 100.0):
        cells = []
        for weight in (0.0, 0.5, 1.0, 2.0):
            right = 0
            for train, test in folds:
                x = np.vstack([features[train], descriptions])
                target = np.concatenate([y[train], owner])
                w = np.concatenate([np.ones(len(train)), np.full(len(owner), weight)])
                # exactly the fit build-model makes for a labels file with examples
                coef, bias = fit_logistic(x, target, len(labels), regularization, w)
                right += int(((features[test] @ coef.T + bias).argmax(axis=1) == y[test]).sum())
            cells.append(f"{right / len(tuning):10.1%}")
        print(f"{regularization:6.1f} " + " ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, action="append",
                        help="model directory (repeatable; default: models/default)")
    parser.add_argument("--write-examples", action="store_true",
                        help=f"write the tuning halves to {EXAMPLES.relative_to(REPO)} and stop")
    parser.add_argument("--choose-head", type=Path, metavar="LABELS",
                        help="cross-validate the fitted head's settings for this labels file and stop")
    args = parser.parse_args()
    rows = load_samples()
    if args.write_examples:
        print(f"{EXAMPLES.relative_to(REPO)}: {write_examples(rows)} tuning snippets")
        return
    if args.choose_head:
        choose_head((args.model or [REPO / "models" / "default"])[0], args.choose_head, rows)
        return
    from lyrics_classifier.runtime import Classifier

    for model in args.model or [REPO / "models" / "default"]:
        classifier = Classifier.load(model)
        print(f"\ngenre accuracy of {model} ({classifier.identity['source']}, {classifier.identity['kind']}), "
              "by language (ISO 639-1) of the snippet:")
        print(table(classifier, rows))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
