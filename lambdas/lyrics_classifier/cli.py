"""The `lyrics-classifier` command. Each area registers its own subcommands, imported lazily
so that `predict` never pays for moto and `run` never imports torch."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import UserError

# subcommand area -> module that defines `register(subparsers)`
_AREAS = (
    "lyrics_classifier.modelbuild.commands",  # build-model, train
    "lyrics_classifier.predict",  # predict
    "lyrics_classifier.local",  # run
    "lyrics_classifier.deployed",  # submit, status
    "lyrics_classifier.serve",  # serve
    "lyrics_classifier.evaluation",  # evaluate
    "lyrics_classifier.doctor",  # doctor
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lyrics-classifier")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lyrics-classifier",
        description="Classify song lyrics in bulk, locally or on AWS Step Functions.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in _AREAS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`... | head`): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a process killed by SIGPIPE
    except KeyboardInterrupt:
        print(("\n" if sys.stderr.isatty() else "") + "interrupted", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        # Leave at once: worker threads (onnxruntime's, the state machine interpreter's) may
        # still be running, and tearing the interpreter down under them aborts the process.
        # Nothing is half-written: outputs are only written when a command has finished.
        os._exit(130)


if __name__ == "__main__":
    sys.exit(main())
