"""The four functions the ASL names, declared from one table (FUNCTION_SPECS), each with its
own role and log group, and the least-privilege S3 grants of each."""

from __future__ import annotations

import dataclasses
from typing import Callable

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from .bundling import RUNTIME, AssetSpec, lambda_code
from .logical_ids import Group
from .nag import acknowledge, checkov_skip, ref
from .settings import REPO, Settings
from .storage import Storage

from lyrics_classifier.contract import (
    ENV_INPUT_PREFIX,
    ENV_MODEL_DIR,
    ENV_OUTPUT_BUCKET,
    ENV_RANGE_BYTES,
    ENV_TEXT_COLUMN,
    FAILED_PREFIX,
    ALL_FUNCTION_NAMES,
    CLEANUP_FUNCTION,
    ENV_DELIMITER,
    FUNCTION_NAMES,
    LABELS_PREFIX,
    METRICS_NAMESPACE,
    MIB,
    MODEL_ASSET_DIR,
    RESULTS_PREFIX,
    SERVICE_NAME,
    WORK_PREFIX,
)

XRAY_REASON = (
    "Only the X-Ray write actions added by active tracing (xray:PutTraceSegments, "
    "PutTelemetryRecords, GetSamplingRules, GetSamplingTargets) use Resource '*': X-Ray "
    "supports no resource-level permissions for them."
)
LOG_KMS_REASON = (
    "Logs carry keys, counts and error messages, never lyrics (no row text is logged), and "
    "CloudWatch Logs encrypts them at rest by default; a customer KMS key adds cost and a key "
    "policy to manage for no data that needs it."
)
WORK_AREA_REASON = (
    f"Scoped to the {WORK_PREFIX} work-area prefix of the output bucket: object keys below it are "
    f"named per execution ({WORK_PREFIX}<execution name>/...) and cannot be known at deploy time."
)


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    """One function of the workflow. `name` is its construct id and the ASL's
    `${<name>FunctionArn}`; `key` names its handler module (lyrics_classifier.handlers.<key>)
    and its settings (`<key>_memory_mb`, `<key>_timeout_s`)."""

    name: str
    key: str
    description: str
    asset: str  # "workflow" (boto3 + the workflow core) or "classify" (+ onnxruntime and the model)
    reserved_setting: str = "workflow_reserved_concurrency"  # its value 0 = unreserved
    environment: Callable[[Settings], dict[str, str]] = lambda s: {}

    @property
    def handler(self) -> str:
        return f"lyrics_classifier.handlers.{self.key}.handler"

    def memory_mb(self, settings: Settings) -> int:
        return getattr(settings, f"{self.key}_memory_mb")

    def timeout_s(self, settings: Settings) -> int:
        return getattr(settings, f"{self.key}_timeout_s")

    def reserved(self, settings: Settings) -> int:
        return getattr(settings, self.reserved_setting)


FUNCTION_SPECS = (
    FunctionSpec(
        "Split",
        "split",
        "lyrics-classifier: index the uploaded CSV into byte ranges (a manifest under runs/)",
        "workflow",
        environment=lambda s: {ENV_RANGE_BYTES: str(s.range_mb * MIB), ENV_TEXT_COLUMN: s.text_column,
                               ENV_DELIMITER: s.delimiter,
                               ENV_INPUT_PREFIX: s.input_prefix},
    ),
    FunctionSpec(
        "Classify",
        "classify",
        "lyrics-classifier: classify one byte range with the ONNX model into one part of the result",
        "classify",
        reserved_setting="classify_reserved_concurrency",
        environment=lambda s: {ENV_MODEL_DIR: f"/var/task/{MODEL_ASSET_DIR}"},
    ),
    FunctionSpec(
        "Merge",
        "merge",
        "lyrics-classifier: complete the result's upload into results/<input name>.classified.csv",
        "workflow",
    ),
    FunctionSpec(
        "ReportFailure",
        "report_failure",
        "lyrics-classifier: write failed/<input name>.error.json with the reason",
        "workflow",
    ),
    FunctionSpec(
        "Cleanup",
        "cleanup",
        "lyrics-classifier: after a run timed out, was stopped or failed in its failure path, "
        "write its failure report, abort its upload, release its claim",
        "workflow",
    ),
)
if tuple(spec.name for spec in FUNCTION_SPECS) != ALL_FUNCTION_NAMES:
    raise ValueError(f"FUNCTION_SPECS differ from contract.ALL_FUNCTION_NAMES {ALL_FUNCTION_NAMES}")


class Functions(Group):
    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings, storage: Storage) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.classify_asset = AssetSpec(
            "classify", REPO / "lambdas" / "requirements-classify.txt", settings.architecture, model_dir=settings.model_dir
        )
        assets = {
            "workflow": AssetSpec("workflow", REPO / "lambdas" / "requirements-workflow.txt", settings.architecture),
            "classify": self.classify_asset,
        }
        code = {name: lambda_code(spec, local=settings.bundling == "auto") for name, spec in assets.items()}
        self.by_name: dict[str, lambda_.Function] = {
            spec.name: self._function(spec, code[spec.asset], storage) for spec in FUNCTION_SPECS
        }
        # The state machine invokes these published versions (its definition names them), so a
        # deploy during a run changes neither the code nor the model of the run's invocations.
        self.versions: dict[str, lambda_.IVersion] = {name: self.by_name[name].current_version for name in FUNCTION_NAMES}
        self.classify = self.by_name["Classify"]
        self.cleanup = self.by_name[CLEANUP_FUNCTION]  # EventBridge's target, not the state machine's
        self._grant(storage)

    def _function(self, spec: FunctionSpec, code: lambda_.Code, storage: Storage) -> lambda_.Function:
        s = self.settings
        log_group = logs.LogGroup(self, f"{spec.name}Logs", retention=s.log_retention, removal_policy=s.removal)
        # An own role instead of the default one with AWSLambdaBasicExecutionRole
        # (logs:* on every log group): this role may write to its own log group only.
        role = iam.Role(
            self,
            f"{spec.name}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"lyrics-classifier {spec.name} function",
        )
        log_group.grant_write(role)
        reserved = spec.reserved(s)
        fn = lambda_.Function(
            self,
            spec.name,
            description=spec.description,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64 if s.architecture == "arm64" else lambda_.Architecture.X86_64,
            handler=spec.handler,
            code=code,
            memory_size=spec.memory_mb(s),
            timeout=Duration.seconds(spec.timeout_s(s)),
            reserved_concurrent_executions=reserved or None,
            role=role,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel[s.log_level],
            system_log_level_v2=lambda_.SystemLogLevel.INFO,  # keeps REPORT lines: duration, max memory used
            tracing=lambda_.Tracing.ACTIVE,
            # A deploy publishes a new version; the old one stays for the executions still running it.
            current_version_options=lambda_.VersionOptions(removal_policy=RemovalPolicy.RETAIN),
            environment={
                "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "LOG_LEVEL": s.log_level,
                ENV_OUTPUT_BUCKET: storage.output_bucket.bucket_name,
                **spec.environment(s),
            },
        )
        acknowledge(role, "AwsSolutions-IAM5[Resource::*]", XRAY_REASON)
        checkov_skip(log_group, "CKV_AWS_158", LOG_KMS_REASON)
        checkov_skip(fn, "CKV_AWS_116", "Step Functions invokes the workflow's functions synchronously and "
                     "retries or catches their errors; Cleanup's asynchronous invocations come from an "
                     "EventBridge rule whose target has its own retries and dead-letter queue.")
        checkov_skip(fn, "CKV_AWS_117", "The functions talk only to S3 through its public "
                     "endpoint with IAM and TLS; a VPC would add NAT gateway or endpoint costs "
                     "and no access control beyond the bucket policies.")
        checkov_skip(fn, "CKV_AWS_173", "The environment holds bucket names and settings only, no "
                     "secrets; Lambda encrypts it at rest with its own key by default.")
        if not reserved:
            checkov_skip(fn, "CKV_AWS_115", "Unreserved by default: AWS keeps 100 of an account's concurrency "
                         "unreserved and a new account's quota can be 10, so any reservation fails the first "
                         "deploy. The Map's MaxConcurrency caps a run and throttled invocations wait (about 2 "
                         f"hours of retries); {spec.reserved_setting} reserves some on a large account.")
        acknowledge(
            fn,
            "AwsSolutions-L1",
            "Python 3.12 is pinned on purpose: the asset's onnxruntime, tokenizers and numpy "
            "wheels are installed for cp312 (lambdas/requirements-*.txt) and tested there; "
            "move runtime and pins together.",
        )
        return fn

    def _grant(self, storage: Storage) -> None:
        """Least privilege, per function and prefix."""
        prefix = self.settings.input_prefix
        split, classify, merge, report_failure, cleanup = (self.by_name[name] for name in ALL_FUNCTION_NAMES)
        input_objects = storage.input_objects(prefix)
        work, results, failed = (storage.output_objects(p) for p in (WORK_PREFIX, RESULTS_PREFIX, FAILED_PREFIX))
        # The input is read by version (GetObjectVersion): a run reads the upload that started it.
        read_input = ["s3:GetObject", "s3:GetObjectVersion"]
        grants: dict[lambda_.Function, list[tuple[list[str], str]]] = {
            split: [
                (read_input, input_objects),
                # the label set an upload's folder selects (labels/<folder>.json), copied into the work area
                (["s3:GetObject"], storage.input_objects(LABELS_PREFIX)),
                # the claim marker (If-None-Match), run.json, the manifest, a UTF-16 input's
                # transcoded copy (multipart); DeleteObject: it releases its claim when it fails
                (["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:DeleteObject"], work),
                (["s3:PutObject"], results),  # CreateMultipartUpload of the result
            ],
            classify: [
                (read_input, input_objects),  # a ranged GET of the event's version
                (["s3:GetObject", "s3:PutObject"], work),  # the transcoded copy; its stats or error
                (["s3:PutObject"], results),  # UploadPart of its range
            ],
            merge: [
                (read_input, input_objects),  # HeadObject of the current version: a newer upload?
                (["s3:GetObject"], work),  # run.json, the manifest, the ranges' stats and errors
                # (results: GetObject also answers HeadObject of a result a first Merge completed)
                (["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:GetObject",
                  "s3:DeleteObject"], results),  # fmt: skip
                (["s3:GetObject", "s3:DeleteObject"], failed),  # an older version's failure report
            ],
            report_failure: [
                (["s3:GetObject"], input_objects),  # HeadObject of the current version
                # releases the claim; a superseded run's report goes into its work area
                (["s3:PutObject", "s3:DeleteObject", "s3:GetObject"], work),
                # aborts the upload; removes an older version's result and summary
                (["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject"], results),
                (["s3:PutObject", "s3:DeleteObject"], failed),
            ],
            # ReportFailure's work, for the endings the Catch never sees; it first reads
            # whether ReportFailure already wrote this run's report
            cleanup: [
                (["s3:GetObject"], input_objects),
                (["s3:PutObject", "s3:DeleteObject", "s3:GetObject"], work),
                (["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject"], results),
                (["s3:PutObject", "s3:DeleteObject", "s3:GetObject"], failed),
            ],
        }
        for fn, statements in grants.items():
            for actions, resource in statements:
                fn.add_to_role_policy(iam.PolicyStatement(actions=actions, resources=[resource]))
        # Classify reads only what Split found: it never needs to tell a missing key from a forbidden one.
        for fn in (split, merge, report_failure, cleanup):
            _allow_list(fn, storage.input_bucket)
            _allow_list(fn, storage.output_bucket)

        out = ref(self, storage.output_bucket, "Arn")
        inp = ref(self, storage.input_bucket, "Arn")
        for fn in grants:
            acknowledge(fn.role, f"AwsSolutions-IAM5[Resource::{out}/{WORK_PREFIX}*]", WORK_AREA_REASON)
            acknowledge(
                fn.role,
                f"AwsSolutions-IAM5[Resource::{inp}/{prefix}*]",
                "The uploaded CSV named by the triggering event: any object under the configured "
                "input prefix of the input bucket, and nothing else.",
            )
            acknowledge(
                fn.role,
                f"AwsSolutions-IAM5[Resource::{out}/{RESULTS_PREFIX}*]",
                "results/<input name>.classified.csv (its multipart upload) and .summary.json; the "
                "input name is only known at run time, so the grant is the results/ prefix.",
            )
        acknowledge(
            split.role,
            f"AwsSolutions-IAM5[Resource::{inp}/{LABELS_PREFIX}*]",
            "The label sets under labels/ of the input bucket: an upload's folder names the one it "
            "uses, so which is only known at run time. Read only.",
        )
        for fn in (merge, report_failure, cleanup):
            acknowledge(
                fn.role,
                f"AwsSolutions-IAM5[Resource::{out}/{FAILED_PREFIX}*]",
                "failed/<input name>.error.json; the input name is only known at run time, so the "
                "grant is the failed/ prefix.",
            )


def _allow_list(fn: lambda_.Function, bucket: s3.Bucket) -> None:
    """s3:ListBucket, so that HeadObject/GetObject of a missing key answer 404, not 403.

    The workflow tells "missing" from "forbidden" (Merge verifies that every part
    exists; Split retries a URL-encoded key decoded). S3 answers 404 only to callers
    with ListBucket on the bucket, and an `s3:prefix` condition would not help: object
    requests carry no prefix, so a conditional grant never applies to them.
    """
    fn.add_to_role_policy(iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn]))
