"""Labels at run time: label sets, the zero-shot head over the model's encoder, multi-label,
and the per-upload label set of the workflow."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from lyrics_classifier import labelset
from lyrics_classifier.errors import InputError
from lyrics_classifier.labelset import LabelSetError
from lyrics_classifier.runtime import Classifier

REPO = Path(__file__).resolve().parents[1]
MOODS = {"name": "moods", "labels": {
    "sad": ["a sad song about loss and tears", "I cry alone, my heart is broken"],
    "happy": ["a happy song full of sunshine", "we laugh and dance, life is good"],
    "angry": "an angry song, full of rage and shouting",
}}


def sample_lyrics(count: int = 40) -> list[dict[str, str]]:
    with open(REPO / "samples" / "lyrics.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))[:count]


@pytest.fixture(scope="module")
def model(default_model_dir) -> Classifier:
    return Classifier.load(default_model_dir, threads=1)


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lyrics_classifier", *args], capture_output=True, text=True,
                          input=stdin, cwd=REPO)


# ----------------------------------------------------------------------------- label sets


def test_inline_names_become_descriptions_through_the_template():
    names = labelset.inline("happy, sad,angry")
    assert names.labels == ("happy", "sad", "angry")
    assert names.descriptions["sad"] == ("this is a sad song",)
    assert names.descriptions["angry"] == ("this is an angry song",)  # the article follows the word
    custom = labelset.inline("love,war", template="lyrics about {}")
    assert custom.descriptions["war"] == ("lyrics about war",)


def test_a_file_with_descriptions_keeps_them_and_hashes_its_bytes(tmp_path):
    path = tmp_path / "moods.json"
    path.write_text(json.dumps(MOODS), encoding="utf-8")
    moods = labelset.from_argument(str(path))
    assert moods.labels == ("sad", "happy", "angry")
    assert moods.descriptions["angry"] == ("an angry song, full of rage and shouting",)
    assert moods.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert moods.name == "moods"


@pytest.mark.parametrize("document, reason", [
    (b"{not json", "not valid JSON"),
    (b'["only"]', "at least two labels"),
    (b'["sad", "Sad"]', "given twice"),
    (b'{"template": "no placeholder", "labels": ["a", "b"]}', "template must be text with {}"),
    (b'{"labels": {"a": "", "b": "x"}}', "label 'a' needs a description"),
    (b'{"multi_label": true, "threshold": 2, "labels": ["a", "b"]}', "threshold must be between 0 and 1"),
    (b'{"temperature": "hot", "labels": ["a", "b"]}', "temperature must be a number"),
    (b"42", "expected a JSON object or a list"),
])
def test_an_unusable_label_set_says_why(document, reason):
    with pytest.raises(LabelSetError, match=reason):
        labelset.parse(document, "labels/x.json")


# ----------------------------------------------------------------------------- the runtime head


def test_labels_at_run_time_score_as_a_model_built_with_them(tmp_path, model):
    """Same labels, same results: build-model's zero-shot head in the graph, and the runtime's
    head over the default model's encoder."""
    labels_file = tmp_path / "moods.json"
    labels_file.write_text(json.dumps({**MOODS, "centre": True, "bias": {"sad": 0.1}}), encoding="utf-8")
    built_dir = tmp_path / "built"
    done = cli("build-model", "--labels", str(labels_file), "--out", str(built_dir))
    assert done.returncode == 0, done.stderr
    built = Classifier.load(built_dir, threads=1)
    at_run_time = model.with_labels(labelset.from_file(labels_file))
    texts = [row["lyrics"] for row in sample_lyrics()]
    expected, got = built.classify(texts), at_run_time.classify(texts)
    assert at_run_time.labels == built.labels == ("sad", "happy", "angry")
    for a, b in zip(expected, got, strict=True):
        assert a.label == b.label
        assert max(abs(x - y) for x, y in zip(a.probabilities, b.probabilities)) < 1e-4
    assert at_run_time.identity["label_set"]["sha256"] == hashlib.sha256(labels_file.read_bytes()).hexdigest()


def test_genre_descriptions_at_run_time_classify_the_samples_well(model):
    """The model's own descriptions, zero-shot at run time: far better than chance (20%)."""
    zero_shot = model.with_labels(labelset.parse(json.dumps({"labels": model.model_label_set().descriptions}), "x"))
    rows = sample_lyrics(100)
    predictions = zero_shot.classify([row["lyrics"] for row in rows])
    accuracy = sum(p.label == row["genre"] for p, row in zip(predictions, rows)) / len(rows)
    assert accuracy >= 0.6


def test_a_label_set_needs_descriptions_only(model, tmp_path):
    with pytest.raises(LabelSetError, match="examples"):
        model.with_labels(labelset.parse(b'{"examples": {"file": "x.csv"}, "labels": ["a", "b"]}', "x"))


def test_multi_label_scores_a_label_whatever_else_is_in_the_set(model):
    texts = ["I cried all night since you left, I miss your kiss, my love",
             "We dance all night at the party, hands up, feel good", ""]
    small = model.with_labels(labelset.inline("sad,happy").with_options(multi_label=True))
    large = model.with_labels(labelset.inline("sad,happy,angry,romantic,lonely").with_options(multi_label=True))
    a, b = small.classify(texts), large.classify(texts)
    for i in range(2):
        assert a[i].probabilities == pytest.approx(b[i].probabilities[:2], abs=1e-6)
        assert 0 <= min(b[i].probabilities) and max(b[i].probabilities) <= 1
    assert b[2].error == "empty lyrics" and b[2].labels_above is None
    # a listed label is at or above the threshold, best first
    for prediction in b[:2]:
        scores = dict(zip(large.labels, prediction.probabilities))
        assert list(prediction.labels_above) == sorted((k for k, v in scores.items() if v >= 0.8),
                                                       key=lambda k: -scores[k])
    assert "happy" in b[1].labels_above and "sad" not in b[1].labels_above


# ----------------------------------------------------------------------------- the CLI


def test_predict_takes_inline_labels_and_multi_label():
    done = cli("predict", "--json", "--labels", "happy,sad", "I cried all night, alone and broken")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["scores"]) == {"happy", "sad"} and result["label"] == "sad"
    assert "labels" not in result
    done = cli("predict", "--json", "--multi-label", "--threshold", "0.5", "Wir tanzen die ganze Nacht, Liebe")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["scores"]) == {"rock", "pop", "hip hop", "country", "latin"}  # the model's descriptions
    assert all(result["scores"][label] >= 0.5 for label in result["labels"])


@pytest.mark.parametrize("args, message", [
    (["--template", "a {} tune", "x"], "--template shapes the names given with --labels"),
    (["--threshold", "0.5", "x"], "--threshold applies to --multi-label"),
    (["--labels", "solo", "x"], "at least two labels"),
    (["--labels", "nowhere.json", "x"], "labels file nowhere.json"),
])
def test_predict_label_mistakes_are_one_line_errors(args, message):
    done = cli("predict", *args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_run_with_a_label_set_file_classifies_into_its_labels(tmp_path):
    rows = sample_lyrics(12)
    source = tmp_path / "songs.csv"
    with open(source, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "lyrics"])
        writer.writeheader()
        writer.writerows({"id": r["id"], "lyrics": r["lyrics"]} for r in rows)
    labels_file = tmp_path / "moods.json"
    labels_file.write_text(json.dumps(MOODS), encoding="utf-8")
    done = cli("run", str(source), "-q", "--labels", str(labels_file), "--multi-label")
    assert done.returncode == 0, done.stderr
    assert "label set: moods" in done.stdout
    with open(tmp_path / "songs.classified.csv", newline="", encoding="utf-8") as handle:
        output = list(csv.DictReader(handle))
    assert [r["id"] for r in output] == [r["id"] for r in rows]
    assert list(output[0])[2:7] == ["label", "score", "labels", "prob_sad", "prob_happy"]
    assert {r["label"] for r in output} <= {"sad", "happy", "angry"}
    summary = json.loads((tmp_path / "songs.summary.json").read_text())
    assert summary["label_set"]["name"] == "moods" and summary["label_set"]["multi_label"] is True
    assert set(summary["label_counts"]) == {"sad", "happy", "angry"}
    assert (tmp_path / "songs.report.html").read_text().lstrip().lower().startswith("<!doctype html")


# ----------------------------------------------------------------------------- the workflow on S3


@pytest.fixture()
def buckets():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in ("in-bucket", "out-bucket"):
            s3.create_bucket(Bucket=bucket)
        yield s3


def split(s3, key: str, **options):
    from lyrics_classifier.workflow import split_input

    s3.put_object(Bucket="in-bucket", Key=key, Body=b"id,lyrics\n1,hello there\n")
    return split_input(s3, input_bucket="in-bucket", input_key=key, work_bucket="out-bucket", run_id="r1", **options)


def test_an_upload_in_a_folder_selects_that_folders_label_set(buckets):
    from lyrics_classifier.workflow import load_label_set

    document = json.dumps(MOODS).encode()
    buckets.put_object(Bucket="in-bucket", Key="labels/moods.json", Body=document)
    result = split(buckets, "moods/songs.csv")
    chosen = result["job"]["label_set"]
    assert chosen["source"] == "s3://in-bucket/labels/moods.json"
    assert chosen["sha256"] == hashlib.sha256(document).hexdigest()
    # the run keeps its own copy: a later edit of labels/moods.json does not change it mid-run
    buckets.put_object(Bucket="in-bucket", Key="labels/moods.json", Body=b'["x", "y"]')
    assert load_label_set(buckets, result["job"]).labels == ("sad", "happy", "angry")
    assert "label_set" not in split(buckets, "songs.csv")["job"]  # the bucket root: the model's labels


def test_prefix_is_skipped_when_choosing_the_label_set():
    from lyrics_classifier.workflow import label_set_key

    assert label_set_key("uploads/moods/a/b.csv", "uploads/") == "labels/moods.json"
    assert label_set_key("uploads/b.csv", "uploads/") is None
    assert label_set_key("b.csv") is None


@pytest.mark.parametrize("stored, reason", [
    (None, "s3://in-bucket/labels/moods.json does not exist: a file in the folder moods/"),
    (b'["alone"]', "at least two labels"),
])
def test_a_missing_or_invalid_label_set_fails_split_and_releases_the_claim(buckets, stored, reason):
    if stored is not None:
        buckets.put_object(Bucket="in-bucket", Key="labels/moods.json", Body=stored)
    with pytest.raises(LabelSetError, match=reason):
        split(buckets, "moods/songs.csv")
    listed = buckets.list_objects_v2(Bucket="out-bucket").get("Contents", [])
    assert listed == []  # no claim kept, no manifest, no upload: nothing was classified


def test_a_csv_under_labels_is_refused(buckets):
    with pytest.raises(InputError, match="labels/ holds label sets"):
        split(buckets, "labels/songs.csv")
