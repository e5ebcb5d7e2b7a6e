"""The functions' settings: read once per container from the environment the stack sets, or
given by the local runner and `serve` (which run the handlers in their own process)."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace

from ..contract import (
    DEFAULT_RANGE_BYTES,
    ENV_DELIMITER,
    ENV_INPUT_PREFIX,
    ENV_INTRA_OP_THREADS,
    ENV_MODEL_DIR,
    ENV_OUTPUT_BUCKET,
    ENV_RANGE_BYTES,
    ENV_TEXT_COLUMN,
    MODEL_ASSET_DIR,
)
from ..csvfile import parse_delimiter

DEFAULT_MODEL_DIR = os.path.join(os.environ.get("LAMBDA_TASK_ROOT", "."), MODEL_ASSET_DIR)


@dataclass(frozen=True)
class Settings:
    output_bucket: str  # the work area, results/ and failed/
    range_bytes: int = DEFAULT_RANGE_BYTES  # Split: bytes of input per range
    text_column: str | None = None  # Split: the lyrics column (None: lyrics, lyric or text)
    delimiter: str | None = None  # Split: the field delimiter (None: from the file; an upload's metadata wins)
    input_prefix: str = ""  # Split: the trigger's prefix, skipped when choosing the label set
    model_dir: str = DEFAULT_MODEL_DIR  # Classify
    intra_op_threads: int = 0  # Classify: onnxruntime threads; 0: from the Lambda memory size

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        try:
            bucket = environ[ENV_OUTPUT_BUCKET]
        except KeyError:
            raise RuntimeError(f"{ENV_OUTPUT_BUCKET} is not set: the function is misconfigured") from None
        return cls(
            output_bucket=bucket,
            range_bytes=int(environ.get(ENV_RANGE_BYTES) or DEFAULT_RANGE_BYTES),
            text_column=environ.get(ENV_TEXT_COLUMN) or None,
            delimiter=parse_delimiter(environ[ENV_DELIMITER]) if environ.get(ENV_DELIMITER) else None,
            input_prefix=environ.get(ENV_INPUT_PREFIX) or "",
            model_dir=environ.get(ENV_MODEL_DIR) or DEFAULT_MODEL_DIR,
            intra_op_threads=int(environ.get(ENV_INTRA_OP_THREADS) or 0),
        )


_given: Settings | None = None
_lock = threading.Lock()


@functools.cache
def _from_environment() -> Settings:
    return Settings.from_environment()


def current() -> Settings:
    """The settings given (`use`), else the environment's, read once."""
    return _given if _given is not None else _from_environment()


def give(settings: Settings | None) -> Settings | None:
    """Run the handlers with these settings from now on (None: the environment's again);
    returns the ones given before."""
    global _given
    with _lock:
        previous, _given = _given, settings
    return previous


@contextmanager
def use(settings: Settings) -> Iterator[None]:
    """Run the handlers with these settings inside the block (the local runner)."""
    previous = give(settings)
    try:
        yield
    finally:
        give(previous)


def update(**changes: object) -> None:
    """Change the given settings in place (the local runner shares the cores once Split has
    said how many ranges there are)."""
    global _given
    with _lock:
        _given = replace(current(), **changes)
