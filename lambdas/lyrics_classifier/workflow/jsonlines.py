"""JSON Lines (`.jsonl`, `.ndjson`): one JSON object per line. The lyrics field is found by the
same rules as the CSV column; every other field passes through as it was written: each
output line is the input line with the added fields inserted before its closing brace."""

from __future__ import annotations

import codecs
import json
from typing import Any

from ..csvfile import InputError, find_text_column
from .classify import ParsedRange, _best_text, classify_parsed, output_columns, row_codec

JSON_SUFFIXES = (".jsonl", ".ndjson")
NUMERIC = ("score", "prob_")  # added fields written as JSON numbers (the others as strings or null)


def is_json_lines(key: str) -> bool:
    return key.lower().removesuffix(".gz").endswith(JSON_SUFFIXES)


def first_object_fields(text: str, text_field: str | None) -> tuple[list[str], str]:
    """(the first object's field names, the lyrics field) of a JSON Lines file's beginning."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            fields = list(_object(line, number))
            return fields, fields[find_text_column(fields, text_field)]
    raise InputError("the file holds no JSON object (it is empty or only blank lines)")


def _object(line: str, number: int) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise InputError(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno}); "
                         "JSON Lines holds one JSON object per line") from None
    if not isinstance(value, dict):
        raise InputError(f"line {number}: a JSON {type(value).__name__}, not an object; "
                         "JSON Lines holds one JSON object per line")
    return value


def _lyrics(value: dict[str, Any], field: str) -> Any:
    """The object's lyrics: its `field`, else the same name in another case (as CSV headers)."""
    if field in value:
        return value[field]
    wanted = field.strip().lower()
    return next((v for k, v in value.items() if k.strip().lower() == wanted), None)


def classify_json_lines(data: bytes, classifier: Any, *, encoding: str, fields: list[str], text_field: str,
                        first_line: int = 1) -> tuple[bytes, dict[str, Any]]:
    """One range of a JSON Lines file: its output lines (each input line, its fields untouched,
    with the added fields before the closing brace) and counts."""
    names = output_columns(fields, list(classifier.labels), classifier.multi_label)
    parsed = ParsedRange(columns_added=names if first_line == 1 else None)
    codec = row_codec(encoding)
    if first_line == 1 and data.startswith(codecs.BOM_UTF8):  # kept, as a CSV's is
        parsed.head, data = codecs.BOM_UTF8, data[len(codecs.BOM_UTF8):]
    lines = data.decode(codec, "surrogateescape").split("\n")
    for number, line in enumerate(lines, first_line):
        line = line.rstrip("\r")
        if not line.strip():
            if number - first_line < len(lines) - 1:  # not the empty tail after the last break
                parsed.blank_lines.append(number)
            continue
        lyrics = _lyrics(_object(line, number), text_field)
        best, warning = _best_text(lyrics, codec) if isinstance(lyrics, str) else (lyrics, None)
        parsed.rows.append(line)
        parsed.texts.append(best)
        parsed.warnings.append(warning)
        parsed.line_numbers.append(number)

    def render(raw: str, added: list[tuple[str, str]]) -> str:
        body = raw.rstrip()[:-1].rstrip()  # the object without its closing brace
        pairs = ", ".join(f"{json.dumps(name)}: {json.dumps(_typed(base, value), ensure_ascii=False)}"
                          for name, (base, value) in zip(names, added, strict=True))
        return f"{body}{'' if body.endswith('{') else ', '}{pairs}}}"

    return classify_parsed(parsed, classifier, render)


def _typed(name: str, value: str) -> Any:
    """An added column's value as JSON: numbers for score and probabilities, null when empty."""
    if value == "":
        return None
    return float(value) if name.startswith(NUMERIC) else value
