"""Reading lyrics CSVs record by record while keeping each record's original text.

The output must carry every input column unchanged, so rows are never re-serialised: each
record is kept as the exact text it had in the input, and the classification columns are
appended to it. Python's csv reader pulls one physical line at a time and stops at the end
of a record, so the lines it consumed for a record are that record's original text.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from .errors import InputError

# Lyrics are long, and one field may legitimately hold a whole song; an unbalanced quote
# is caught by the end-of-data check, not by this limit.
MAX_FIELD_BYTES = 16 * 1024 * 1024
csv.field_size_limit(MAX_FIELD_BYTES)

TEXT_COLUMN_CANDIDATES = ("lyrics", "lyric", "text")
SNIFF_BYTES = 64 * 1024
# The field delimiters catalogs are exported with: comma; semicolon (Excel where the decimal
# mark is a comma, most of Europe); tab (TSV, Excel's "Unicode text"); pipe.
DELIMITERS = (",", ";", "\t", "|")
# Their names, for the command line and the per-upload S3 metadata (`delimiter`).
DELIMITER_NAMES = {"comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|"}


def parse_delimiter(name: str) -> str:
    """`;`, `tab`, `\\t`, ... -> the delimiter character; ValueError naming the choices."""
    if name in DELIMITERS:
        return name
    value = DELIMITER_NAMES.get(name.strip().lower())
    if value is None:
        raise ValueError(f"delimiter {name!r}: use one of comma (,), semicolon (;), tab, pipe (|)")
    return value


def excel_separator(first_line: str) -> str | None:
    """The delimiter an Excel `sep=;` first line names (a line before the header), or None."""
    line = first_line.lstrip("\ufeff").rstrip("\r\n")
    if len(line) == 5 and line[:4].lower() == "sep=" and line[4] in ",;\t|":
        return line[4]
    return None


def detect_delimiter(header_line: str) -> str:
    """The delimiter of a header row: the candidate found most often outside quotes (a comma
    when none is, for a file of one column)."""
    outside, quoted = [], False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted:
            outside.append(char)
    counts = {d: outside.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])  # ties: the first, comma
    return best if counts[best] else ","


@dataclass(frozen=True)
class Record:
    """One CSV record: its fields and its original text (line terminator excluded)."""

    fields: list[str]
    raw: str
    line: int  # 1-based physical line where the record starts


def detect_encoding(head: bytes) -> str:
    """Choose a codec from the first bytes of a file, or refuse it with a readable reason."""
    if not head:
        raise InputError("the file is empty: expected a CSV with a header row")
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in head:
        # UTF-16 without a BOM puts a NUL beside every ASCII character.
        even, odd = head[0::2], head[1::2]
        if odd and odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
            return "utf-16-le"
        if even and even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
            return "utf-16-be"
        raise InputError(
            "the file looks binary (it contains NUL bytes), not a CSV text file; "
            "export it as CSV (UTF-8) and upload it again"
        )
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the sample boundary is fine; anything else is not UTF-8.
        if exc.start < len(head) - 3:
            return fallback_encoding(head)
    return "utf-8"


def fallback_encoding(data: bytes) -> str:
    """The codec for text that is not UTF-8: Windows-1252 (a superset of Latin-1 in practice)
    when it decodes, else Latin-1, which decodes any byte."""
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return "latin-1"
    return "cp1252"


def iter_records(text: io.TextIOBase | Iterator[str], first_line: int = 1,
                 on_blank: Callable[[int], None] | None = None, delimiter: str = ",") -> Iterator[Record]:
    """Yield records with their original text. Blank lines are not records: they are skipped,
    and `on_blank` hears the line number of each (so that they can be counted)."""
    consumed: list[str] = []
    next_start = first_line

    def lines() -> Iterator[str]:
        for physical in text:
            consumed.append(physical)
            yield physical

    reader = csv.reader(lines(), strict=True, delimiter=delimiter)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(_describe_csv_error(exc, next_start)) from None
        raw = "".join(consumed)
        consumed.clear()
        line, next_start = next_start, next_start + _count_lines(raw)
        if "\x00" in raw:
            raise InputError(
                f"line {line}: the file contains NUL bytes, so it is binary or in an "
                "encoding that was not recognised; save it as UTF-8 CSV"
            )
        if not fields:  # a blank line
            if on_blank is not None:
                on_blank(line)
            continue
        yield Record(fields=fields, raw=strip_terminator(raw), line=line)


def _count_lines(raw: str) -> int:
    # Lines end in \n, \r\n or a lone \r; count each ending once.
    return raw.count("\n") + raw.count("\r") - raw.count("\r\n")


def _describe_csv_error(exc: csv.Error, line: int) -> str:
    message = str(exc)
    if "field larger than field limit" in message:
        return (
            f"line {line}: a field holds more than {MAX_FIELD_BYTES // (1024 * 1024)} MiB of text, the most one "
            "field may hold (or a quoted field starting there is never closed); shorten that field"
        )
    if "unexpected end of data" in message:
        return (
            f"line {line}: a quoted field is never closed (unbalanced double quote); "
            "every field that starts with \" must end with \", and quotes inside it are written \"\""
        )
    return f"line {line}: malformed CSV ({message}); quote fields that contain commas, quotes or newlines"


def strip_terminator(raw: str) -> str:
    if raw.endswith("\r\n"):
        return raw[:-2]
    if raw.endswith(("\n", "\r")):
        return raw[:-1]
    return raw


def find_text_column(header: Sequence[str], requested: str | None) -> int:
    """Index of the lyrics column: the requested name, else the first of lyrics/lyric/text."""
    names = [name.strip() for name in header]
    lowered = [name.lower() for name in names]
    if requested:
        if requested in names:
            return names.index(requested)
        if requested.strip().lower() in lowered:
            return lowered.index(requested.strip().lower())
        raise InputError(
            f"text column {requested!r} is not in the header; the columns are: {_quote_all(names)}"
        )
    for candidate in TEXT_COLUMN_CANDIDATES:
        if candidate in lowered:
            return lowered.index(candidate)
    raise InputError(
        f"no lyrics column found: looked for {_quote_all(TEXT_COLUMN_CANDIDATES)} (any case) "
        f"but the columns are: {_quote_all(names)}; name the column with the text column setting"
    )


def _quote_all(names: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in names)


def format_row(values: Sequence[str], delimiter: str = ",") -> str:
    """One CSV row (no terminator), quoted only where needed, as the csv module does."""
    buffer = io.StringIO()
    # The writer quotes fields holding characters of its line terminator, so it must be
    # "\r\n" (not "") for fields with line breaks to be quoted; the terminator is cut off.
    csv.writer(buffer, lineterminator="\r\n", delimiter=delimiter).writerow(values)
    return buffer.getvalue()[:-2]
