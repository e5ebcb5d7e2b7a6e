"""The workflow steps over moto S3, with the real classifier: Split -> Classify -> Merge."""

from __future__ import annotations

import codecs
import csv
import io
import json
import re

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from lyrics_classifier.contract import MIN_RANGE_BYTES
from lyrics_classifier.csvfile import iter_records
from lyrics_classifier.errors import InputError
from lyrics_classifier.runtime import Classifier
from lyrics_classifier.workflow import (
    IncompleteRunError,
    classify_range,
    clean_up_ended_execution,
    failure_key,
    merge_results,
    result_key,
    split_input,
    summary_key,
    write_failure_report,
)

IN, OUT = "in-bucket", "out-bucket"


@pytest.fixture(scope="module")
def classifier(default_model_dir):
    return Classifier.load(default_model_dir, threads=1)


@pytest.fixture()
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in (IN, OUT):
            client.create_bucket(Bucket=bucket)
            client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        yield client


def upload(s3, data: bytes, key="songs.csv") -> str:
    return s3.put_object(Bucket=IN, Key=key, Body=data).get("VersionId")  # None if unversioned: ETag-pinned


def split(s3, key="songs.csv", run_id="run-1", version_id=None, **options):
    options.setdefault("range_bytes", MIN_RANGE_BYTES)  # the smallest ranges: several with fewer rows
    return split_input(
        s3, input_bucket=IN, input_key=key, work_bucket=OUT, run_id=run_id, version_id=version_id, **options
    )


def manifest(s3, result) -> list[dict]:
    return json.loads(s3.get_object(Bucket=OUT, Key=result["manifest_key"])["Body"].read())


def classify_all(s3, classifier, result, skip=()):
    for item in manifest(s3, result):
        if item["index"] not in skip:
            classify_range(s3, classifier, job=result["job"], byte_range=item)


def run_steps(s3, classifier, data: bytes, key="songs.csv", run_id="run-1", text_column=None):
    """Every step, in the order the state machine runs them; returns the output bytes."""
    version = upload(s3, data, key)
    result = split(s3, key, run_id, version, text_column=text_column)
    classify_all(s3, classifier, result)
    merged = merge_results(s3, bucket=OUT, run_id=run_id)
    return s3.get_object(Bucket=OUT, Key=merged["result_key"])["Body"].read(), merged


def records(data: bytes, encoding="utf-8"):
    return list(iter_records(io.StringIO(data.decode(encoding, "surrogateescape").lstrip("\ufeff"), newline="")))


def columns(classifier) -> list[str]:
    assert classifier.labels == ("rock", "pop", "hip hop", "country", "latin")
    probabilities = ["prob_rock", "prob_pop", "prob_hip_hop", "prob_country", "prob_latin"]  # SQL-safe names
    return ["label", "score", *probabilities, "language", "error", "warning"]


def test_probability_columns_are_safe_names_without_clashes():
    from lyrics_classifier.workflow import probability_columns

    assert probability_columns(["Hip Hop", "hip-hop", "R&B", "¿?", "k-pop", "Música"]) == [
        "prob_hip_hop", "prob_hip_hop_2", "prob_r_b", "prob_label", "prob_k_pop", "prob_musica"]


def test_output_appends_columns_to_each_original_record(s3, classifier):
    data = (
        'id,lyrics,notes\r\n'
        '7,"Thunder on the highway, amps up loud\nwe ride all night",\"a, b\"\r\n'
        '8,   ,"said ""no"""\r\n'
        '7,"Dancing in the club, oh oh, my heart beats for you",x\r\n'
    ).encode()
    output, merged = run_steps(s3, classifier, data)
    rows = records(output)
    labels = list(classifier.labels)
    assert rows[0].fields == ["id", "lyrics", "notes", *columns(classifier)]
    originals = records(data)[1:]
    assert len(rows) - 1 == len(originals) == merged["rows_in"] == 3
    for original, row in zip(originals, rows[1:]):
        assert row.raw.startswith(original.raw + ",")  # the original text, byte for byte
    classified, rejected = (dict(zip(rows[0].fields, row.fields, strict=True)) for row in rows[1:3])
    assert classified["label"] in labels and classified["error"] == classified["warning"] == ""
    assert classified["language"] == "en"
    probabilities = [float(classified[name]) for name in columns(classifier)[2:-3]]
    assert abs(sum(probabilities) - 1) < 0.01 and float(classified["score"]) == max(probabilities)
    added = columns(classifier)
    assert [rejected[name] for name in added if name != "error"] == [""] * (len(added) - 1)
    assert rejected["error"] == "empty lyrics"
    summary = json.loads(s3.get_object(Bucket=OUT, Key=merged["summary_key"])["Body"].read())
    assert summary["language_counts"] == {"en": 2}
    assert merged["rows_classified"] == 2 and merged["rows_rejected"] == 1 and merged["status"] == "complete"


def test_summary_accounts_for_every_row_and_names_the_model(s3, classifier, default_model_dir):
    import hashlib

    data = "lyrics\n" + "".join(f"song number {i} about the open road\n" for i in range(5)) + '""\n'
    _, merged = run_steps(s3, classifier, data.encode())
    summary = json.loads(s3.get_object(Bucket=OUT, Key=merged["summary_key"])["Body"].read())
    assert summary["rows_in"] == 6 == summary["rows_classified"] + summary["rows_rejected"]
    assert summary["rejected_by_reason"] == {"empty lyrics": 1}
    assert sum(summary["label_counts"].values()) == 5
    sha = hashlib.sha256((default_model_dir / "model.onnx").read_bytes()).hexdigest()
    assert summary["model"]["sha256"] == sha
    assert summary["execution_id"] == "run-1" and summary["ranges"] == 1
    assert summary["input"]["version_id"] and summary["input"]["encoding"] == "utf-8"


def test_header_only_file_gives_the_same_columns_and_no_rows(s3, classifier):
    output, merged = run_steps(s3, classifier, b"id,lyrics\n")
    assert merged["rows_in"] == 0
    assert output.decode() == "id,lyrics," + ",".join(columns(classifier)) + "\n"


def test_existing_label_column_gets_prefixed_columns(s3, classifier):
    output, _ = run_steps(s3, classifier, b"lyrics,label\nsome words here,mine\n")
    header = next(csv.reader(io.StringIO(output.decode())))
    assert header[:4] == ["lyrics", "label", "predicted_label", "predicted_score"]


def test_a_file_of_several_ranges_comes_back_whole_in_order(s3, classifier, three_ranges):
    output, merged = run_steps(s3, classifier, three_ranges)
    items = manifest(s3, {"manifest_key": "runs/run-1/manifest.json"})
    assert len(items) == 3 and items[0]["start"] == 0 and items[-1]["end"] == len(three_ranges)
    assert all(a["end"] == b["start"] for a, b in zip(items, items[1:]))
    originals, rows = records(three_ranges), records(output)
    assert len(rows) == len(originals) == merged["rows_in"] + 1 == 2901
    assert merged["rows_rejected"] == 2  # rows 999 and 1999 have empty lyrics
    for original, row in zip(originals[1:], rows[1:]):
        assert row.raw.startswith(original.raw + ",")
    # Physical line numbers of each range's first record, for error messages.
    for item in items:
        assert three_ranges[: item["start"]].count(b"\n") + 1 == item["first_line"]


def test_merge_completes_only_when_every_part_is_there(s3, classifier, three_ranges):
    result = split(s3, version_id=upload(s3, three_ranges))
    classify_all(s3, classifier, result, skip={1})
    with pytest.raises(IncompleteRunError, match=r"1 of 3 ranges were not classified: range 1 \(rows from line \d+\)"):
        merge_results(s3, bucket=OUT, run_id="run-1")
    assert "Contents" not in s3.list_objects_v2(Bucket=OUT, Prefix="results/")
    # The failure report aborts the upload: nothing partial can ever appear.
    write_failure_report(
        s3, bucket=OUT, source=result["job"]["source"], run_id="run-1", error="IncompleteRunError",
        cause="", job=result["job"], claim=result["claim_key"],
    )
    assert s3.list_multipart_uploads(Bucket=OUT).get("Uploads", []) == []
    assert s3.head_object(Bucket=OUT, Key=failure_key("songs.csv"))
    # The claim was released: a new execution of the same version runs.
    assert split(s3, run_id="run-2", version_id=result["job"]["source"]["version_id"])["duplicate_of"] is None


def test_a_retried_classify_replaces_its_own_part(s3, classifier):
    result = split(s3, version_id=upload(s3, b"lyrics\nhello there\n"))
    item = manifest(s3, result)[0]
    for _ in range(2):
        classify_range(s3, classifier, job=result["job"], byte_range=item)
    job = result["job"]
    parts = s3.list_parts(Bucket=OUT, Key=job["result_key"], UploadId=job["upload_id"])["Parts"]
    assert [p["PartNumber"] for p in parts] == [1]
    assert merge_results(s3, bucket=OUT, run_id="run-1")["rows_in"] == 1


def test_a_duplicate_event_for_the_same_version_starts_nothing(s3):
    version = upload(s3, b"lyrics\nla la\n")
    first = split(s3, run_id="run-1", version_id=version)
    retried = split(s3, run_id="run-1", version_id=version)  # Split's own retry proceeds
    duplicate = split(s3, run_id="run-2", version_id=version)
    assert first["duplicate_of"] is None and retried["duplicate_of"] is None
    assert duplicate["duplicate_of"] == "run-1" and duplicate["job"] is None
    assert "Contents" not in s3.list_objects_v2(Bucket=OUT, Prefix="runs/run-2/")


def test_an_older_version_finishing_last_never_overwrites_the_newer_result(s3, classifier):
    old = split(s3, run_id="old", version_id=upload(s3, b"lyrics,v\nfirst words,1\n"))
    new = split(s3, run_id="new", version_id=upload(s3, b"lyrics,v\nsecond words,2\n"))
    classify_all(s3, classifier, new)
    classify_all(s3, classifier, old)
    assert merge_results(s3, bucket=OUT, run_id="new")["status"] == "complete"
    assert merge_results(s3, bucket=OUT, run_id="old")["status"] == "superseded"
    output = s3.get_object(Bucket=OUT, Key=result_key("songs.csv"))["Body"].read().decode()
    assert "second words" in output and "first words" not in output
    assert s3.list_multipart_uploads(Bucket=OUT).get("Uploads", []) == []  # the old upload was aborted


def test_success_and_failure_reports_never_sit_side_by_side(s3, classifier):
    run_steps(s3, classifier, b"lyrics\nfirst words\n", run_id="good")
    # A newer version fails: its report replaces the older success ...
    version = upload(s3, b"lyrics\nsecond words\n")
    failed = split(s3, run_id="bad", version_id=version)
    write_failure_report(
        s3, bucket=OUT, source=failed["job"]["source"], run_id="bad", error="Boom", cause="it broke",
        job=failed["job"], claim=failed["claim_key"],
    )
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=OUT, Prefix="results/").get("Contents", [])}
    assert keys == set() and s3.head_object(Bucket=OUT, Key=failure_key("songs.csv"))
    # ... and a later success removes the failure report.
    run_steps(s3, classifier, b"lyrics\nthird words\n", run_id="fixed")
    assert "Contents" not in s3.list_objects_v2(Bucket=OUT, Prefix="failed/")
    assert s3.head_object(Bucket=OUT, Key=summary_key("songs.csv"))


def test_a_superseded_failure_writes_no_report_beside_the_newer_result(s3, classifier):
    stale = split(s3, run_id="stale", version_id=upload(s3, b"lyrics\nfirst words\n"))
    run_steps(s3, classifier, b"lyrics\nsecond words\n", run_id="fresh")
    report = write_failure_report(
        s3, bucket=OUT, source=stale["job"]["source"], run_id="stale", error="Boom", cause="",
        job=stale["job"], claim=stale["claim_key"],
    )
    assert report["report_key"] == "runs/stale/error.json"
    assert "Contents" not in s3.list_objects_v2(Bucket=OUT, Prefix="failed/")
    assert s3.head_object(Bucket=OUT, Key=result_key("songs.csv"))


def test_url_encoded_event_key_finds_the_object(s3):
    s3.put_object(Bucket=IN, Key="my songs ñ.csv", Body=b"lyrics\nla la\n")
    result = split(s3, key="my+songs+%C3%B1.csv")
    assert result["input_key"] == "my songs ñ.csv"
    assert result_key(result["input_key"]) == "results/my songs ñ.classified.csv"


def test_a_stray_invalid_byte_garbles_nothing_and_is_marked(s3, classifier):
    good = "lyrics,n\n" + "".join(f"canción de amor número {i},{i}\n" for i in range(3000))
    body = good.encode("utf-8") + "la niña bonita,x\n".encode("cp1252") + "última canción,y\n".encode()
    assert len(body) > 64 * 1024  # the stray byte is past the sniffed head
    output, merged = run_steps(s3, classifier, body)
    assert output.startswith(good.split("\n")[0].encode() + b",")
    # Every row keeps its original bytes: the valid UTF-8 ones are not re-decoded.
    out_lines = output.split(b"\n")
    for original, line in zip(body.split(b"\n")[1:-1], out_lines[1:]):
        assert line.startswith(original + b",")
    marked = records(output)
    assert marked[-2].fields[-1] == "text decoded as cp1252: not valid utf-8"
    assert marked[-1].fields[-1] == "" and marked[1].fields[-1] == ""
    summary = json.loads(s3.get_object(Bucket=OUT, Key=merged["summary_key"])["Body"].read())
    assert summary["rows_with_warnings"] == 1 and summary["rows_in"] == 3002


def test_a_windows_1252_file_is_transcoded_to_utf8(s3, classifier):
    body = "lyrics\ncorazón partío\nla canción\n".encode("cp1252")
    output, merged = run_steps(s3, classifier, body)
    rows = records(output)
    assert rows[1].fields[0] == "corazón partío" and rows[1].fields[-1] == ""
    summary = json.loads(s3.get_object(Bucket=OUT, Key=merged["summary_key"])["Body"].read())
    assert summary["input"]["encoding"] == "cp1252"


@pytest.mark.parametrize("encoding,bom", [("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", b""), ("utf-16-le", b"")])
def test_utf16_is_transcoded_once_and_indexed(s3, classifier, encoding, bom):
    text = 'id,lyrics\r\n1,"amor, mi amor\r\ncanción"\r\n2,ñandú\r\n'
    output, merged = run_steps(s3, classifier, bom + text.encode(encoding))
    rows = records(output)
    assert [r.fields[:2] for r in rows[1:]] == [["1", "amor, mi amor\r\ncanción"], ["2", "ñandú"]]
    assert merged["rows_in"] == 2
    assert s3.head_object(Bucket=OUT, Key="runs/run-1/input.csv")  # the transcoded copy


def test_split_reports_a_missing_object_readably(s3):
    with pytest.raises(InputError, match=r"s3://in-bucket/gone.csv does not exist"):
        split(s3, key="gone.csv")


def test_a_field_count_mismatch_names_its_physical_line(s3, classifier, three_ranges):
    broken = three_ranges + b'9999,"a\nb",x,extra\r\n'
    result = split(s3, version_id=upload(s3, broken))
    last = manifest(s3, result)[-1]
    line = broken.count(b"\n") - 1  # the record starts on the line before the last line break
    with pytest.raises(InputError, match=rf"line {line}: 4 fields, but the header has 3 columns"):
        classify_range(s3, classifier, job=result["job"], byte_range=last)


def test_an_unclosed_quote_is_refused_by_split(s3):
    with pytest.raises(InputError, match=r"never closed"):
        split(s3, version_id=upload(s3, b'lyrics\n"open quote\nmore\n'))


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


def encoded(text: str, encoding: str, bom: bool) -> bytes:
    """The file's bytes as a user's tool would save them; UTF-16 always with its BOM (how
    Excel and Notepad write it), Windows-1252 only where that is not also valid UTF-8."""
    from hypothesis import assume

    if encoding == "utf-16":
        return text.encode("utf-16")  # BOM + native order
    if encoding == "cp1252":
        try:
            data = text.encode("cp1252")
        except UnicodeEncodeError:
            assume(False)
        try:  # bytes that are also valid UTF-8 are UTF-8: they would be read as such
            data.decode("utf-8")
            assume(text.isascii())
        except UnicodeDecodeError:
            pass
        return data
    return (codecs.BOM_UTF8 if bom else b"") + text.encode("utf-8")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.filter_too_much])
@given(generated=csv_files(), bom=st.booleans(), encoding=st.sampled_from(["utf-8", "utf-16", "cp1252"]))
def test_every_row_once_in_order_with_original_columns(classifier, generated, bom, encoding):
    """Rows in = rows out, every row's text kept, whatever the file's encoding (UTF-16 and
    Windows-1252 come out as UTF-8)."""
    text, rows, lyrics_at = generated
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=IN)
        s3.create_bucket(Bucket=OUT)
        output, merged = run_steps(s3, classifier, encoded(text, encoding, bom))
    inputs = list(iter_records(io.StringIO(text, newline="")))[1:]
    outputs = records(output)[1:]
    assert len(outputs) == len(rows) == merged["rows_in"]
    width = len(rows[0]) if rows else 0
    for row, original, out in zip(rows, inputs, outputs):
        assert out.fields[:width] == row
        assert out.raw.startswith(original.raw + ",")
        label, error = out.fields[width], out.fields[-2]
        if not row[lyrics_at].strip():
            assert error == "empty lyrics"
        # A row is either classified or rejected with a reason (e.g. no recognisable tokens).
        assert (label in classifier.labels) != bool(error)
    assert merged["rows_classified"] + merged["rows_rejected"] == len(rows)


def test_invalid_utf16_is_refused_readably(s3):
    body = codecs.BOM_UTF16_LE + "id,lyrics\n1,x\n".encode("utf-16-le") + b"\x00\xd8"  # a lone surrogate
    with pytest.raises(InputError, match=r"the file is not valid utf-16 text"):
        split(s3, version_id=upload(s3, body))
    assert "Contents" not in s3.list_objects_v2(Bucket=OUT, Prefix="runs/claims/")  # released: nothing ran


# ----------------------------------------------------------------------------- at least once
# Step Functions may run any step again after it succeeded (a lost response) or after a
# timeout that struck once its work was done. Each step must reach the same end state.


def listed(s3, prefix: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=OUT, Prefix=prefix).get("Contents", [])}


def test_split_run_again_answers_as_the_first_and_starts_no_second_upload(s3):
    version = upload(s3, b"lyrics\nla la\nhey\n")
    first = split(s3, version_id=version)
    again = split(s3, version_id=version)
    assert again == first  # the same job: the same upload id, ranges and keys
    assert len(s3.list_multipart_uploads(Bucket=OUT)["Uploads"]) == 1


def test_merge_run_again_after_it_completed_answers_the_same_and_keeps_the_result(s3, classifier):
    data, first = run_steps(s3, classifier, b"lyrics\nwhiskey on the porch\nbaila conmigo\n")
    summary = s3.get_object(Bucket=OUT, Key=first["summary_key"])["Body"].read()
    again = merge_results(s3, bucket=OUT, run_id="run-1")
    assert (first.pop("completed_now"), again.pop("completed_now")) == (True, False)
    assert again == first
    assert s3.get_object(Bucket=OUT, Key=first["result_key"])["Body"].read() == data
    assert s3.get_object(Bucket=OUT, Key=first["summary_key"])["Body"].read() == summary  # not rewritten
    assert "Contents" not in s3.list_objects_v2(Bucket=OUT, Prefix="failed/")


def test_merge_that_timed_out_after_completing_the_upload_writes_the_summary_when_run_again(s3, classifier):
    result = split(s3, version_id=upload(s3, b"lyrics\nwhiskey on the porch\n"))
    classify_all(s3, classifier, result)
    job = result["job"]
    stats = json.loads(s3.get_object(Bucket=OUT, Key="runs/run-1/parts/00000.json")["Body"].read())
    # What the first Merge got done before its timeout: the upload is complete, nothing else.
    s3.complete_multipart_upload(Bucket=OUT, Key=job["result_key"], UploadId=job["upload_id"], MultipartUpload={
        "Parts": [{"ETag": stats["etag"], "PartNumber": 1, "ChecksumCRC32": stats["checksum_crc32"]}]})
    merged = merge_results(s3, bucket=OUT, run_id="run-1", job=job)
    assert merged["status"] == "complete" and merged["rows_in"] == 1 and not merged["completed_now"]
    assert json.loads(s3.get_object(Bucket=OUT, Key=merged["summary_key"])["Body"].read())["rows_in"] == 1


def test_a_failure_report_after_this_runs_merge_completed_keeps_the_result(s3, classifier):
    data, merged = run_steps(s3, classifier, b"lyrics\nwhiskey on the porch\n")
    job = json.loads(s3.get_object(Bucket=OUT, Key="runs/run-1/run.json")["Body"].read())["job"]
    for _ in range(2):  # ReportFailure, run twice, after a Merge whose answer never arrived
        report = write_failure_report(s3, bucket=OUT, source=job["source"], run_id="run-1",
                                      error="Lambda.Unknown", cause="", job=job)
    assert s3.get_object(Bucket=OUT, Key=merged["result_key"])["Body"].read() == data
    assert s3.head_object(Bucket=OUT, Key=merged["summary_key"])
    written = json.loads(s3.get_object(Bucket=OUT, Key=report["report_key"])["Body"].read())
    assert written["result_kept"] == merged["result_key"] and "is kept" in written["reason"]


def test_cleanup_after_a_timeout_reports_aborts_and_releases_once_whatever_the_repeats(s3, classifier):
    version = upload(s3, b"lyrics\nla la\n")
    result = split(s3, version_id=version)
    classify_all(s3, classifier, result)  # then the execution's time ran out: no Merge, no Catch
    source = {"bucket": IN, "key": "songs.csv", "version_id": version, "etag": None}
    outcomes = [clean_up_ended_execution(s3, bucket=OUT, run_id="run-1", status="TIMED_OUT", source=source)
                for _ in range(2)]
    assert [o["cleaned_up"] for o in outcomes] == [True, False]
    report = json.loads(s3.get_object(Bucket=OUT, Key=failure_key("songs.csv"))["Body"].read())
    assert report["error"] == "States.Timeout" and "time limit" in report["reason"]
    assert s3.list_multipart_uploads(Bucket=OUT).get("Uploads", []) == []
    assert listed(s3, "runs/claims/") == set() and listed(s3, "results/") == set()
    assert split(s3, run_id="run-2", version_id=version)["duplicate_of"] is None  # the version may run again


def test_cleanup_after_report_failure_ran_leaves_its_report_alone(s3):
    version = upload(s3, b"lyrics\nla la\n")
    result = split(s3, version_id=version)
    write_failure_report(s3, bucket=OUT, source=result["job"]["source"], run_id="run-1", error="InputError",
                         cause="line 9: bad", job=result["job"], claim=result["claim_key"])
    before = s3.get_object(Bucket=OUT, Key=failure_key("songs.csv"))["Body"].read()
    outcome = clean_up_ended_execution(s3, bucket=OUT, run_id="run-1", status="FAILED",
                                       source={"bucket": IN, "key": "songs.csv", "version_id": version},
                                       error="InputError", cause="line 9: bad")
    assert outcome["cleaned_up"] is False and outcome["reason"] == "line 9: bad"
    assert s3.get_object(Bucket=OUT, Key=failure_key("songs.csv"))["Body"].read() == before


def test_multipart_uploads_name_one_checksum_algorithm_from_create_to_complete(s3, classifier):
    """botocore >= 1.36 puts a CRC32 on every UploadPart by default; S3 wants the parts'
    checksums to match what CreateMultipartUpload declared, and Complete to name them."""
    calls: list[tuple[str, dict]] = []
    s3.meta.events.register("provide-client-params.s3.*",
                            lambda params, model, **_: calls.append((model.name, dict(params))))
    utf16 = "lyrics\nwhiskey on the porch\n".encode("utf-16")  # Split's transcoded copy: a second upload
    run_steps(s3, classifier, utf16)
    creates = [p for name, p in calls if name == "CreateMultipartUpload"]
    parts = [p for name, p in calls if name == "UploadPart"]
    completes = [p for name, p in calls if name == "CompleteMultipartUpload"]
    assert len(creates) == 2 and len(completes) == 2 and len(parts) == 2
    assert all(p["ChecksumAlgorithm"] == "CRC32" for p in creates + parts)
    for complete in completes:
        assert all(part["ChecksumCRC32"] for part in complete["MultipartUpload"]["Parts"])


def test_a_failure_before_split_answered_reports_under_the_decoded_key(s3):
    """Before Split answers, the state holds only the event, whose key S3 URL-encodes."""
    version = upload(s3, b"id,title\n1,x\n", key="mis canciones ñ.csv")
    encoded = {"bucket": IN, "key": "mis+canciones+%C3%B1.csv", "version_id": version}
    for ending in (lambda: write_failure_report(s3, bucket=OUT, source=encoded, run_id="run-1", error="InputError",
                                                cause="no lyrics column"),
                   lambda: clean_up_ended_execution(s3, bucket=OUT, run_id="run-2", status="TIMED_OUT", source=encoded)):
        assert ending()["report_key"] == "failed/mis canciones ñ.error.json"


def test_a_complete_whose_answer_was_lost_is_a_success(s3, classifier):
    """botocore retries a CompleteMultipartUpload whose response was lost; S3 had completed
    it, so the retry gets NoSuchUpload. The result is there: Merge succeeds."""
    from botocore.exceptions import ClientError

    def lose_the_answer(**_):
        raise ClientError({"Error": {"Code": "NoSuchUpload", "Message": "The specified upload does not exist."}},
                          "CompleteMultipartUpload")

    result = split(s3, version_id=upload(s3, b"lyrics\nwhiskey on the porch\n"))
    classify_all(s3, classifier, result)
    s3.meta.events.register("after-call.s3.CompleteMultipartUpload", lose_the_answer)
    merged = merge_results(s3, bucket=OUT, run_id="run-1")
    assert merged["status"] == "complete" and merged["completed_now"] and merged["rows_in"] == 1
    assert b"whiskey on the porch" in s3.get_object(Bucket=OUT, Key=merged["result_key"])["Body"].read()


def test_placeholders_are_rejected_and_counted_never_labelled(s3, classifier):
    data = ("id,lyrics\n1,Instrumental\n2,Paroles non disponibles\n3,https://example.com/song\n4,oh\n"
            "5,whiskey on the porch and a fiddle in the barn\n").encode()
    output, merged = run_steps(s3, classifier, data)
    rows = records(output)[1:]
    assert len(rows) == 5 and merged["rows_rejected"] == 4 and merged["rows_classified"] == 1
    assert [row.fields[-2] for row in rows] == [
        "not lyrics: a placeholder", "not lyrics: a placeholder", "not lyrics: a link",
        "not lyrics: fewer than 5 letters", ""]
    assert all(row.fields[2] == "" for row in rows[:4])  # no label for a placeholder
    summary = json.loads(s3.get_object(Bucket=OUT, Key=merged["summary_key"])["Body"].read())
    assert summary["rejected_by_reason"] == {"not lyrics: a placeholder": 2, "not lyrics: a link": 1,
                                             "not lyrics: fewer than 5 letters": 1}


@pytest.mark.parametrize("where", [0, 1, 250, 599])
def test_one_stray_latin1_byte_anywhere_changes_no_other_row(s3, classifier, where):
    """A UTF-8 file with one Windows-1252 byte: wherever it sits (the first row included,
    inside the 64 KiB the encoding is first guessed from), every other row keeps its bytes and
    its text, and only that row is decoded as cp1252, with a warning."""
    lines = [f"{i},\"Corazón {i}, canción de la noche\nbailamos en la calle\"".encode() for i in range(600)]
    lines[where] = lines[where].replace("Corazón".encode(), b"Coraz\xf3n")  # ó in Windows-1252
    data = b"id,lyrics\n" + b"\n".join(lines) + b"\n"
    output, merged = run_steps(s3, classifier, data)
    rows = records(output, "utf-8")[1:]
    assert len(rows) == 600
    summary = json.loads(s3.get_object(Bucket=OUT, Key=merged["summary_key"])["Body"].read())
    assert summary["input"]["encoding"] == "utf-8" and summary["rows_with_warnings"] == 1
    for i, row in enumerate(rows):
        assert row.raw.encode("utf-8", "surrogateescape").startswith(lines[i] + b",")  # the row's own bytes
        assert (row.fields[-1] != "") == (i == where)  # the warning: that row only
        assert row.fields[-2] == ""


@pytest.mark.parametrize("key, data, delimiter", [
    ("excel.csv", "\ufeffsep=;\r\nid;title;lyrics\r\n1;\"Hola; adiós\";whiskey on the porch tonight\r\n", ";"),
    ("europe.csv", "id;title;lyrics\n1;\"a, b\";baila conmigo toda la noche\n", ";"),
    ("songs.tsv", "id\ttitle\tlyrics\n1\ta, b\tbaila conmigo toda la noche\n", "\t"),
    ("piped.csv", "id|lyrics\n1|whiskey on the porch, tonight\n", "|"),
])
def test_any_delimiter_is_read_and_kept_in_the_output(s3, classifier, key, data, delimiter):
    output, merged = run_steps(s3, classifier, data.encode("utf-8"), key=key)
    original = data.encode("utf-8").splitlines(keepends=True)
    produced = output.splitlines(keepends=True)
    if original[0].lstrip(codecs.BOM_UTF8).startswith(b"sep="):
        assert produced[0] == original[0]  # Excel's sep= line (and the BOM) kept for Excel
        original, produced = original[1:], produced[1:]
    for before, after in zip(original, produced, strict=True):  # every row's bytes, then the added columns
        assert after.startswith(before.rstrip(b"\r\n") + delimiter.encode())
        assert len(after.decode().split(delimiter)) == len(before.decode().split(delimiter)) + 10 \
            or '"' in before.decode()
    assert merged["rows_classified"] == 1
    assert merged["result_key"] == ("results/songs.classified.tsv" if key.endswith(".tsv")
                                    else f"results/{key[:-4]}.classified.csv")


def test_an_upload_names_its_delimiter_in_its_metadata(s3, classifier):
    # a header that reads as comma-separated just as well: the upload says which it is
    s3.put_object(Bucket=IN, Key="odd.csv", Body=b"id,no;lyrics\n1,2;whiskey on the porch\n",
                  Metadata={"delimiter": "semicolon"})  # aws s3 cp --metadata delimiter=semicolon
    result = split(s3, key="odd.csv")
    assert result["job"]["delimiter"] == ";" and result["job"]["columns"] == 2
    s3.put_object(Bucket=IN, Key="bad.csv", Body=b"id,lyrics\n1,x\n", Metadata={"delimiter": "colon"})
    with pytest.raises(InputError, match="metadata delimiter 'colon': use one of comma"):
        split(s3, key="bad.csv", run_id="run-2")


def test_gzip_input_is_decompressed_once_and_classified_like_the_plain_file(s3, classifier, three_ranges):
    import gzip

    plain, plain_merged = run_steps(s3, classifier, three_ranges, key="plain.csv", run_id="plain")
    # two members, as `cat a.gz b.gz` makes them
    packed = gzip.compress(three_ranges[:1000]) + gzip.compress(three_ranges[1000:])
    output, merged = run_steps(s3, classifier, packed, key="packed.csv.gz", run_id="packed")
    assert merged["result_key"] == "results/packed.classified.csv"
    assert output == plain and merged["rows_in"] == plain_merged["rows_in"] == 2900
    summary = json.loads(s3.get_object(Bucket=OUT, Key=merged["summary_key"])["Body"].read())
    assert summary["input"]["compression"] == "gzip" and summary["ranges"] == 3
    utf16 = gzip.compress("lyrics\nwhiskey on the porch\n".encode("utf-16"))  # gzip of UTF-16: both undone
    assert b"whiskey on the porch" in run_steps(s3, classifier, utf16, key="wide.csv.gz", run_id="wide")[0]


@pytest.mark.parametrize("data, reason", [
    (b"\x1f\x8b" + b"not really gzip at all", "not a valid gzip file"),
    (None, "cut short (truncated)"),
])
def test_a_broken_gzip_file_fails_with_a_reason(s3, data, reason):
    import gzip

    data = data or gzip.compress(b"lyrics\n" + b"la la la love\n" * 5000)[:-50]
    with pytest.raises(InputError, match=re.escape(reason)):
        split(s3, version_id=upload(s3, data, key="broken.csv.gz"), key="broken.csv.gz")
    assert s3.list_multipart_uploads(Bucket=OUT).get("Uploads", []) == []  # the copy was aborted


def test_json_lines_in_and_out_every_field_kept_and_every_row_once(s3, classifier):
    notes = "ñ \" , " * 500  # bulky: the file spans two ranges
    lines = [json.dumps({"id": i, "Lyrics": f"whiskey on the porch, \"night\" {i}\nand the river",
                         "tags": [i, {"a": None}], "notes": notes}, ensure_ascii=False).encode() for i in range(3000)]
    lines[7] = b'{"id": 7}'  # no lyrics: rejected, kept
    data = b"\n".join(lines[:10]) + b"\n\n" + b"\n".join(lines[10:]) + b"\n"  # a blank line is not a row
    version = upload(s3, data, key="songs.jsonl")
    result = split(s3, key="songs.jsonl", version_id=version, range_bytes=6 * 2**20)
    assert result["job"]["format"] == "jsonl" and result["job"]["text_field"] == "Lyrics"
    assert len(manifest(s3, result)) == 2
    classify_all(s3, classifier, result)
    merged = merge_results(s3, bucket=OUT, run_id="run-1")
    assert merged["result_key"] == "results/songs.classified.jsonl"
    assert merged["rows_in"] == 3000 and merged["rows_rejected"] == 1
    output = s3.get_object(Bucket=OUT, Key=merged["result_key"])["Body"].read().splitlines()
    assert len(output) == 3000
    for original, line in zip(lines, output, strict=True):
        assert line.startswith(original[:-1])  # the object's own bytes, up to its closing brace
        row = json.loads(line)
        assert row["id"] == json.loads(original)["id"] and ("tags" in row or row["id"] == 7)
        assert (row["label"] in classifier.labels and isinstance(row["score"], float)) or row["error"] == "lyrics missing"


@pytest.mark.parametrize("line, reason", [
    (b"[1, 2]", "line 3: a JSON list, not an object"),
    (b'{"lyrics": "unclosed', "line 3: not valid JSON"),
])
def test_a_json_lines_row_that_is_not_an_object_fails_with_its_line(s3, classifier, line, reason):
    data = b'{"lyrics": "la la la love"}\n{"lyrics": "baila conmigo"}\n' + line + b"\n"
    result = split(s3, key="bad.jsonl", version_id=upload(s3, data, key="bad.jsonl"))
    with pytest.raises(InputError, match=re.escape(reason)):
        classify_all(s3, classifier, result)
