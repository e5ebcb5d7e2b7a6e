"""The language of a lyric: an ISO 639-1 code, from py3langid.

py3langid (BSD-3-Clause; a numpy port of langid.py, a naive Bayes model over byte n-grams,
4.6 MB, CPU only, no network) knows 97 languages with two-letter codes; its few ISO 639-2/3
labels are left out so that the column holds ISO 639-1 codes only. Its model loads once per
process (~0.8 s: it is stored xz-compressed), when a classifier loads (`load`), so that the
cost falls in the cold start rather than on the first row.

Only the first ~1,000 characters are read: a verse says which language a song is in, and
the cost stays flat for long lyrics (~0.5 ms per lyric here).
"""

from __future__ import annotations

import threading
import unicodedata
from typing import Any

SAMPLE_CHARS = 1000
UNKNOWN = ""  # no letters to go by (digits, punctuation, emoji only)

_lock = threading.Lock()
_identifier: Any = None


def load() -> Any:
    global _identifier
    if _identifier is not None:  # detect() calls this per row: no lock once loaded
        return _identifier
    with _lock:
        if _identifier is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            identifier = LanguageIdentifier.from_model_file(MODEL_FILE)
            identifier.set_languages(sorted({code for code in identifier.labels if len(code) == 2}))
            _identifier = identifier
    return _identifier


def _has_letters(text: str) -> bool:
    return any(unicodedata.category(ch).startswith("L") for ch in text)


def detect(text: str) -> str:
    """The most likely ISO 639-1 code of `text`, or "" when it has no letters."""
    sample = text[:SAMPLE_CHARS]
    if not _has_letters(sample):
        return UNKNOWN
    code, _ = load().classify(sample)
    return code
