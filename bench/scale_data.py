"""Generated lyrics-dump CSVs for the scale benchmark, streamed to disk or held as blocks.

A row looks like a public lyrics dump's (id, title, artist, year, views, features, lyrics,
language): the lyrics are a whole song from bench/corpus.py (verses and choruses from the
sample snippets: quoted, multi-line, with commas), ~1.6 KB a row on average; `features` is a
JSON-ish list with doubled quotes, and some lines quote speech ("..." becomes ""..."").

`quote_dense=True` is the index pass's worst realistic case: every other word of every
lyric line is in quotes (doubled in the file), so more than one byte in four is a `"`.

Rows are drawn from a pool of distinct rendered rows (ids are unique and increasing), so a
multi-gigabyte file is written at disk speed, block by block, never held in memory.
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path
from typing import Iterator

from corpus import make_corpus

HEADER = ["id", "title", "artist", "year", "views", "features", "lyrics", "language"]
ARTISTS = ["The Midnight Owls", "Rosa Vega", "Lil Compass", "Hank Delaney", "Neon Harbor", "DJ Ocho",
           "Mae & the Mercury", "Los Tres Caminos", "Southbound Saints", "K. Royale"]
POOL = 4096
WRITE_BYTES = 8 * 1024 * 1024


def _quote_dense(lyrics: str, rng: random.Random) -> str:
    lines = []
    for line in lyrics.splitlines():
        words = line.split()
        lines.append(" ".join(f'"{w}"' if i % 2 == 0 else w for i, w in enumerate(words)))
    return "\n".join(lines)


def _speech(lyrics: str, rng: random.Random) -> str:
    lines = lyrics.splitlines()
    for i, line in enumerate(lines):
        if line and rng.random() < 0.08:
            lines[i] = f'She said "{line}"'
    return "\n".join(lines)


def row_pool(seed: int = 0, quote_dense: bool = False, size: int = POOL) -> list[bytes]:
    """`size` distinct rendered rows, each without its leading id field (",title,...\\n")."""
    rng = random.Random(seed)
    rows = []
    for i, (lyrics, genre) in enumerate(make_corpus(size, seed=seed)):
        lyrics = _quote_dense(lyrics, rng) if quote_dense else _speech(lyrics, rng)
        features = ",".join(f'"{a}"' for a in rng.sample(ARTISTS, rng.randint(0, 2)))
        first = lyrics.split("\n", 1)[0][:40].strip('"')
        fields = [first.title(), rng.choice(ARTISTS), rng.randint(1960, 2024), rng.randint(0, 9_000_000),
                  "{" + features + "}", lyrics, "es" if genre == "latin" else "en"]
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow(fields)
        rows.append(("," + out.getvalue()).encode("utf-8"))
    return rows


def header_bytes() -> bytes:
    return (",".join(HEADER) + "\n").encode("utf-8")


class Generated:
    """The file's bytes in ~8 MiB pieces (each ends at a row end) until >= target_bytes;
    after the iteration, `rows` holds how many data rows it had."""

    def __init__(self, target_bytes: int, seed: int = 0, quote_dense: bool = False):
        self.target_bytes, self.seed, self.quote_dense = target_bytes, seed, quote_dense
        self.rows = 0

    def __iter__(self) -> Iterator[bytes]:
        pool = row_pool(self.seed, self.quote_dense)
        rng = random.Random(self.seed + 1)
        pending, size, written = [header_bytes()], len(header_bytes()), 0
        while written + size < self.target_bytes:
            self.rows += 1
            row = b"%d%b" % (self.rows, pool[rng.randrange(len(pool))])
            pending.append(row)
            size += len(row)
            if size >= WRITE_BYTES:
                yield b"".join(pending)
                written += size
                pending, size = [], 0
        if pending:
            yield b"".join(pending)


def write_csv(path: Path, target_bytes: int, seed: int = 0) -> tuple[int, int]:
    """Stream a generated file to `path`; returns (rows, bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    generated = Generated(target_bytes, seed)
    with open(path, "wb") as handle:
        for piece in generated:
            handle.write(piece)
            size += len(piece)
    return generated.rows, size


def blocks(target_bytes: int, block: int, seed: int = 0, quote_dense: bool = False) -> tuple[list[bytes], int]:
    """An in-memory file of >= target_bytes cut into blocks of `block` bytes (cuts fall
    anywhere, as Split's ranged GETs do); returns (blocks, rows)."""
    generated = Generated(target_bytes, seed, quote_dense)
    data = b"".join(generated)
    return [data[i : i + block] for i in range(0, len(data), block)], generated.rows
