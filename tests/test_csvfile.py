"""Reading lyrics CSVs: encodings, records with their original text, the lyrics column."""

from __future__ import annotations

import codecs
import io

import pytest

from lyrics_classifier.csvfile import (
    InputError,
    detect_encoding,
    fallback_encoding,
    find_text_column,
    format_row,
    iter_records,
)


def records(text: str) -> list[tuple[list[str], str, int]]:
    return [(r.fields, r.raw, r.line) for r in iter_records(io.StringIO(text, newline=""))]


def test_records_keep_their_original_text_and_start_line():
    text = 'id,lyrics\r\n1,"two\nlines, ""quoted"""\r\n\r\n2,plain'
    assert records(text) == [
        (["id", "lyrics"], "id,lyrics", 1),
        (["1", 'two\nlines, "quoted"'], '1,"two\nlines, ""quoted"""', 2),
        (["2", "plain"], "2,plain", 5),  # the blank line 4 is skipped, not a row
    ]


def test_unbalanced_quote_names_the_line_where_the_field_opens():
    with pytest.raises(InputError, match=r"line 3: a quoted field is never closed"):
        records('id,lyrics\n1,ok\n2,"never closed\n3,more\n')


def test_text_after_a_closing_quote_is_refused_with_the_line():
    with pytest.raises(InputError, match=r"line 2: malformed CSV"):
        records('id,lyrics\n1,"quoted"tail\n')


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"id,lyrics\n1,hello\n", "utf-8"),
        (codecs.BOM_UTF8 + b"id,lyrics\n", "utf-8-sig"),
        ("id,lyrics\n".encode("utf-16"), "utf-16"),
        ("id,lyrics\n".encode("utf-16-le"), "utf-16-le"),
        ("id,lyrics\n".encode("utf-16-be"), "utf-16-be"),
        ("id,lyrics\n1,café ñ\n".encode("cp1252"), "cp1252"),
        ("id,lyrics\n1,é\n".encode("utf-8")[:-2], "utf-8"),  # a character cut by the sample end
    ],
)
def test_detect_encoding(head, expected):
    assert detect_encoding(head) == expected


def test_empty_and_binary_files_are_refused_with_a_reason():
    with pytest.raises(InputError, match="the file is empty"):
        detect_encoding(b"")
    with pytest.raises(InputError, match="looks binary"):
        detect_encoding(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")


def test_fallback_encoding_is_latin1_for_bytes_cp1252_leaves_undefined():
    assert fallback_encoding("señor".encode("cp1252")) == "cp1252"
    assert fallback_encoding(b"\x81\x8d") == "latin-1"


@pytest.mark.parametrize(
    ("header", "requested", "index"),
    [
        (["id", "Lyrics", "text"], None, 1),
        (["id", "TEXT"], None, 1),
        (["lyric", "text"], None, 0),
        (["id", "song body"], "song body", 1),
        (["id", "Song Body"], "song body", 1),
    ],
)
def test_find_text_column(header, requested, index):
    assert find_text_column(header, requested) == index


def test_missing_text_column_lists_what_was_found_and_looked_for():
    with pytest.raises(InputError) as excinfo:
        find_text_column(["id", "title"], None)
    message = str(excinfo.value)
    assert "'lyrics', 'lyric', 'text'" in message and "'id', 'title'" in message
    with pytest.raises(InputError, match=r"text column 'words' is not in the header; the columns are: 'id'"):
        find_text_column(["id"], "words")


def test_format_row_quotes_only_where_needed():
    assert format_row(["rock", "0.5", "a,b", 'say "hi"', "two\nlines", ""]) == (
        'rock,0.5,"a,b","say ""hi""","two\nlines",'
    )


def test_the_delimiter_comes_from_the_header_or_an_excel_sep_line():
    from lyrics_classifier.csvfile import detect_delimiter, excel_separator, parse_delimiter

    assert detect_delimiter("id;title;lyrics;genre") == ";"  # Excel in most of Europe
    assert detect_delimiter("id\ttitle\tlyrics") == "\t"
    assert detect_delimiter("id|lyrics") == "|"
    assert detect_delimiter('id;"title, with a comma";lyrics') == ";"  # quoted commas do not count
    assert detect_delimiter("id,lyrics") == detect_delimiter("lyrics") == ","
    assert excel_separator("sep=;\r\n") == ";" and excel_separator("\ufeffSEP=|\n") == "|"
    assert excel_separator("sep;lyrics\n") is None
    assert [parse_delimiter(n) for n in ("tab", "\\t", "\t", "semicolon", ";", "PIPE", "comma")] == \
        ["\t", "\t", "\t", ";", ";", "|", ","]
    with pytest.raises(ValueError, match="use one of comma"):
        parse_delimiter("colon")


def test_records_and_rows_with_another_delimiter():
    text = 'id;lyrics\n1;"a; b"\n'
    parsed = list(iter_records(io.StringIO(text, newline=""), delimiter=";"))
    assert [r.fields for r in parsed] == [["id", "lyrics"], ["1", "a; b"]]
    assert format_row(["x", "a; b", "c,d"], ";") == 'x;"a; b";c,d'
