"""lyrics-classifier: bulk classification of song lyrics with ONNX Runtime on AWS Step Functions."""

__version__ = "0.1.0"
