"""build-model and train: the model directory format, caching, determinism, int8 vs fp32,
heads baked into the graph, quality per language on the samples, the English encoder one
option away."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")  # the build extra

from lyrics_classifier.errors import UserError  # noqa: E402
from lyrics_classifier.modelbuild.build import Options, build_model, load_labels, train  # noqa: E402
from lyrics_classifier.runtime import Classifier  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "lyrics.csv"
sys.path.insert(0, str(REPO / "bench"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def quiet(_: str) -> None:
    pass


def test_model_directory_format(default_model_dir: Path) -> None:
    assert {p.name for p in default_model_dir.iterdir()} >= {"model.onnx", "tokenizer.json", "config.json"}
    config = json.loads((default_model_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "rock", "1": "pop", "2": "hip hop", "3": "country", "4": "latin"}
    assert config["kind"] == "few-shot"
    assert config["max_tokens"] == 128 and config["window_stride"] == 16
    assert config["window_packing"] == "lines" and config["max_windows"] == 32  # USE-m3 reads line by line
    assert config["normalize"] is True and config["precision"] == "int8"
    assert config["source"]["name"] == "google/universal-sentence-encoder-multilingual/3"
    assert config["source"]["encoder"] == "use-m3"
    assert len(config["source"]["sha256"]) == 64
    assert config["model_sha256"] == sha256(default_model_dir / "model.onnx")
    head = config["head"]
    assert head["C"] > 0 and head["examples"]["file"] == "genre_examples.csv"
    assert min(head["examples"]["counts"].values()) >= 50  # tuning snippets per genre
    assert all(len(d) >= 40 for d in head["descriptions"].values())  # several per label and language
    size = (default_model_dir / "model.onnx").stat().st_size
    assert 60e6 < size < 75e6  # the 65 MB uint8 embedding table + int8 weights


def test_genre_examples_are_the_tuning_halves_only() -> None:
    """The default head is fitted on the tuning halves of the samples; the held-out halves,
    which README's accuracy figures come from, never reach it."""
    from languages import EXAMPLES, examples_rows, load_samples

    with open(EXAMPLES, newline="", encoding="utf-8") as handle:
        shipped = [(r["id"], r["lyrics"], r["genre"]) for r in csv.DictReader(handle)]
    rows = load_samples()
    assert shipped == examples_rows(rows)
    held_out = {r["lyrics"] for r in rows if r["half"] == "held-out"}
    assert not held_out & {lyrics for _, lyrics, _ in shipped}
    assert len({r["group"] for r in rows}) >= 9  # English samples + 8 more languages


def test_graph_outputs_and_linear_window_pooling(default_model_dir: Path) -> None:
    """probabilities = softmax(logits); the head is linear in the sentence embedding, so the
    runtime's mean of window logits is the head applied to the mean window embedding."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(default_model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "probabilities", "sentence_embedding"]
    classifier = Classifier.load(default_model_dir, threads=1)
    engine = classifier.engine
    text = "\n".join(f"we ride tonight on the highway number {i}, engines roaring loud" for i in range(40))
    (windows,), _ = engine.windows([text])
    assert len(windows) > 2
    logits = engine.run(windows, "logits")
    probabilities = engine.run(windows, "probabilities")
    embeddings = engine.run(windows, "sentence_embedding")
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-4)
    soft = np.exp(logits - logits.max(1, keepdims=True))
    assert np.allclose(probabilities, soft / soft.sum(1, keepdims=True), atol=1e-5)
    from lyrics_classifier.modelbuild.graph import head_matrices

    weight, bias = head_matrices(default_model_dir)
    assert np.allclose(embeddings.mean(0) @ weight + bias, logits.mean(0), atol=1e-4)


def test_second_build_is_a_no_op(default_model_dir: Path) -> None:
    command = [sys.executable, "-m", "lyrics_classifier", "build-model", "--out", str(default_model_dir)]
    subprocess.run(command, capture_output=True, check=True)  # a no-op unless the code changed
    before = (default_model_dir / "model.onnx").stat().st_mtime_ns
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"{default_model_dir}: up to date"
    assert (default_model_dir / "model.onnx").stat().st_mtime_ns == before


def test_builds_are_byte_identical(tmp_path: Path, default_model_dir: Path) -> None:
    """Same inputs, same bytes: two forced builds (the encoder export is cached by its own
    input hash; the first build of a session exported it, twice identically, see README)."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert build_model(a, force=True, log=quiet)
    assert build_model(b, force=True, log=quiet)
    assert (a / "model.onnx").read_bytes() == (b / "model.onnx").read_bytes()
    assert (a / "config.json").read_bytes() == (b / "config.json").read_bytes()
    # and the default model was built from the same inputs
    assert sha256(a / "model.onnx") == sha256(default_model_dir / "model.onnx")
    assert not build_model(a, log=quiet)  # up to date
    (a / "model.onnx").write_bytes(b"tampered")
    assert build_model(a, log=quiet)  # a changed output is rebuilt
    assert sha256(a / "model.onnx") == sha256(b / "model.onnx")


def test_changed_options_change_the_cache_key(tmp_path: Path) -> None:
    out = tmp_path / "m"
    build_model(out, options=Options(max_tokens=256, stride=64), log=quiet)
    config = json.loads((out / "config.json").read_text())
    assert config["max_tokens"] == 256 and config["window_stride"] == 64
    assert not build_model(out, options=Options(max_tokens=256, stride=64), log=quiet)
    assert build_model(out, options=Options(max_tokens=256, stride=32), log=quiet)
    with pytest.raises(UserError, match="--stride"):
        build_model(out, options=Options(max_tokens=64, stride=40), log=quiet)


@pytest.mark.slow
def test_int8_agrees_with_fp32_on_a_lyrics_corpus(tmp_path: Path, default_model_dir: Path) -> None:
    from corpus import make_corpus

    fp32 = tmp_path / "fp32"
    build_model(fp32, options=Options(precision="fp32"), log=quiet)
    assert json.loads((fp32 / "config.json").read_text())["precision"] == "fp32"
    assert (fp32 / "model.onnx").stat().st_size > (default_model_dir / "model.onnx").stat().st_size + 10e6
    # 1,000 songs: on 300 one flip moves the rate by a third of a point
    texts = [lyrics for lyrics, _ in make_corpus(1000, seed=1)]
    int8_labels = [p.label for p in Classifier.load(default_model_dir).classify(texts)]
    fp32_labels = [p.label for p in Classifier.load(fp32).classify(texts)]
    agreement = sum(a == b for a, b in zip(int8_labels, fp32_labels)) / len(texts)
    print(f"int8/fp32 top-1 agreement: {agreement:.2%} of {len(texts)} songs")
    assert agreement >= 0.99


def test_offline_fusion_builds_an_equivalent_model(tmp_path: Path, minilm_model_dir: Path) -> None:
    """--fusion offline (onnxruntime's transformer optimiser before quantising) loads and
    classifies like the default, which leaves the fusions to onnxruntime at load time."""
    fused = tmp_path / "fused"
    build_model(fused, encoder="minilm", options=Options(fusion="offline"), log=quiet)
    config = json.loads((fused / "config.json").read_text())
    assert "offline" in config["graph_fusion"]
    texts = ["Baila conmigo, mi amor, toda la noche", "Spittin' bars on the mic with my crew",
             "Pickup truck, cold beer, dirt road, boots on the porch"]
    a = Classifier.load(fused).classify(texts)
    b = Classifier.load(minilm_model_dir).classify(texts)
    assert [p.label for p in a] == [p.label for p in b] == ["latin", "hip hop", "country"]
    with pytest.raises(UserError, match="--fusion offline applies to transformer encoders"):
        build_model(tmp_path / "x", options=Options(fusion="offline"), log=quiet)


def test_the_english_encoder_is_one_option_away(minilm_model_dir: Path) -> None:
    """`build-model --encoder minilm`: all-MiniLM-L6-v2 with its English zero-shot genres, the
    default before the multilingual one (README's English-only figures)."""
    config = json.loads((minilm_model_dir / "config.json").read_text())
    assert config["source"]["name"] == "sentence-transformers/all-MiniLM-L6-v2" and config["kind"] == "zero-shot"
    assert config["pooling"] == "mean" and 15e6 < (minilm_model_dir / "model.onnx").stat().st_size < 30e6
    assert config["window_packing"] == "packed" and config["max_windows"] == 3
    classifier = Classifier.load(minilm_model_dir)
    assert [p.label for p in classifier.classify(["Pickup truck, cold beer, dirt road, boots on the porch"])] == ["country"]


def test_labels_file_forms(tmp_path: Path) -> None:
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(["jazz", "metal"]))
    # names only: the default template makes the descriptions, as for labels given at run time
    assert load_labels(listed)["labels"] == {"jazz": ["this is a jazz song"], "metal": ["this is a metal song"]}
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"happy": ["a happy song", "joy"], "sad": "a sad song"}))
    spec = load_labels(mapping)
    assert spec["labels"] == {"happy": ["a happy song", "joy"], "sad": ["a sad song"]}
    out = tmp_path / "mood"
    build_model(out, labels_file=mapping, log=quiet)
    classifier = Classifier.load(out)
    assert classifier.labels == ("happy", "sad")
    assert classifier.classify(["tears fall, I cry alone, my heart is broken"])[0].label == "sad"
    for bad, message in (
        ('{"labels": {"only": ["one"]}}', "at least two labels"),
        ('{"a": [""], "b": ["x"]}', "non-empty"),
        ('{"temperature": -1, "labels": {"a": "x", "b": "y"}}', "temperature"),
        ("not json", "not valid JSON"),
    ):
        mapping.write_text(bad)
        with pytest.raises(UserError, match=message):
            load_labels(mapping)
    with pytest.raises(UserError, match="nowhere.json"):
        load_labels(tmp_path / "nowhere.json")


def _labelled_rows() -> list[tuple[str, str]]:
    with open(SAMPLES, newline="", encoding="utf-8") as handle:
        return [(row["lyrics"], row["genre"]) for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_train_fits_a_head_and_bakes_it_into_the_graph(tmp_path: Path, capsys) -> None:
    rows = _labelled_rows()
    data = tmp_path / "labelled.csv"
    with open(data, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "song", "genre"])
        writer.writerows((i, text, genre) for i, (text, genre) in enumerate(rows))
        writer.writerow([len(rows), "", "rock"])  # an empty text is skipped, not fatal
    out = tmp_path / "trained"
    head = train(data, label_column="genre", text_column="song", out=out, log=print)
    printed = capsys.readouterr().out
    assert "cross-validated accuracy (5 folds)" in printed
    assert "1 rows skipped" in printed
    assert head["cv_accuracy"] >= 0.8
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "trained"
    classifier = Classifier.load(out)
    assert classifier.labels == tuple(sorted({g for _, g in rows}))
    predictions = classifier.classify([t for t, _ in rows])
    train_accuracy = sum(p.label == g for p, (_, g) in zip(predictions, rows)) / len(rows)
    assert train_accuracy >= 0.9
    assert train(data, label_column="genre", text_column="song", out=out, log=quiet) == head  # cached
    with pytest.raises(UserError, match="no label column 'mood'"):
        train(data, label_column="mood", out=tmp_path / "x", log=quiet)


def test_train_reports_unusable_csvs(tmp_path: Path) -> None:
    data = tmp_path / "one.csv"
    data.write_text("lyrics,genre\nsome words,rock\nother words,rock\n")
    with pytest.raises(UserError, match="at least two different labels"):
        train(data, label_column="genre", out=tmp_path / "x", log=quiet)
    data.write_text("lyrics,genre\nsome words,rock\nother words,pop\nmore,pop\n")
    with pytest.raises(UserError, match="at least two examples"):
        train(data, label_column="genre", out=tmp_path / "x", log=quiet)
    data.write_text("words,genre\nsome words,rock\n")
    with pytest.raises(UserError, match="--text-column"):
        train(data, label_column="genre", out=tmp_path / "x", log=quiet)


@pytest.mark.slow
def test_accuracy_per_language_on_the_held_out_samples(default_model_dir: Path) -> None:
    """A regression guard (README's table comes from `python bench/languages.py`): the
    default model on the held-out halves, English samples and every other language."""
    from languages import ENGLISH_GROUP, accuracy_by_group, load_samples, table

    classifier = Classifier.load(default_model_dir)
    rows = load_samples()
    print("\n" + table(classifier, rows))
    scores = accuracy_by_group(classifier, rows)
    held_out = {group: right / total for (group, half), (right, total) in scores.items() if half == "held-out"}
    # measured 84% and 86.4% (docs/performance.md); a little room for other CPUs' int8 kernels
    assert held_out[ENGLISH_GROUP] >= 0.8
    assert held_out["multilingual.csv, all"] >= 0.84
    assert min(held_out.values()) >= 0.75, held_out
