"""A realistic lyrics corpus, generated from the labelled sample snippets.

Real song lyrics are a few verses and a chorus that comes back three or four times, with
lengths around a median of ~250 words and a tail to ~1,000. `make_corpus` composes songs
like that from the snippets of samples/lyrics.csv (one genre per song, so every song keeps
its snippet's label): verses are distinct snippets, the chorus is one snippet repeated
after every verse and once more at the end, sometimes with a bridge. Word counts follow a
log-normal distribution, clipped to 40..1,000 words: 1,000 songs have a median of ~250
words and a 90th percentile of ~540.
Deterministic for a given seed and sample file.

    make_corpus(n, seed=0) -> [(lyrics, genre), ...]
    write_csv(path, n, seed=0)   # columns id,lyrics,genre

    python bench/corpus.py out.csv 1000 [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import random
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = Path(os.environ.get("LYRICS_SAMPLES") or REPO / "samples" / "lyrics.csv")
MEDIAN_WORDS = 225  # the target; songs end on a whole section, so the result is ~250
SIGMA = 0.6  # log-normal spread: P(> 1,000 words) ~ 1%
MIN_WORDS, MAX_WORDS = 40, 1000


def load_snippets(path: Path = SAMPLES) -> dict[str, list[list[str]]]:
    """{genre: [snippet as a list of lines]} from the sample CSV (columns lyrics, genre)."""
    by_genre: dict[str, list[list[str]]] = defaultdict(list)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            lines = [line.strip() for line in row["lyrics"].splitlines() if line.strip()]
            if lines and row["genre"].strip():
                by_genre[row["genre"].strip()].append(lines)
    if not by_genre:
        raise ValueError(f"{path}: no labelled snippets")
    return dict(sorted(by_genre.items()))


def _words(lines: list[str]) -> int:
    return sum(len(line.split()) for line in lines)


def target_words(rng: random.Random) -> int:
    words = math.exp(rng.gauss(math.log(MEDIAN_WORDS), SIGMA))
    return int(min(MAX_WORDS, max(MIN_WORDS, words)))


def compose_song(snippets: list[list[str]], words: int, rng: random.Random) -> str:
    """Verse / chorus / verse / chorus ... until about `words` words."""
    order = list(range(len(snippets)))
    rng.shuffle(order)
    chorus = snippets[order[0]]
    if _words(chorus) < 25 and len(order) > 1:  # short hooks get sung twice
        chorus = chorus + chorus
    verses = [snippets[i] for i in order[1:]] or [chorus]
    sections: list[list[str]] = []
    total, v = 0, 0
    while total < words:
        verse = list(verses[v % len(verses)])
        v += 1
        if rng.random() < 0.5 and total + _words(verse) < words * 0.6:
            verse += verses[v % len(verses)]  # a longer verse: two snippets
            v += 1
        sections.append(verse)
        total += _words(verse)
        if total >= words:
            break
        if rng.random() < 0.15 and v > 2:  # a bridge: one more snippet
            bridge = verses[v % len(verses)]
            v += 1
            sections.append(bridge)
            total += _words(bridge)
        sections.append(chorus)
        total += _words(chorus)
    if len(sections) > 2 and sections[-1] is not chorus:
        sections.append(chorus)  # songs end on the chorus
    # trim the last section's lines if the song overshot by a lot (keeps the tail honest)
    song = [line for section in sections for line in section + [""]]
    limit = min(words * 1.15, MAX_WORDS)
    while sum(len(line.split()) for line in song) > limit and len(song) > 4:
        song.pop()
    return "\n".join(song).strip()


def make_corpus(n: int, seed: int = 0, samples: Path = SAMPLES) -> list[tuple[str, str]]:
    """`n` songs as (lyrics, genre), genres in rotation, deterministic for a seed."""
    snippets = load_snippets(samples)
    genres = list(snippets)
    rng = random.Random(seed)
    corpus = []
    for i in range(n):
        genre = genres[i % len(genres)]
        corpus.append((compose_song(snippets[genre], target_words(rng), rng), genre))
    rng.shuffle(corpus)
    return corpus


def write_csv(path: str | Path, n: int, seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "lyrics", "genre"])
        for i, (lyrics, genre) in enumerate(make_corpus(n, seed), start=1):
            writer.writerow([i, lyrics, genre])
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("n", type=int)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_csv(args.out, args.n, args.seed)
    words = sorted(len(lyrics.split()) for lyrics, _ in make_corpus(args.n, args.seed))
    print(f"{args.out}: {args.n} songs, words median {words[len(words) // 2]}, "
          f"p90 {words[int(len(words) * 0.9)]}, max {words[-1]}")


if __name__ == "__main__":
    main()
