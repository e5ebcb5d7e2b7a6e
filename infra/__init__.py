"""The CDK app of lyrics-classifier: one stack (infra.stack) composed of constructs (storage,
functions, workflow, monitoring), settings from context (infra.settings)."""

import os

# jsii prints a full-screen banner on every start under Node 20 (end of life since
# 2026-10-30; the README's prerequisite is still Node 20+). Keep synth output readable;
# newer Node versions are unaffected, and JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION
# set by the user wins.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
