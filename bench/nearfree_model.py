"""A near-free model directory for the scale benchmark: the workflow's cost without inference.

It has the layout of a Hugging Face sequence-classification export, which
`lyrics_classifier.runtime.Classifier.load` reads unchanged (README.md, "Model directory"):

    model.onnx      inputs input_ids, attention_mask (int64 [batch, seq]); output logits
                    [batch, 5] = mean(ids * mask) * a constant row: a few adds per token
    tokenizer.json  the default model's tokenizer (models/default), so tokenisation is real
    config.json     id2label for the five default genres, plus the runtime's window keys

Without window keys the runtime would treat it like any export (max_tokens from
max_position_embeddings, up to 16 windows, i.e. tokenise the whole lyric); the bench sets
max_tokens 8 and max_windows 1, so each lyric is sampled to ~64 characters before it is
tokenised, and Classify's time is mostly reading, parsing, writing and S3 (~12 MB/s a thread).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

LABELS = ["rock", "pop", "hip hop", "country", "latin"]


def build(out: Path, tokenizer_from: Path) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out.mkdir(parents=True, exist_ok=True)
    scale = numpy_helper.from_array(np.array([[0.010, 0.011, 0.009, 0.0105, 0.0095]], dtype=np.float32), "scale")
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["ids_f", "mask_f"], ["masked"]),
        helper.make_node("ReduceMean", ["masked"], ["mean"], axes=[1], keepdims=1),  # [batch, 1]
        helper.make_node("Mul", ["mean", "scale"], ["logits"]),  # [batch, 5]
    ]
    graph = helper.make_graph(
        nodes,
        "near_free_classifier",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)])],
        initializer=[scale],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, out / "model.onnx")
    shutil.copyfile(tokenizer_from / "tokenizer.json", out / "tokenizer.json")
    config = {
        "name": "bench-near-free",
        "architectures": ["BenchNearFreeForSequenceClassification"],
        "id2label": {str(i): label for i, label in enumerate(LABELS)},
        "label2id": {label: i for i, label in enumerate(LABELS)},
        "max_position_embeddings": 512,
        "pad_token_id": 0,
        "max_tokens": 8,
        "window_stride": 2,
        "max_windows": 1,
    }
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return out
