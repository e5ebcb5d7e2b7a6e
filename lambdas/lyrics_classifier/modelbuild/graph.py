"""ONNX graph surgery: token pooling on top of an encoder, heads on top of the pooling.

Outputs of a finished model (what the runtime and any other ONNX user sees):

    sentence_embedding [batch, hidden]   pooled, L2-normalised
    logits             [batch, labels]   zero-shot: similarity to each label's (centred)
                                         prototype / temperature; trained: W e + b
    probabilities      [batch, labels]   softmax(logits)

Every head here is linear in the sentence embedding, so the runtime's mean of window
logits equals the head applied to the mean window embedding.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

EMBEDDING = "sentence_embedding"


def _const(graph: onnx.GraphProto, name: str, value: np.ndarray) -> str:
    graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
    return name


def append_pooling(model: onnx.ModelProto, pooling: str = "mean", normalize: bool = True) -> onnx.ModelProto:
    """last_hidden_state [B,T,H] + attention_mask [B,T] -> sentence_embedding [B,H]."""
    graph = model.graph
    (hidden,) = [o for o in graph.output if o.name == "last_hidden_state"]
    hidden_size = hidden.type.tensor_type.shape.dim[2].dim_value or None
    nodes = []
    if pooling == "mean":
        axes1 = _const(graph, "pool/axes1", np.array([1], dtype=np.int64))
        axes2 = _const(graph, "pool/axes2", np.array([2], dtype=np.int64))
        tiny = _const(graph, "pool/min_count", np.array(1e-9, dtype=np.float32))
        nodes += [
            helper.make_node("Cast", ["attention_mask"], ["pool/mask"], to=TensorProto.FLOAT, name="pool/cast"),
            helper.make_node("Unsqueeze", ["pool/mask", axes2], ["pool/mask3"], name="pool/unsqueeze"),
            helper.make_node("Mul", ["last_hidden_state", "pool/mask3"], ["pool/masked"], name="pool/mul"),
            helper.make_node("ReduceSum", ["pool/masked", axes1], ["pool/sum"], keepdims=0, name="pool/sum"),
            helper.make_node("ReduceSum", ["pool/mask3", axes1], ["pool/count"], keepdims=0, name="pool/count"),
            helper.make_node("Max", ["pool/count", tiny], ["pool/count_safe"], name="pool/count_safe"),
            helper.make_node("Div", ["pool/sum", "pool/count_safe"], ["pool/mean"], name="pool/mean"),
        ]
        pooled = "pool/mean"
    elif pooling == "cls":
        index = _const(graph, "pool/cls_index", np.array(0, dtype=np.int64))
        nodes.append(helper.make_node("Gather", ["last_hidden_state", index], ["pool/cls"], axis=1, name="pool/cls"))
        pooled = "pool/cls"
    else:
        raise ValueError(f"unsupported pooling {pooling!r}")
    if normalize:
        axes_last = _const(graph, "norm/axes", np.array([-1], dtype=np.int64))
        eps = _const(graph, "norm/eps", np.array(1e-12, dtype=np.float32))
        nodes += [
            helper.make_node("Mul", [pooled, pooled], ["norm/squares"], name="norm/squares"),
            helper.make_node("ReduceSum", ["norm/squares", axes_last], ["norm/sum"], keepdims=1, name="norm/sum"),
            helper.make_node("Sqrt", ["norm/sum"], ["norm/l2"], name="norm/l2"),
            helper.make_node("Max", ["norm/l2", eps], ["norm/l2_safe"], name="norm/l2_safe"),
            helper.make_node("Div", [pooled, "norm/l2_safe"], [EMBEDDING], name="norm/div"),
        ]
    else:
        nodes.append(helper.make_node("Identity", [pooled], [EMBEDDING], name="pool/out"))
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, ["batch", hidden_size]))
    onnx.checker.check_model(model)
    return model


def _finish(model: onnx.ModelProto, logits: str, labels: int) -> onnx.ModelProto:
    graph = model.graph
    graph.node.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=-1, name="head/softmax"))
    if logits != "logits":
        graph.node.append(helper.make_node("Identity", [logits], ["logits"], name="head/logits"))
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", labels]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", labels]),
            helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, ["batch", None]),
        ]
    )
    onnx.checker.check_model(model)
    return model


def append_zero_shot_head(
    model: onnx.ModelProto,
    prototypes: np.ndarray,  # [L, H] unit label prototypes (labelset.label_prototypes)
    centre: np.ndarray,  # [H] subtracted from the embedding first (zeros: plain cosine)
    temperature: float,
    bias: np.ndarray | None = None,  # [L], added to the logits (prior correction)
) -> onnx.ModelProto:
    """logits = (e - centre) . prototype / temperature: the cosine similarity of the lyric to
    each label's (centred) prototype, up to the lyric's own norm, which is the same for every
    label and so never changes the ranking."""
    graph = model.graph
    _const(graph, "head/centre", centre.astype(np.float32))
    _const(graph, "head/prototypes_t", np.ascontiguousarray(prototypes.T.astype(np.float32)))
    _const(graph, "head/inv_temperature", np.array(1.0 / temperature, dtype=np.float32))
    nodes = [
        helper.make_node("Sub", [EMBEDDING, "head/centre"], ["head/centred"], name="head/centre"),
        helper.make_node("MatMul", ["head/centred", "head/prototypes_t"], ["head/similarity"], name="head/similarity"),
        helper.make_node("Mul", ["head/similarity", "head/inv_temperature"], ["head/scaled"], name="head/temperature"),
    ]
    logits = "head/scaled"
    if bias is not None:
        _const(graph, "head/bias", bias.astype(np.float32))
        nodes.append(helper.make_node("Add", ["head/scaled", "head/bias"], ["head/biased"], name="head/bias"))
        logits = "head/biased"
    graph.node.extend(nodes)
    return _finish(model, logits, prototypes.shape[0])


def append_linear_head(model: onnx.ModelProto, weight: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    """logits = e @ weight.T + bias (a fitted scikit-learn linear model)."""
    graph = model.graph
    _const(graph, "head/weight", weight.astype(np.float32))
    _const(graph, "head/bias", bias.astype(np.float32))
    graph.node.append(
        helper.make_node("Gemm", [EMBEDDING, "head/weight", "head/bias"], ["head/linear"], transB=1, name="head/linear")
    )
    return _finish(model, "head/linear", weight.shape[0])


def head_matrices(model_dir) -> tuple[np.ndarray, np.ndarray]:
    """(weight [hidden, labels], bias [labels]) with logits = embedding @ weight + bias,
    read back from a built model.onnx (for baselines that reuse the very same head)."""
    from pathlib import Path

    model = onnx.load(str(Path(model_dir) / "model.onnx"))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name.startswith("head/")}
    if "head/prototypes_t" in init:
        weight = init["head/prototypes_t"] * init["head/inv_temperature"]
        bias = -init["head/centre"] @ weight + init.get("head/bias", 0)
    elif "head/weight" in init:
        weight, bias = init["head/weight"].T, init["head/bias"]
    else:
        raise ValueError(f"{model_dir}: no head built by lyrics-classifier in this graph")
    return weight.astype(np.float32), bias.astype(np.float32)
