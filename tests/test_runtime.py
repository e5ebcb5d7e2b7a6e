"""The classifier runtime: loading, windows, batching, rejection, threads, no torch."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lyrics_classifier.runtime import (
    Classifier,
    ModelError,
    Prediction,
    dedupe_lines,
    sample_text,
    threads_for_environment,
)

GENRES = ("rock", "pop", "hip hop", "country", "latin")

ROCK = "Turn the amps up loud, the city's burning down, thunder in my veins and screaming guitars"
HIPHOP = "Spittin' bars on the mic, money on my mind, grinding on the block with my crew every night"
LATIN = "Baila conmigo, mi corazón, la noche es nuestra hasta que salga el sol"
COUNTRY = "Pickup truck and a cold beer, dirt road Friday, small town lights and my boots on the porch"


@pytest.fixture(scope="module")
def classifier(default_model_dir: Path) -> Classifier:
    return Classifier.load(default_model_dir, threads=2)


def test_labels_and_identity(classifier: Classifier, default_model_dir: Path) -> None:
    assert classifier.labels == GENRES
    identity = classifier.identity
    assert identity["labels"] == list(GENRES)
    assert identity["sha256"] == hashlib.sha256((default_model_dir / "model.onnx").read_bytes()).hexdigest()
    assert identity["source"] == "google/universal-sentence-encoder-multilingual/3"
    assert json.loads(json.dumps(identity)) == identity


def test_prediction_shape(classifier: Classifier) -> None:
    (prediction,) = classifier.classify([HIPHOP])
    assert isinstance(prediction, Prediction)
    assert prediction.error is None
    assert prediction.label in GENRES
    assert len(prediction.probabilities) == len(GENRES)
    assert sum(prediction.probabilities) == pytest.approx(1.0, abs=1e-5)
    assert prediction.score == max(prediction.probabilities)
    assert prediction.label == GENRES[int(np.argmax(prediction.probabilities))]
    assert prediction.windows == 1


def test_obvious_genres(classifier: Classifier) -> None:
    labels = [p.label for p in classifier.classify([ROCK, HIPHOP, LATIN, COUNTRY])]
    assert labels == ["rock", "hip hop", "latin", "country"]


def test_empty_and_missing_text_are_rejected_per_row(classifier: Classifier) -> None:
    predictions = classifier.classify(["", "   \n\t  ", LATIN, None, "\u200b"])  # type: ignore[list-item]
    assert predictions[0] == Prediction(None, None, None, "empty lyrics", 0)
    assert predictions[1].error == "empty lyrics"
    assert predictions[2].error is None and predictions[2].label == "latin"
    assert predictions[3].error == "lyrics missing"
    assert predictions[4].label is None and predictions[4].error  # zero-width space only
    assert classifier.classify([]) == []


def test_input_order_is_preserved_across_length_sorted_batches(classifier: Classifier) -> None:
    base = [ROCK, HIPHOP, LATIN, COUNTRY]
    # different lengths (1..6 repeats of distinct lines) so that sorting reorders them
    texts = [
        "\n".join(f"{base[i % 4]} number {k}" for k in range(1 + (i * 7) % 6)) for i in range(40)
    ]
    together = classifier.classify(texts)
    alone = [classifier.classify([t])[0] for t in texts[:8]]
    for a, b in zip(together[:8], alone, strict=True):
        assert a.label == b.label
        # int8 dynamic quantisation scales activations per batch: tiny batch dependence
        assert np.allclose(a.probabilities, b.probabilities, atol=0.05)
    assert [p.label for p in together] == [
        ("rock", "hip hop", "latin", "country")[i % 4] for i in range(40)
    ]


def test_long_lyrics_are_windowed_on_line_breaks(classifier: Classifier) -> None:
    engine = classifier.engine
    lines = [f"line {i}: " + " ".join(f"word{i}x{j}" for j in range(4)) for i in range(12)]
    (windows,), (error,) = engine.windows(["\n".join(lines)])
    assert error is None
    assert 2 <= len(windows) <= engine.default_windows.max_windows
    for window in windows:
        assert len(window.ids) <= engine.default_windows.max_tokens
        assert window.special_tokens_mask[0] == window.special_tokens_mask[-1] == 1  # <s> ... </s>
    # every token of the lyric exactly once, in order, and no line cut in two
    content = [t for w in windows for t, special in zip(w.ids, w.special_tokens_mask) if not special]
    assert content == engine.tokenizer.encode("\n".join(lines), add_special_tokens=False).ids
    def holds(window: list[int], piece: list[int]) -> bool:
        return any(window[k : k + len(piece)] == piece for k in range(len(window) - len(piece) + 1))

    for line in lines:
        ids = engine.tokenizer.encode(line, add_special_tokens=False).ids
        assert sum(holds(w.ids, ids) for w in windows) == 1, line
    (prediction,) = classifier.classify(["\n".join(lines)])
    assert prediction.windows == len(windows)


def test_a_line_longer_than_a_window_is_cut_into_overlapping_windows(classifier: Classifier) -> None:
    engine = classifier.engine
    text = " ".join(f"word{j}" for j in range(100))  # one line of ~200 tokens
    (windows,), (error,) = engine.windows([text])
    assert error is None and len(windows) == 2
    first, second = windows[0].ids, windows[1].ids
    assert len(first) == engine.default_windows.max_tokens
    # the two windows share `stride` tokens: [CLS] a... [SEP], [CLS] ...a-tail b... [SEP]
    shared = engine.default_windows.stride
    assert first[-1 - shared : -1] == second[1 : 1 + shared]


def test_windows_are_capped_and_spread_over_the_lyric(classifier: Classifier) -> None:
    engine = classifier.engine
    lines = [f"verse line {i} " + " ".join(f"token{i}_{j}" for j in range(10)) for i in range(8000)]
    huge = "\n".join(lines)
    assert len(huge) > 1_000_000
    prepared = engine.prepare(huge, engine.default_windows)
    assert isinstance(prepared, str)
    assert len(prepared) <= engine.default_windows.char_budget + engine.default_windows.max_windows  # sampled before tokenising
    assert "verse line 0 " in prepared and "token7999_9" in prepared  # beginning and end
    (prediction,) = classifier.classify([huge])
    assert prediction.error is None
    assert prediction.windows == engine.default_windows.max_windows


def test_repeated_lines_are_encoded_once(classifier: Classifier) -> None:
    chorus = "oh oh we shine tonight\nunder the neon lights"
    verse = "I came from a little town\nwith a big old dream"
    song = "\n".join([verse, chorus, chorus, "  Oh, oh, we SHINE tonight! ", chorus, "🔥🔥", "🔥🔥"])
    assert dedupe_lines(song) == "\n".join([*verse.split("\n"), *chorus.split("\n"), "🔥🔥"])
    a, b = classifier.classify([song, verse + "\n" + chorus + "\n🔥🔥"])
    assert a.label == b.label
    assert np.allclose(a.probabilities, b.probabilities, atol=1e-6)


def test_sample_text_bounds_size() -> None:
    text = "abcdefghij" * 100_000
    sampled = sample_text(text, 1000, 10)
    assert len(sampled) <= 1000 + 10
    assert sample_text("short", 1000, 10) == "short"


def test_threads_for_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    visible = len(os.sched_getaffinity(0))
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", raising=False)
    assert threads_for_environment() == visible
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1769")
    assert threads_for_environment() == 1
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
    assert threads_for_environment() == 1
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3008")
    assert threads_for_environment() == min(2, visible)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "10240")
    assert threads_for_environment() == min(6, visible)


def test_missing_or_broken_model_directory(tmp_path: Path, default_model_dir: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        Classifier.load(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text('{"id2label": {"0": "a", "1": "b"}}')
    with pytest.raises(ModelError, match=r"missing model\.onnx, tokenizer\.json") as caught:
        Classifier.load(tmp_path)
    assert str(tmp_path) in str(caught.value)
    assert issubclass(ModelError, ValueError)
    (tmp_path / "tokenizer.json").write_bytes((default_model_dir / "tokenizer.json").read_bytes())
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="onnxruntime cannot load"):
        Classifier.load(tmp_path)
    (tmp_path / "config.json").write_text('{"labels": []}')
    with pytest.raises(ModelError, match="id2label"):
        Classifier.load(tmp_path)


def test_runtime_never_imports_torch_or_transformers(default_model_dir: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from lyrics_classifier.runtime import Classifier
        c = Classifier.load({str(default_model_dir)!r})
        assert c.classify(["hello darkness my old friend"])[0].label
        heavy = sorted(m for m in sys.modules
                       if m.split(".")[0] in ("torch", "transformers", "sentence_transformers",
                                              "optimum", "onnx", "sklearn"))
        print(",".join(heavy))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_loads_a_hugging_face_sequence_classification_export(tmp_path: Path) -> None:
    """A tiny random BertForSequenceClassification, exported with optimum the usual way."""
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    words = "the a love night road truck money mic baila amor guitar loud dance heart".split()
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
        id2label={0: "negative", 1: "neutral", 2: "positive"},
        label2id={"negative": 0, "neutral": 1, "positive": 2},
    )
    model = BertForSequenceClassification(config).eval()
    source, export = tmp_path / "hf", tmp_path / "onnx"
    model.save_pretrained(source)
    fast.save_pretrained(source)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from optimum.exporters.onnx import main_export

    main_export(str(source), output=str(export), task="text-classification", do_validation=False)
    assert {"model.onnx", "tokenizer.json", "config.json"} <= {p.name for p in export.iterdir()}

    classifier = Classifier.load(export, threads=1)
    assert classifier.labels == ("negative", "neutral", "positive")
    assert classifier.identity["max_tokens"] == 64  # from max_position_embeddings
    texts = ["love the night road", "baila amor", "money mic loud guitar truck"]
    predictions = classifier.classify(texts)
    with torch.no_grad():
        batch = fast(texts, return_tensors="pt", padding=True)
        expected = torch.softmax(model(**batch).logits, dim=-1).numpy()
    for prediction, row in zip(predictions, expected, strict=True):
        assert np.allclose(prediction.probabilities, row, atol=1e-4)
        assert prediction.label == config.id2label[int(row.argmax())]
    # long input: windows of 64 tokens, pooled
    (long,) = classifier.classify([" ".join(words * 20)])
    assert long.error is None and long.windows > 1


def test_a_lyrics_scores_do_not_depend_on_the_rows_around_it(classifier: Classifier) -> None:
    """int8 dynamic quantisation scales activations per batch; the default model batches a
    lyric's lines only with each other, so a row gets the same scores in any file."""
    import csv

    with open(Path(__file__).resolve().parents[1] / "samples" / "multilingual.csv", newline="",
              encoding="utf-8") as handle:
        texts = [row["lyrics"] for row in csv.DictReader(handle)][:60]
    together = classifier.classify(texts)
    alone = [classifier.classify([text])[0] for text in texts]
    reversed_order = classifier.classify(texts[::-1])[::-1]
    for a, b, c in zip(together, alone, reversed_order, strict=True):
        assert a.probabilities == b.probabilities == c.probabilities
