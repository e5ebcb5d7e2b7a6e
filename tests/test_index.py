"""Split's byte-level pass: ranges tile the file, each starts at a record boundary, and
classifying range by range gives the same rows as classifying the whole file."""

from __future__ import annotations

import codecs
import csv
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lyrics_classifier.csvfile import iter_records
from lyrics_classifier.index import RangeIndexer, header_end, index_ranges, line_break
from lyrics_classifier.runtime import Classifier
from lyrics_classifier.workflow import classify_bytes


@pytest.fixture(scope="module")
def classifier(default_model_dir):
    return Classifier.load(default_model_dir, threads=1)


def blocks_of(data: bytes, size: int):
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def test_quoted_line_breaks_commas_and_doubled_quotes_are_not_boundaries():
    data = b'id,lyrics\n1,"one\ntwo, ""three""\nfour"\n2,plain\n3,"x\r\ny"\n'
    ends = [r.end for r in index_ranges(blocks_of(data, 3), range_bytes=1)]
    record_ends = [data.index(b"\n") + 1, data.index(b'four"\n') + 6, data.index(b"plain\n") + 6, len(data)]
    assert ends == record_ends


def test_ranges_are_at_least_range_bytes_and_carry_their_first_line():
    data = b"lyrics\n" + b"".join(b"line %d\n" % i for i in range(100))
    ranges = index_ranges(blocks_of(data, 64), range_bytes=50)
    assert all(r.end - r.start >= 50 for r in ranges[:-1])
    for r in ranges:
        assert data[: r.start].count(b"\n") + 1 == r.first_line
        assert r.start == 0 or data[r.start - 1 : r.start] == b"\n"


def test_a_small_file_is_one_range_and_an_empty_one_too():
    assert [(r.start, r.end) for r in index_ranges([b"lyrics\nla\n"], range_bytes=1 << 20)] == [(0, 10)]
    assert [(r.start, r.end) for r in index_ranges([b""], range_bytes=10)] == [(0, 0)]


def test_lone_cr_files_break_records_on_cr():
    data = b"lyrics\r\"a\rb\"\rc\r"
    assert line_break(data) == b"\r"
    assert [r.end for r in index_ranges([data], 1, b"\r")] == [7, 13, 15]


def test_an_unclosed_quote_leaves_the_indexer_inside_quotes():
    indexer = RangeIndexer(4)
    indexer.feed(b'lyrics\n"never closed\nat all\n')
    assert indexer.in_quotes
    assert header_end(b'"a\nb",c\nrest') == 8 and header_end(b'"open') is None


# --------------------------------------------------------------------------- property

cell = st.text(alphabet=st.sampled_from(list('ab ,"\n\r\tñ€😀')), max_size=12)


@st.composite
def csv_bytes(draw):
    """A CSV of mixed quoting, CRLF or LF, maybe a BOM, maybe a stray Latin-1 byte."""
    width = draw(st.integers(1, 3))
    rows = draw(st.lists(st.lists(cell, min_size=width, max_size=width), max_size=25))
    rows = [row for row in rows if row != [""]]  # written as a blank line: not a record
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=quoting, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(["lyrics", *[f"c{i}" for i in range(1, width)]])
    writer.writerows([[v.replace("\r", "") for v in row] for row in rows])
    data = buffer.getvalue().encode("utf-8")
    if draw(st.booleans()) and rows:  # a stray invalid byte inside some record
        at = draw(st.integers(len(data) // 2, len(data) - 1))
        at = data.rfind(b"a", 0, at)
        if at > data.index(b"\n"):
            data = data[:at] + "á".encode("latin-1") + data[at + 1 :]
    if draw(st.booleans()):
        data = codecs.BOM_UTF8 + data
    return data, width


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=csv_bytes(), range_bytes=st.integers(1, 120), block=st.integers(1, 97))
def test_ranges_tile_the_file_and_classify_like_the_whole(classifier, generated, range_bytes, block):
    data, width = generated
    ranges = index_ranges(blocks_of(data, block), range_bytes)
    # The ranges tile the file exactly.
    assert ranges[0].start == 0 and ranges[-1].end == len(data)
    assert all(a.end == b.start for a, b in zip(ranges, ranges[1:]))
    # Each range starts at a record boundary: parsing range by range gives the file's records.
    text = lambda b: b.decode("utf-8", "surrogateescape")  # noqa: E731
    whole = [r.fields for r in iter_records(io.StringIO(text(data), newline=""))]
    pieces = [r.fields for x in ranges for r in iter_records(io.StringIO(text(data[x.start : x.end]), newline=""))]
    pieces[0][0] = pieces[0][0].lstrip("\ufeff")
    whole[0][0] = whole[0][0].lstrip("\ufeff")
    assert pieces == whole
    # And classifying range by range gives the same rows as the whole file at once: the
    # same original bytes, errors and warnings. (Scores are compared apart: int8 dynamic
    # quantisation scales activations per batch, so a row's neighbours nudge its scores.)
    options = {"encoding": "utf-8", "columns": width, "text_column_index": 0}
    at_once, _ = classify_bytes(data, classifier, with_header=True, **options)
    by_range = b"".join(
        classify_bytes(data[x.start : x.end], classifier, with_header=x.start == 0, first_line=x.first_line, **options)[0]
        for x in ranges
    )
    labels = len(classifier.labels)

    def without_scores(output: bytes) -> list[list[str]]:
        rows = iter_records(io.StringIO(output.decode("utf-8", "surrogateescape"), newline=""))
        return [r.fields[:width] + r.fields[width + 2 + labels :] for r in rows]

    assert without_scores(by_range) == without_scores(at_once)
    assert by_range.count(b"\n") == at_once.count(b"\n")


def test_json_lines_are_cut_at_every_line_break_whatever_the_quotes():
    """JSON strings escape their quotes (\\"), which do not pair up as CSV's do: in line mode the
    indexer follows no quote state and cuts after the first line break past the range size."""
    lines = [b'{"id": %d, "lyrics": "say \\"hey\\" \\\\" }\n' % i for i in range(2000)]
    data = b"".join(lines)
    indexer = RangeIndexer(4096, quoting=False)
    for i in range(0, len(data), 1000):
        indexer.feed(data[i : i + 1000])
    ranges = indexer.finish()
    assert len(ranges) > 5 and not indexer.in_quotes
    assert ranges[0].start == 0 and ranges[-1].end == len(data)
    for previous, current in zip(ranges, ranges[1:]):
        assert previous.end == current.start and data[current.start - 1 : current.start] == b"\n"
        assert current.first_line == data[: current.start].count(b"\n") + 1
