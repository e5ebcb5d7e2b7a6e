"""Every deploy-time setting: a CDK context key with a default.

The defaults live here and are repeated in cdk.json (a test keeps the two equal), so
`cdk synth -c key=value` or an edit of cdk.json changes a setting, and the stack never
reads a setting from anywhere else.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Node

from lyrics_classifier.contract import DEFAULT_RANGE_BYTES, INPUT_SUFFIXES, MIB, MIN_RANGE_BYTES
from lyrics_classifier.csvfile import parse_delimiter

REPO = Path(__file__).resolve().parents[1]

# key -> (default, one-line description for the README table)
DEFAULTS: dict[str, tuple[Any, str]] = {
    "stack_name": ("LyricsClassifier", "CloudFormation stack name"),
    "architecture": ("arm64", "Lambda architecture: `arm64` or `x86_64` (wheels are bundled to match)"),
    "model_dir": ("models/default", "model directory copied into the classify asset at `model/` (relative to the repo)"),
    "bundling": ("auto", "`auto`: pip on this machine, Docker if pip cannot run; `docker`: always the SAM build image"),
    # 1,769 MB buys exactly one vCPU, which the runtime uses with one onnxruntime thread
    # (bench/model_speed.py prints its CPU ms per lyric); more memory buys CPU the single thread
    # cannot use, less slows classification in proportion.
    "classify_memory_mb": (1769, "classify function memory (MB); CPU grows with memory (1,769 MB = 1 vCPU)"),
    # One 8 MiB range is ~5,600 lyrics of ~1.5 KB: well under a minute at one vCPU at the CPU
    # time per lyric bench/model_speed.py prints; the timeout keeps room for long lyrics (up to
    # 32 windows each) and slower CPUs.
    "classify_timeout_s": (600, "classify function timeout (seconds) for one byte range"),
    # No reservation by default: AWS keeps 100 of the account's concurrency unreserved, and a
    # new account's quota can be 10, so any reservation fails its first deploy. The Map's
    # MaxConcurrency caps a run, and throttled invocations wait (the ASL's patient retries).
    "classify_reserved_concurrency": (0, "reserved concurrency of classify (0 = unreserved, the default); reserving needs this + 100 unreserved in the account: `lyrics-classifier doctor` says what yours allows"),
    # Split's one pass reads the whole file: TLS and byte counting want a full vCPU.
    "split_memory_mb": (1769, "split function memory (MB); its one pass over the file is CPU-bound"),
    "split_timeout_s": (900, "split function timeout (seconds)"),
    "merge_memory_mb": (512, "merge function memory (MB)"),
    "merge_timeout_s": (300, "merge function timeout (seconds)"),
    "report_failure_memory_mb": (256, "report-failure function memory (MB)"),
    "report_failure_timeout_s": (60, "report-failure function timeout (seconds)"),
    "cleanup_memory_mb": (256, "cleanup function memory (MB): the report of a run that timed out or was stopped"),
    "cleanup_timeout_s": (60, "cleanup function timeout (seconds)"),
    "workflow_reserved_concurrency": (0, "reserved concurrency of split, merge, report-failure and cleanup, each (0 = unreserved)"),
    "map_max_concurrency": (50, "Distributed Map MaxConcurrency: byte ranges classified at once per execution"),
    "range_mb": (DEFAULT_RANGE_BYTES // MIB, "MiB of input per byte range (one Classify invocation, one part of the result's upload); at least 6"),
    "execution_timeout_s": (43200, "timeout of a whole execution (seconds); an alarm fires when one times out"),
    "text_column": ("", "name of the lyrics column; empty = first of lyrics/lyric/text"),
    "input_prefix": ("", "only objects under this key prefix start a run"),
    "input_suffix": (",".join(INPUT_SUFFIXES), "only objects whose key ends with one of these suffixes (comma-separated), in any case, start a run (`.csv` matches `SONGS.CSV`; with an `input_prefix`, lower or upper case)"),
    "delimiter": ("", "field delimiter of the uploads: `comma`, `semicolon`, `tab` or `pipe`; empty = per file (Excel's `sep=` line, else the header's); an upload's `delimiter` metadata wins"),
    "work_area_expiry_days": (7, "days after which `runs/` (manifests, part counts, claims) in the output bucket expire"),
    "input_noncurrent_expiry_days": (30, "days after which overwritten/deleted input versions expire"),
    "output_noncurrent_expiry_days": (30, "days after which replaced/deleted results and reports expire"),
    "access_log_expiry_days": (90, "days after which S3 server access logs expire"),
    "log_retention_days": (30, "CloudWatch Logs retention of the functions and the state machine (days)"),
    "log_level": ("INFO", "LOG_LEVEL of the functions (DEBUG, INFO, WARN, ERROR)"),
    "alarm_email": ("", "e-mail address subscribed to the alarm topic; empty = no subscription"),
    "removal_policy": ("retain", "`retain` keeps the buckets and log groups on `cdk destroy`; `destroy` empties and deletes them"),
}

_ARCHITECTURES = ("arm64", "x86_64")
_LOG_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
# CloudWatch Logs accepts only these retention values (days -> CDK's name for them).
_RETENTIONS = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH",
    60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS", 150: "FIVE_MONTHS", 180: "SIX_MONTHS",
    365: "ONE_YEAR", 400: "THIRTEEN_MONTHS", 545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS",
    1096: "THREE_YEARS", 1827: "FIVE_YEARS", 2192: "SIX_YEARS", 2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS", 3288: "NINE_YEARS", 3653: "TEN_YEARS",
}  # fmt: skip


class SettingsError(ValueError):
    """A context value that cannot work; raised at synth time with the key named."""


@dataclasses.dataclass(frozen=True)
class Settings:
    stack_name: str
    architecture: str
    model_dir: Path
    bundling: str
    classify_memory_mb: int
    classify_timeout_s: int
    classify_reserved_concurrency: int
    split_memory_mb: int
    split_timeout_s: int
    merge_memory_mb: int
    merge_timeout_s: int
    report_failure_memory_mb: int
    report_failure_timeout_s: int
    cleanup_memory_mb: int
    cleanup_timeout_s: int
    workflow_reserved_concurrency: int
    map_max_concurrency: int
    range_mb: int
    execution_timeout_s: int
    text_column: str
    input_prefix: str
    input_suffix: str
    delimiter: str
    work_area_expiry_days: int
    input_noncurrent_expiry_days: int
    output_noncurrent_expiry_days: int
    access_log_expiry_days: int
    log_retention_days: int
    log_level: str
    alarm_email: str
    removal_policy: str

    @classmethod
    def from_context(cls, node: Node) -> "Settings":
        values: dict[str, Any] = {}
        for key, (default, _doc) in DEFAULTS.items():
            raw = node.try_get_context(key)
            values[key] = _coerce(key, default if raw is None else raw, default)
        model_dir = Path(values["model_dir"])
        values["model_dir"] = model_dir if model_dir.is_absolute() else REPO / model_dir
        settings = cls(**values)
        settings._check()
        return settings

    def _check(self) -> None:
        def fail(key: str, why: str) -> None:
            raise SettingsError(f"context `{key}`={getattr(self, key)!r}: {why}")

        if self.architecture not in _ARCHITECTURES:
            fail("architecture", f"must be one of {', '.join(_ARCHITECTURES)}")
        if self.bundling not in ("auto", "docker"):
            fail("bundling", "must be `auto` or `docker`")
        if self.removal_policy not in ("retain", "destroy"):
            fail("removal_policy", "must be `retain` or `destroy`")
        if self.log_level not in _LOG_LEVELS:
            fail("log_level", f"must be one of {', '.join(_LOG_LEVELS)}")
        if self.log_retention_days not in _RETENTIONS:
            fail("log_retention_days", f"CloudWatch Logs accepts only {tuple(_RETENTIONS)}")
        for key in ("classify_memory_mb", "split_memory_mb", "merge_memory_mb", "report_failure_memory_mb",
                    "cleanup_memory_mb"):
            if not 128 <= getattr(self, key) <= 10240:
                fail(key, "Lambda memory must be 128..10240 MB")
        for key in ("classify_timeout_s", "split_timeout_s", "merge_timeout_s", "report_failure_timeout_s",
                    "cleanup_timeout_s"):
            if not 1 <= getattr(self, key) <= 900:
                fail(key, "Lambda timeout must be 1..900 seconds")
        for key in ("classify_reserved_concurrency", "workflow_reserved_concurrency"):
            if getattr(self, key) < 0:
                fail(key, "must be >= 0 (0 = unreserved)")
        if not 1 <= self.map_max_concurrency <= 10000:
            fail("map_max_concurrency", "Distributed Map MaxConcurrency must be 1..10000")
        if self.range_mb * MIB < MIN_RANGE_BYTES:
            fail("range_mb", f"must be >= {MIN_RANGE_BYTES // MIB} (S3's 5 MiB part minimum, with a margin)")
        if not 600 <= self.execution_timeout_s <= 7 * 24 * 3600:
            fail("execution_timeout_s", "must be 600..604800 seconds (10 minutes to 7 days)")
        if self.work_area_expiry_days * 86400 <= self.execution_timeout_s:
            fail("work_area_expiry_days", "must outlast the execution timeout (the work area holds a running run)")
        for key in ("work_area_expiry_days", "input_noncurrent_expiry_days", "output_noncurrent_expiry_days",
                    "access_log_expiry_days"):
            if getattr(self, key) < 1:
                fail(key, "must be >= 1 day")
        if not self.input_suffix and not self.input_prefix:
            pass  # every object starts a run: allowed, the bucket is dedicated to inputs
        if "*" in self.input_prefix + self.input_suffix:
            fail("input_prefix", "`*` is not allowed in input_prefix / input_suffix (EventBridge wildcard)")
        if self.delimiter:
            try:
                parse_delimiter(self.delimiter)
            except ValueError as exc:
                fail("delimiter", str(exc))
        if self.alarm_email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", self.alarm_email):
            fail("alarm_email", "is not an e-mail address")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,60}", self.stack_name):
            fail("stack_name", "must start with a letter and contain only letters, digits and '-' (max 61)")

    @property
    def suffixes(self) -> list[str]:
        """input_suffix as a list (it may name several, comma-separated)."""
        return [s.strip() for s in self.input_suffix.split(",") if s.strip()]

    @property
    def destroy_on_delete(self) -> bool:
        return self.removal_policy == "destroy"

    @property
    def removal(self) -> RemovalPolicy:
        """What `cdk destroy` does with the buckets and log groups."""
        return RemovalPolicy.DESTROY if self.destroy_on_delete else RemovalPolicy.RETAIN

    @property
    def log_retention(self) -> logs.RetentionDays:
        return logs.RetentionDays[_RETENTIONS[self.log_retention_days]]


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Context from `-c key=value` arrives as a string; cdk.json gives JSON types."""
    if isinstance(default, bool):
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    if isinstance(default, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"context `{key}`={value!r}: must be an integer") from None
    return str(value)
