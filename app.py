#!/usr/bin/env python3
"""CDK entry point: one stack, every setting from cdk.json context (see infra/settings.py).

    npx cdk synth                          # or: make synth
    npx cdk deploy -c alarm_email=me@example.com
"""

from __future__ import annotations

import infra  # noqa: F401  (sets up the environment before aws_cdk loads)
from aws_cdk import App

from infra.nag import add_checks
from infra.settings import Settings
from infra.stack import LyricsClassifierStack


def build_app(app: App | None = None) -> tuple[App, LyricsClassifierStack]:
    app = app or App()
    settings = Settings.from_context(app.node)
    stack = LyricsClassifierStack(
        app,
        settings.stack_name,
        settings=settings,
        description="lyrics-classifier: S3-triggered Step Functions workflow classifying song lyrics with ONNX on Lambda",
        # Environment-agnostic: `cdk deploy` targets the account and region of the
        # credentials in use, and the template does not depend on them.
    )
    add_checks(app)
    return app, stack


if __name__ == "__main__":
    build_app()[0].synth()
