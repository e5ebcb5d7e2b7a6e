"""Texts in a lyrics column that are not lyrics: catalog placeholders ("Instrumental", "Lyrics
not available", "Paroles non disponibles", ...), a bare link, text without letters, a stub
of a word or two. The classifier would label them with confidence (`predict "oh"`: pop 0.999)
and they would land in the genre counts as songs; instead they are rejected with a reason.

The placeholder phrases live in data/not-lyrics.txt (one per line, in the 16 languages of the
default model); a text is a placeholder when, lower-cased and without brackets, punctuation
and extra spaces, it is one of them. Only whole texts match: a song that sings "instrumental"
is a song.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from importlib import resources

MIN_LETTERS = 5  # "oh", "yeah", "N/A": fewer letters than this is a stub, not a lyric
PLACEHOLDERS_FILE = "not-lyrics.txt"
_LINK = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    """Lower case, compatibility forms folded, every run of non-word characters one space."""
    return " ".join(_NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split())


@functools.cache
def placeholders() -> frozenset[str]:
    text = resources.files("lyrics_classifier").joinpath("data", PLACEHOLDERS_FILE).read_text(encoding="utf-8")
    phrases = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return frozenset(normalise(p) for p in phrases if p)


def letters(text: str) -> int:
    return sum(1 for char in text if unicodedata.category(char).startswith("L"))


def reason(text: str) -> str | None:
    """Why `text` is not lyrics (the row's `error`), or None if it may be."""
    stripped = text.strip()
    if _LINK.fullmatch(stripped):
        return "not lyrics: a link"
    if normalise(stripped) in placeholders():
        return "not lyrics: a placeholder"
    count = letters(stripped)
    if count == 0:
        return "not lyrics: no letters"
    if count < MIN_LETTERS:
        return f"not lyrics: fewer than {MIN_LETTERS} letters"
    return None
