"""Offline model building: export the source encoder to ONNX, optimise, quantise, and
append a zero-shot or fitted head (`lyrics-classifier build-model`, `lyrics-classifier train`).

Needs the `build` extra (torch, transformers, optimum-onnx, onnx, scikit-learn); never part
of a Lambda asset. Heavy imports happen inside the functions."""
