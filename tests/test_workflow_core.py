"""The workflow steps over moto S3, with the real classifier: Split -> Classify -> Merge."""

from __future__ import annotations

import csv
import io
import json

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from lyrics_classifier.csvfile import InputError, iter_records
from lyrics_classifier.runtime import Classifier
from lyrics_classifier.workflow import (
    IncompleteRunError,
    classify_chunk,
    merge_results,
    part_stats_key,
    result_key,
    split_input,
)

IN, OUT = "in-bucket", "out-bucket"


@pytest.fixture(scope="module")
def classifier(default_model_dir):
    return Classifier.load(default_model_dir, threads=1)


@pytest.fixture()
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=IN)
        client.create_bucket(Bucket=OUT)
        yield client


def run_steps(s3, classifier, data: bytes, key="songs.csv", chunk_rows=2, run_id="run-1", text_column=None):
    """Every step, in the order the state machine runs them; returns the output CSV text."""
    s3.put_object(Bucket=IN, Key=key, Body=data)
    split = split_input(
        s3, input_bucket=IN, input_key=key, work_bucket=OUT, run_id=run_id,
        chunk_rows=chunk_rows, text_column=text_column,
    )
    items = json.loads(s3.get_object(Bucket=OUT, Key=split["manifest_key"])["Body"].read())
    for item in items:
        classify_chunk(
            s3, classifier, bucket=OUT, run_id=run_id, index=item["index"],
            text_column_index=split["text_column_index"],
        )
    merged = merge_results(s3, bucket=OUT, run_id=run_id)
    return s3.get_object(Bucket=OUT, Key=merged["result_key"])["Body"].read().decode("utf-8"), merged


def test_output_appends_columns_to_each_original_record(s3, classifier):
    data = (
        'id,lyrics,notes\r\n'
        '7,"Thunder on the highway, amps up loud\nwe ride all night",\"a, b\"\r\n'
        '8,   ,"said ""no"""\r\n'
        '7,"Dancing in the club, oh oh, my heart beats for you",x\r\n'
    ).encode()
    text, merged = run_steps(s3, classifier, data, chunk_rows=2)
    rows = list(iter_records(io.StringIO(text, newline="")))
    labels = list(classifier.labels)
    assert rows[0].fields == ["id", "lyrics", "notes", "label", "score", *[f"prob_{l}" for l in labels], "error"]
    originals = list(iter_records(io.StringIO(data.decode(), newline="")))[1:]
    assert len(rows) - 1 == len(originals) == merged["rows_in"] == 3
    for original, row in zip(originals, rows[1:]):
        assert row.raw.startswith(original.raw + ",")  # the original text, byte for byte
    classified = rows[1]
    assert classified.fields[3] in labels and classified.fields[-1] == ""
    probabilities = [float(p) for p in classified.fields[5:-1]]
    assert abs(sum(probabilities) - 1) < 0.01 and float(classified.fields[4]) == max(probabilities)
    rejected = rows[2]
    assert rejected.fields[3:-1] == [""] * (2 + len(labels)) and rejected.fields[-1] == "empty lyrics"
    assert merged["rows_classified"] == 2 and merged["rows_rejected"] == 1


def test_summary_accounts_for_every_row_and_names_the_model(s3, classifier, default_model_dir):
    import hashlib

    data = "lyrics\n" + "".join(f"song number {i} about the open road\n" for i in range(5)) + '""\n'
    _, merged = run_steps(s3, classifier, data.encode(), chunk_rows=4)
    summary = json.loads(s3.get_object(Bucket=OUT, Key=merged["summary_key"])["Body"].read())
    assert summary["rows_in"] == 6 == summary["rows_classified"] + summary["rows_rejected"]
    assert summary["rejected_by_reason"] == {"empty lyrics": 1}
    assert sum(summary["label_counts"].values()) == 5
    sha = hashlib.sha256((default_model_dir / "model.onnx").read_bytes()).hexdigest()
    assert summary["model"]["sha256"] == sha
    assert summary["execution_id"] == "run-1" and summary["chunks"] == 2


def test_header_only_file_gives_the_same_columns_and_no_rows(s3, classifier):
    text, merged = run_steps(s3, classifier, b"id,lyrics\n")
    assert merged["rows_in"] == 0
    assert text == "id,lyrics,label,score," + ",".join(f"prob_{l}" for l in classifier.labels) + ",error\n"


def test_existing_label_column_gets_prefixed_columns(s3, classifier):
    text, _ = run_steps(s3, classifier, b"lyrics,label\nsome words here,mine\n")
    header = next(csv.reader(io.StringIO(text)))
    assert header[:4] == ["lyrics", "label", "predicted_label", "predicted_score"]


def test_merge_refuses_when_a_chunk_was_not_classified(s3, classifier):
    s3.put_object(Bucket=IN, Key="songs.csv", Body=b"lyrics\na\nb\nc\n")
    split = split_input(s3, input_bucket=IN, input_key="songs.csv", work_bucket=OUT, run_id="r", chunk_rows=1)
    for index in (0, 2):  # chunk 1 never ran
        classify_chunk(s3, classifier, bucket=OUT, run_id="r", index=index, text_column_index=0)
    with pytest.raises(IncompleteRunError, match=r"1 of 3 chunks were not classified: chunk 1 \(rows from line 3\)"):
        merge_results(s3, bucket=OUT, run_id="r")
    assert "Contents" not in s3.list_objects_v2(Bucket=OUT, Prefix="results/")
    assert split["chunks"] == 3


def test_retried_classify_rewrites_the_same_part(s3, classifier):
    s3.put_object(Bucket=IN, Key="songs.csv", Body=b"lyrics\nhello there\n")
    split_input(s3, input_bucket=IN, input_key="songs.csv", work_bucket=OUT, run_id="r")
    for _ in range(2):
        classify_chunk(s3, classifier, bucket=OUT, run_id="r", index=0, text_column_index=0)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=OUT, Prefix="runs/r/parts/")["Contents"]]
    assert keys == ["runs/r/parts/000000.csv", part_stats_key("r", 0)]


def test_url_encoded_event_key_finds_the_object(s3):
    s3.put_object(Bucket=IN, Key="my songs ñ.csv", Body=b"lyrics\nla la\n")
    split = split_input(s3, input_bucket=IN, input_key="my+songs+%C3%B1.csv", work_bucket=OUT, run_id="r")
    assert split["input_key"] == "my songs ñ.csv"
    assert result_key(split["input_key"]) == "results/my songs ñ.classified.csv"


def test_non_utf8_bytes_after_the_sniffed_head_switch_to_windows_1252(s3, classifier):
    body = ("lyrics\n" + "plain ascii line\n" * 8000 + "canción de amor\n").encode("cp1252")
    assert len(body) > 64 * 1024  # the é-byte is past the sniffed head
    text, merged = run_steps(s3, classifier, body, chunk_rows=5000)
    assert merged["rows_in"] == 8001 and text.splitlines()[-1].startswith("canción de amor,")


def test_split_reports_a_missing_object_readably(s3):
    with pytest.raises(InputError, match=r"s3://in-bucket/gone.csv does not exist"):
        split_input(s3, input_bucket=IN, input_key="gone.csv", work_bucket=OUT, run_id="r")


# --------------------------------------------------------------------------- property

cell = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
    max_size=30,
)


@st.composite
def csv_files(draw):
    width = draw(st.integers(1, 4))
    lyrics_at = draw(st.integers(0, width - 1))
    header = [f"c{i}" for i in range(width)]
    header[lyrics_at] = "lyrics"
    rows = draw(st.lists(st.lists(cell, min_size=width, max_size=width), max_size=12))
    # A row of one empty field would be written as a blank line, which is not a record.
    rows = [row for row in rows if row != [""]]
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    if quoting == csv.QUOTE_MINIMAL and terminator == "\n":
        # The csv writer quotes only the characters of its own line terminator, so with "\n"
        # it would write a bare "\r" unquoted: an invalid CSV that no reader round-trips.
        rows = [[value.replace("\r", "") for value in row] for row in rows]
        rows = [row for row in rows if row != [""]]
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=quoting, lineterminator=terminator)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue(), rows, lyrics_at


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=csv_files(), chunk_rows=st.integers(1, 5), bom=st.booleans())
def test_every_row_once_in_order_with_original_columns(classifier, generated, chunk_rows, bom):
    text, rows, lyrics_at = generated
    data = ("\ufeff" if bom else "") + text
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=IN)
        s3.create_bucket(Bucket=OUT)
        output, merged = run_steps(s3, classifier, data.encode("utf-8"), chunk_rows=chunk_rows)
    inputs = list(iter_records(io.StringIO(text, newline="")))[1:]
    outputs = list(iter_records(io.StringIO(output.lstrip("\ufeff"), newline="")))[1:]
    assert len(outputs) == len(rows) == merged["rows_in"]
    width = len(rows[0]) if rows else 0
    for row, original, out in zip(rows, inputs, outputs):
        assert out.fields[:width] == row
        assert out.raw.startswith(original.raw + ",")
        label, error = out.fields[width], out.fields[-1]
        if not row[lyrics_at].strip():
            assert error == "empty lyrics"
        # A row is either classified or rejected with a reason (e.g. no recognisable tokens).
        assert (label in classifier.labels) != bool(error)
    assert merged["rows_classified"] + merged["rows_rejected"] == len(rows)


def test_invalid_utf16_is_refused_readably(s3):
    import codecs

    body = codecs.BOM_UTF16_LE + "id,lyrics\n1,x\n".encode("utf-16-le") + b"\x00\xd8"  # a lone surrogate
    s3.put_object(Bucket=IN, Key="songs.csv", Body=body)
    with pytest.raises(InputError, match=r"the file is not valid utf-16 text"):
        split_input(s3, input_bucket=IN, input_key="songs.csv", work_bucket=OUT, run_id="r")
