"""The state machine, defined by the one ASL file with the stack's values substituted in,
its permissions, and the S3 -> EventBridge trigger that starts it for every upload."""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, Aws, Duration, Fn, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from .functions import LOG_KMS_REASON, WORK_AREA_REASON, Functions
from .logical_ids import Group
from .nag import acknowledge, checkov_skip, ref, render
from .settings import REPO, Settings
from .storage import Storage

from lyrics_classifier.contract import FUNCTION_NAMES, MAP_RESULTS_PREFIX, WORK_PREFIX

ASL_FILE = REPO / "lambdas" / "lyrics_classifier" / "statemachine" / "workflow.asl.json"  # package data: `run` executes it too


class Workflow(Group):
    def __init__(
        self, scope: Construct, construct_id: str, *, settings: Settings, storage: Storage, functions: Functions
    ) -> None:
        super().__init__(scope, construct_id)
        self.state_machine_name = f"{Stack.of(self).stack_name}-Workflow"
        self.definition_substitutions = {
            **{f"{name}FunctionArn": version.function_arn for name, version in functions.versions.items()},
            "MaxConcurrency": str(settings.map_max_concurrency),
            "ExecutionTimeoutSeconds": str(settings.execution_timeout_s),
            "WorkBucketName": storage.output_bucket.bucket_name,
            "MapResultsPrefix": MAP_RESULTS_PREFIX,
        }
        self.log_group = logs.LogGroup(
            self,
            "WorkflowLogs",
            # The /aws/vendedlogs/ prefix keeps Step Functions' log delivery from growing
            # the account's CloudWatch Logs resource policy with every state machine. The log
            # group outlives a rollback and `cdk destroy` (retained), so its name ends with the
            # stack's own id: a fixed name would make the next deploy fail with "already exists".
            log_group_name=Fn.join("", [f"/aws/vendedlogs/states/{self.state_machine_name}-", stack_id_suffix()]),
            retention=settings.log_retention,
            removal_policy=settings.removal,
        )
        checkov_skip(self.log_group, "CKV_AWS_158", LOG_KMS_REASON)
        self.state_machine = sfn.StateMachine(
            self,
            "Workflow",
            state_machine_name=self.state_machine_name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_file(str(ASL_FILE)),
            definition_substitutions=self.definition_substitutions,
            logs=sfn.LogOptions(
                destination=self.log_group,
                level=sfn.LogLevel.ALL,
                include_execution_data=True,  # keys and counts only: no lyrics travel through the state
            ),
            tracing_enabled=True,
        )
        self._grant(storage, functions)
        self._trigger(settings, storage)
        self._clean_up_uncaught_endings(functions)

    def _grant(self, storage: Storage, functions: Functions) -> None:
        role = self.state_machine.role
        invoked = {name: functions.by_name[name] for name in FUNCTION_NAMES}  # the ASL's, not Cleanup
        # Published versions only (ARN:*), never $LATEST: each execution calls the versions its
        # definition named when it started, while a deploy publishes new ones for new runs
        # (CDK retains the old versions, so a running execution keeps its code and model).
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"], resources=[f"{fn.function_arn}:*" for fn in invoked.values()]
            )
        )
        for name, fn in invoked.items():
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::{ref(self, fn, 'Arn')}:*]",
                f"Invoke of the {name} function's published versions (ARN:*): an execution calls the "
                "version its definition names, and running executions keep older ones.",
            )
        # The Distributed Map's ItemReader reads the manifest from the work area and its
        # ResultWriter writes the children's results there (as a multipart upload when large).
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"],
                resources=[storage.output_objects(WORK_PREFIX)],
            )
        )
        # STANDARD child executions of a Distributed Map are executions of this state
        # machine. CDK grants this only when it builds the Map; the definition comes from
        # a file, so grant it here, with the ARN built from the fixed name (no cycle).
        stack = Stack.of(self)
        own_arn = stack.format_arn(
            service="states",
            resource="stateMachine",
            resource_name=self.state_machine_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        executions_arn = stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{self.state_machine_name}/*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        role.add_to_principal_policy(iam.PolicyStatement(actions=["states:StartExecution"], resources=[own_arn]))
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["states:DescribeExecution", "states:StopExecution", "states:RedriveExecution"],
                resources=[executions_arn],
            )
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "Resource '*' only for actions without resource-level permissions: Step Functions "
            "log delivery (logs:CreateLogDelivery, GetLogDelivery, UpdateLogDelivery, "
            "DeleteLogDelivery, ListLogDeliveries, PutResourcePolicy, DescribeResourcePolicies, "
            "DescribeLogGroups) and X-Ray tracing (xray:PutTraceSegments, PutTelemetryRecords, "
            "GetSamplingRules, GetSamplingTargets).",
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{ref(self, storage.output_bucket, 'Arn')}/{WORK_PREFIX}*]",
            "The Distributed Map's ItemReader reads runs/<execution name>/manifest.json and its "
            "ResultWriter writes runs/map-results/<map run id>/. " + WORK_AREA_REASON,
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{render(self, executions_arn)}]",
            "Describe/stop/redrive the Distributed Map's child executions, which are executions "
            "of this state machine only (execution:<this name>/<map run>:<uuid>) with names "
            "generated at run time.",
        )

    def _trigger(self, settings: Settings, storage: Storage) -> None:
        self.trigger_dlq = self._dead_letter_queue(
            "TriggerDeadLetters", "upload events (bucket, key)",
            "the EventBridge trigger (uploads whose execution could not be started)",
        )
        self.trigger = events.Rule(
            self,
            "OnUpload",
            description="Start the lyrics-classifier workflow for every CSV uploaded to the input bucket",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [storage.input_bucket.bucket_name]},
                    "object": {"key": key_pattern(settings.input_prefix, settings.suffixes)},
                },
            ),
            targets=[
                targets.SfnStateMachine(
                    self.state_machine,
                    dead_letter_queue=self.trigger_dlq,
                    retry_attempts=20,
                    max_event_age=Duration.hours(6),
                )
            ],
        )

    def _dead_letter_queue(self, construct_id: str, messages: str, of_what: str) -> sqs.Queue:
        """An encrypted, TLS-only queue keeping 14 days of what `of_what` could not deliver."""
        queue = sqs.Queue(
            self,
            construct_id,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        checkov_skip(queue, "CKV_AWS_27", "The queue is encrypted at rest with SQS-managed "
                     f"keys (SSE-SQS); its messages are {messages}, no lyrics.")
        acknowledge(queue, "AwsSolutions-SQS3",
                    f"This queue is itself the dead-letter queue of {of_what}; an alarm watches it.")
        return queue

    def _clean_up_uncaught_endings(self, functions: Functions) -> None:
        """The ASL's Catch never sees an execution's own timeout, a StopExecution or a failure
        inside ReportFailure: a rule on the execution status changes runs Cleanup, which writes
        the failure report, aborts the upload and releases the claim (idempotently)."""
        self.cleanup_dlq = self._dead_letter_queue(
            "CleanupDeadLetters", "execution status events (names, keys)",
            "the cleanup rule's target (execution endings whose cleanup could not be delivered)",
        )
        self.cleanup_rule = events.Rule(
            self,
            "OnUncaughtEnding",
            description="Clean up after a lyrics-classifier execution that timed out, was stopped or failed",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={
                    "stateMachineArn": [self.state_machine.state_machine_arn],
                    "status": ["FAILED", "TIMED_OUT", "ABORTED"],
                },
            ),
            targets=[
                targets.LambdaFunction(
                    functions.cleanup,
                    dead_letter_queue=self.cleanup_dlq,
                    retry_attempts=20,
                    max_event_age=Duration.hours(6),
                )
            ],
        )


def stack_id_suffix() -> str:
    """The UUID at the end of the stack's id (`arn:...:stack/<name>/<uuid>`): new for every
    creation of the stack, the same for every update of it."""
    return Fn.select(2, Fn.split("/", Aws.STACK_ID))


def key_pattern(prefix: str, suffixes: list[str]) -> list[Any]:
    """The trigger's object-key filter: under `prefix`, ending with one of `suffixes` in any
    case (`.csv` matches `SONGS.CSV`). EventBridge cannot AND a prefix with a case-insensitive
    suffix on one field, so with a prefix each suffix matches in lower or upper case (two
    wildcard patterns: every mix of cases would be 2^letters of them)."""
    if not suffixes:
        return [{"prefix": prefix}] if prefix else [{"exists": True}]
    if not prefix:
        return [{"suffix": {"equals-ignore-case": suffix}} for suffix in suffixes]
    cases = dict.fromkeys(variant for suffix in suffixes for variant in (suffix.lower(), suffix.upper()))
    return [{"wildcard": f"{prefix}*{variant}"} for variant in cases]  # settings refuse `*`
