"""Names that the infrastructure (infra/), the workflow core and the local runner share.

Change one here and every side follows; nothing else spells these out.
"""

from __future__ import annotations

# S3 prefixes of the output bucket.
WORK_PREFIX = "runs/"  # per-run work area (manifest, part stats, claims); expires
RESULTS_PREFIX = "results/"  # <input name>.classified.csv and .summary.json
FAILED_PREFIX = "failed/"  # <input name>.error.json
CLAIMS_PREFIX = f"{WORK_PREFIX}claims/"  # one marker per input object version: duplicate events
MAP_RESULTS_PREFIX = f"{WORK_PREFIX}map-results"  # the Distributed Map's ResultWriter (no trailing slash)

# The input bucket: label sets live under labels/; an upload in a folder below the input
# prefix selects the label set of that folder's name (moods/songs.csv -> labels/moods.json).
LABELS_PREFIX = "labels/"
LABEL_SET_SUFFIX = ".json"
# The uploads that start a run (any case), and whose name the result keeps: songs.tsv ->
# results/songs.classified.tsv, songs.jsonl -> .classified.jsonl; gzip input gives a plain
# result (songs.csv.gz -> .classified.csv).
INPUT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".csv.gz", ".tsv.gz", ".jsonl.gz", ".ndjson.gz")

# Function names as the state machine knows them (the ASL's ${<Name>FunctionArn}).
FUNCTION_NAMES = ("Split", "Classify", "Merge", "ReportFailure")
# Outside the ASL: the target of the rule on the state machine's execution status changes
# (FAILED, TIMED_OUT, ABORTED), for the endings its Catch cannot see.
CLEANUP_FUNCTION = "Cleanup"
ALL_FUNCTION_NAMES = (*FUNCTION_NAMES, CLEANUP_FUNCTION)
# The state machine invokes published versions (`<function arn>:<version>`), never $LATEST.

# Outputs of the deployed stack: `submit` and `status` find its resources by these keys and
# cannot work without the required ones (serve's emulated stack publishes those).
STACK_OUTPUTS = (
    "InputBucketName",
    "InputPrefix",
    "InputSuffix",
    "OutputBucketName",
    "StateMachineArn",
    "StateMachineConsoleUrl",
    "DashboardUrl",
    "AlarmTopicArn",
)
REQUIRED_STACK_OUTPUTS = ("InputBucketName", "OutputBucketName", "StateMachineArn")

# Environment of the functions (set by the stack, or by the local runner).
ENV_OUTPUT_BUCKET = "OUTPUT_BUCKET"
ENV_RANGE_BYTES = "RANGE_BYTES"
ENV_TEXT_COLUMN = "TEXT_COLUMN"
ENV_DELIMITER = "DELIMITER"
ENV_INPUT_PREFIX = "INPUT_PREFIX"
ENV_MODEL_DIR = "MODEL_DIR"
ENV_INTRA_OP_THREADS = "INTRA_OP_THREADS"
MODEL_ASSET_DIR = "model"  # the model directory's name inside the classify function's asset

METRICS_NAMESPACE = "LyricsClassifier"
SERVICE_NAME = "lyrics-classifier"

MIB = 1024 * 1024
LEAST_CONFIDENT_ROWS = 20  # the run report lists these for review
CONFIDENCE_BINS = 20  # the run report's confidence histogram
# Byte ranges: each range becomes one part of the result's multipart upload, and S3 needs
# every part but the last to be >= 5 MiB. A part is its range's bytes plus the appended
# columns, minus blank lines and CRs of CRLF endings, so ranges keep a margin above 5 MiB.
DEFAULT_RANGE_BYTES = 8 * MIB
MIN_RANGE_BYTES = 6 * MIB
MAX_PARTS = 10_000  # S3's limit on parts per multipart upload
PLANNED_MAX_PARTS = 9_000  # Split grows the range size past this many, so the limit is never met
