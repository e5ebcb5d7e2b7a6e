"""Placeholders, links and stubs in a lyrics column are rejected with a reason, never
labelled; no real lyric is (every sample and few-shot example is checked)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lyrics_classifier import notlyrics

REPO = Path(__file__).resolve().parents[1]
LYRICS_FILES = [REPO / "samples" / "lyrics.csv", REPO / "samples" / "multilingual.csv",
                REPO / "lambdas" / "lyrics_classifier" / "data" / "genre_examples.csv"]


@pytest.mark.parametrize("text, why", [
    ("Instrumental", "a placeholder"),
    ("[Instrumental]", "a placeholder"),
    ("  (INSTRUMENTAL VERSION)  ", "a placeholder"),
    ("Lyrics not available.", "a placeholder"),
    ("Paroles non disponibles", "a placeholder"),
    ("Letra no disponible", "a placeholder"),
    ("Songtext nicht verfügbar", "a placeholder"),
    ("Текст недоступен", "a placeholder"),
    ("暂无歌词", "a placeholder"),
    ("歌詞なし", "a placeholder"),
    ("가사 없음", "a placeholder"),
    ("ไม่มีเนื้อเพลง", "a placeholder"),
    ("https://genius.com/artist-song-lyrics", "a link"),
    ("www.example.com/lyrics", "a link"),
    ("12345 -- !!!", "no letters"),
    ("oh", "fewer than 5 letters"),
    ("N/A", "a placeholder"),
    ("yeah", "fewer than 5 letters"),
])
def test_what_is_not_lyrics_says_why(text, why):
    assert notlyrics.reason(text) == f"not lyrics: {why}"


@pytest.mark.parametrize("text", [
    "whiskey on the porch",
    "Instrumental break, then you call my name",  # a lyric that says the word is a lyric
    "la la la la",
    "baila conmigo",
    "See https://example.com for the story\nbut hear me sing tonight",
    "君の名を呼ぶ",
])
def test_short_or_odd_lyrics_are_still_lyrics(text):
    assert notlyrics.reason(text) is None


def test_the_list_covers_every_language_of_the_default_model():
    source = (REPO / "lambdas" / "lyrics_classifier" / "data" / notlyrics.PLACEHOLDERS_FILE).read_text(encoding="utf-8")
    for language in ("English", "Spanish", "Portuguese", "French", "German", "Italian", "Dutch", "Polish",
                     "Russian", "Turkish", "Arabic", "Chinese", "Japanese", "Korean", "Thai"):
        assert f"# {language}" in source
    assert len(notlyrics.placeholders()) > 80


def test_no_sample_lyric_is_rejected():
    checked = 0
    for path in LYRICS_FILES:
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                text = row.get("lyrics") or row.get("text")
                assert notlyrics.reason(text) is None, (path.name, text[:80])
                checked += 1
    assert checked >= 1700
