"""The one stack: buckets, four functions, the state machine from the ASL file, the S3 ->
EventBridge trigger, alarms, a dashboard and the outputs the CLI (`submit`, `status`) reads."""

from __future__ import annotations


from aws_cdk import (
    ArnFormat,
    Aws,
    CfnOutput,
    Duration,
    RemovalPolicy,
    Stack,
)
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from .bundling import RUNTIME, AssetSpec, lambda_code
from .nag import acknowledge, checkov_skip, ref, render
from .settings import REPO, Settings

from lyrics_classifier.contract import (
    ENV_INPUT_PREFIX,
    ENV_MODEL_DIR,
    ENV_OUTPUT_BUCKET,
    ENV_RANGE_BYTES,
    ENV_TEXT_COLUMN,
    FAILED_PREFIX,
    FUNCTION_NAMES,
    LABELS_PREFIX,
    MAP_RESULTS_PREFIX,
    MODEL_ASSET_DIR,
    METRICS_NAMESPACE,
    MIB,
    RESULTS_PREFIX,
    SERVICE_NAME,
    WORK_PREFIX,
)

ASL_FILE = REPO / "lambdas" / "lyrics_classifier" / "statemachine" / "workflow.asl.json"  # package data: `run` executes it too
# Output keys: `lyrics-classifier submit/status` finds the stack's resources by these.
OUTPUT_KEYS = (
    "InputBucketName",
    "InputPrefix",
    "InputSuffix",
    "OutputBucketName",
    "StateMachineArn",
    "StateMachineConsoleUrl",
    "DashboardUrl",
    "AlarmTopicArn",
)

_XRAY_REASON = (
    "Only the X-Ray write actions added by active tracing (xray:PutTraceSegments, "
    "PutTelemetryRecords, GetSamplingRules, GetSamplingTargets) use Resource '*': X-Ray "
    "supports no resource-level permissions for them."
)
_LOG_KMS_REASON = (
    "Logs carry keys, counts and error messages, never lyrics (no row text is logged), and "
    "CloudWatch Logs encrypts them at rest by default; a customer KMS key adds cost and a key "
    "policy to manage for no data that needs it."
)
_WORK_AREA_REASON = (
    f"Scoped to the {WORK_PREFIX} work-area prefix of the output bucket: object keys below it are "
    f"named per execution ({WORK_PREFIX}<execution name>/...) and cannot be known at deploy time."
)


class LyricsClassifierStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        self.state_machine_name = f"{self.stack_name}-Workflow"
        self.versions: dict[str, lambda_.IVersion] = {}  # function name -> the version the state machine invokes
        removal = RemovalPolicy.DESTROY if settings.destroy_on_delete else RemovalPolicy.RETAIN

        self._buckets(removal)
        self._functions(removal)
        self._state_machine(removal)
        self._trigger()
        self._operations()
        self._outputs()

    # ---------------------------------------------------------------- storage
    def _bucket(self, construct_id: str, removal: RemovalPolicy, **props) -> s3.Bucket:
        return s3.Bucket(
            self,
            construct_id,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=removal,
            auto_delete_objects=self.settings.destroy_on_delete,
            **props,
        )

    def _buckets(self, removal: RemovalPolicy) -> None:
        s = self.settings
        self.access_logs = self._bucket(
            "AccessLogs",
            removal,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(s.access_log_expiry_days))],
        )
        # No access logging on the access-log bucket itself (logging into itself would loop);
        # cdk-nag's S1 knows a log destination bucket and raises nothing for it.
        checkov_skip(self.access_logs, "CKV_AWS_18", "This is the access-log bucket itself: logging "
                     "its own requests into itself would loop.")
        checkov_skip(self.access_logs, "CKV_AWS_21", "Access logs are written once by S3 and expire "
                     "after access_log_expiry_days; nothing in this bucket is ever overwritten.")
        self.input_bucket = self._bucket(
            "Input",
            removal,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="input/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-old-input-versions",
                    noncurrent_version_expiration=Duration.days(s.input_noncurrent_expiry_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
        )
        # EventBridge notifications as a plain CloudFormation property: the L2
        # `event_bridge_enabled` adds a notifications custom resource (an extra Lambda).
        cfn_input: s3.CfnBucket = self.input_bucket.node.default_child  # type: ignore[assignment]
        cfn_input.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(event_bridge_enabled=True)
        )
        self.output_bucket = self._bucket(
            "Output",
            removal,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="output/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-work-area",
                    prefix=WORK_PREFIX,
                    expiration=Duration.days(s.work_area_expiry_days),
                ),
                s3.LifecycleRule(
                    # A result's multipart upload lives as long as its run: abort only after
                    # the longest execution could have ended.
                    id="abort-incomplete-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(-(-s.execution_timeout_s // 86400) + 1),
                ),
                s3.LifecycleRule(
                    id="expire-replaced-results",
                    noncurrent_version_expiration=Duration.days(s.output_noncurrent_expiry_days),
                    expired_object_delete_marker=True,
                ),
            ],
            # Re-uploads replace results and a newer failure removes an older result:
            # versions keep what was replaced recoverable for output_noncurrent_expiry_days.
            versioned=True,
        )
        if s.destroy_on_delete:
            provider = self.node.try_find_child("Custom::S3AutoDeleteObjectsCustomResourceProvider")
            if provider is not None:
                acknowledge(
                    provider,
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
                    "CDK's own auto-delete-objects provider (removal_policy=destroy only): it needs "
                    "nothing but log writing, which is what this AWS managed policy grants.",
                )

    def output_objects(self, prefix: str) -> str:
        return self.output_bucket.arn_for_objects(f"{prefix}*")

    # -------------------------------------------------------------- functions
    def _function(
        self,
        construct_id: str,
        *,
        handler: str,
        description: str,
        code: lambda_.Code,
        memory: int,
        timeout: int,
        reserved: int,
        environment: dict[str, str],
        removal: RemovalPolicy,
    ) -> lambda_.Function:
        s = self.settings
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            retention=_retention(s.log_retention_days),
            removal_policy=removal,
        )
        # An own role instead of the default one with AWSLambdaBasicExecutionRole
        # (logs:* on every log group): this role may write to its own log group only.
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"lyrics-classifier {construct_id} function",
        )
        log_group.grant_write(role)
        fn = lambda_.Function(
            self,
            construct_id,
            description=description,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64 if s.architecture == "arm64" else lambda_.Architecture.X86_64,
            handler=handler,
            code=code,
            memory_size=memory,
            timeout=Duration.seconds(timeout),
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
                ENV_OUTPUT_BUCKET: self.output_bucket.bucket_name,
                **environment,
            },
        )
        # The state machine invokes this published version (its definition names it), so a
        # deploy during a run changes neither the code nor the model of the run's invocations.
        self.versions[construct_id] = fn.current_version
        acknowledge(role, "AwsSolutions-IAM5[Resource::*]", _XRAY_REASON)
        checkov_skip(log_group, "CKV_AWS_158", _LOG_KMS_REASON)
        checkov_skip(fn, "CKV_AWS_116", "Step Functions invokes every function synchronously and "
                     "retries or catches its errors; a DLQ applies only to asynchronous invocations.")
        checkov_skip(fn, "CKV_AWS_117", "The functions talk only to S3 through its public "
                     "endpoint with IAM and TLS; a VPC would add NAT gateway or endpoint costs "
                     "and no access control beyond the bucket policies.")
        checkov_skip(fn, "CKV_AWS_173", "The environment holds bucket names and settings only, no "
                     "secrets; Lambda encrypts it at rest with its own key by default.")
        if not reserved:
            checkov_skip(fn, "CKV_AWS_115", "Runs once per upload (or once per failure), a few "
                         "invocations per run; workflow_reserved_concurrency reserves some if wanted, "
                         "but by default it would only take capacity from the account's pool.")
        acknowledge(
            fn,
            "AwsSolutions-L1",
            "Python 3.12 is pinned on purpose: the asset's onnxruntime, tokenizers and numpy "
            "wheels are installed for cp312 (lambdas/requirements-*.txt) and tested there; "
            "move runtime and pins together.",
        )
        return fn

    def _functions(self, removal: RemovalPolicy) -> None:
        s = self.settings
        workflow_code = lambda_code(
            AssetSpec("workflow", REPO / "lambdas" / "requirements-workflow.txt", s.architecture),
            local=s.bundling == "auto",
        )
        self.classify_asset = AssetSpec(
            "classify", REPO / "lambdas" / "requirements-classify.txt", s.architecture, model_dir=s.model_dir
        )
        classify_code = lambda_code(self.classify_asset, local=s.bundling == "auto")

        # One entry per function the ASL names (contract.FUNCTION_NAMES): the construct id is the
        # name, so the substitution `${<Name>FunctionArn}` and the local runner's ARNs agree.
        specs = {
            "Split": dict(
                handler="lyrics_classifier.handlers.split.handler",
                description="lyrics-classifier: index the uploaded CSV into byte ranges (a manifest under runs/)",
                code=workflow_code,
                memory=s.split_memory_mb,
                timeout=s.split_timeout_s,
                reserved=s.workflow_reserved_concurrency,
                environment={ENV_RANGE_BYTES: str(s.range_mb * MIB), ENV_TEXT_COLUMN: s.text_column,
                             ENV_INPUT_PREFIX: s.input_prefix},
            ),
            "Classify": dict(
                handler="lyrics_classifier.handlers.classify.handler",
                description="lyrics-classifier: classify one byte range with the ONNX model into one part of the result",
                code=classify_code,
                memory=s.classify_memory_mb,
                timeout=s.classify_timeout_s,
                reserved=s.classify_reserved_concurrency,
                environment={ENV_MODEL_DIR: f"/var/task/{MODEL_ASSET_DIR}"},
            ),
            "Merge": dict(
                handler="lyrics_classifier.handlers.merge.handler",
                description="lyrics-classifier: complete the result's upload into results/<input name>.classified.csv",
                code=workflow_code,
                memory=s.merge_memory_mb,
                timeout=s.merge_timeout_s,
                reserved=s.workflow_reserved_concurrency,
                environment={},
            ),
            "ReportFailure": dict(
                handler="lyrics_classifier.handlers.report_failure.handler",
                description="lyrics-classifier: write failed/<input name>.error.json with the reason",
                code=workflow_code,
                memory=s.report_failure_memory_mb,
                timeout=s.report_failure_timeout_s,
                reserved=s.workflow_reserved_concurrency,
                environment={},
            ),
        }
        if set(specs) != set(FUNCTION_NAMES):
            raise ValueError(f"functions {sorted(specs)} differ from contract.FUNCTION_NAMES {FUNCTION_NAMES}")
        self.functions = {name: self._function(name, removal=removal, **specs[name]) for name in FUNCTION_NAMES}
        self.split_fn = self.functions["Split"]
        self.classify_fn = self.functions["Classify"]
        self.merge_fn = self.functions["Merge"]
        self.report_failure_fn = self.functions["ReportFailure"]

        # Least privilege, per prefix. The input is read by version (GetObjectVersion);
        # HeadObject needs GetObject (the workflow heads a key before deleting it, so that a
        # missing key leaves no delete marker in the versioned output bucket); the result's
        # multipart upload (Create, UploadPart, Complete) is results/ PutObject.
        input_objects = self.input_bucket.arn_for_objects(f"{s.input_prefix}*")
        work, results, failed = (self.output_objects(p) for p in (WORK_PREFIX, RESULTS_PREFIX, FAILED_PREFIX))
        read_input = ["s3:GetObject", "s3:GetObjectVersion"]
        grants: dict[lambda_.Function, list[tuple[list[str], str]]] = {
            self.split_fn: [
                (read_input, input_objects),
                # the label set an upload's folder selects (labels/<folder>.json), copied into the work area
                (["s3:GetObject"], self.input_bucket.arn_for_objects(f"{LABELS_PREFIX}*")),
                # the claim marker (If-None-Match), run.json, the manifest, a UTF-16 input's
                # transcoded copy (multipart); DeleteObject: it releases its claim when it fails
                (["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:DeleteObject"], work),
                (["s3:PutObject"], results),  # CreateMultipartUpload of the result
            ],
            self.classify_fn: [
                (read_input, input_objects),  # a ranged GET of the event's version
                (["s3:GetObject", "s3:PutObject"], work),  # the transcoded copy; its stats or error
                (["s3:PutObject"], results),  # UploadPart of its range
            ],
            self.merge_fn: [
                (read_input, input_objects),  # HeadObject of the current version: a newer upload?
                (["s3:GetObject"], work),  # run.json, the manifest, the ranges' stats and errors
                (["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:GetObject",
                  "s3:DeleteObject"], results),  # fmt: skip
                (["s3:GetObject", "s3:DeleteObject"], failed),  # an older version's failure report
            ],
            self.report_failure_fn: [
                (["s3:GetObject"], input_objects),  # HeadObject of the current version
                # releases the claim; a superseded run's report goes into its work area
                (["s3:PutObject", "s3:DeleteObject", "s3:GetObject"], work),
                # aborts the upload; removes an older version's result and summary
                (["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject"], results),
                (["s3:PutObject", "s3:DeleteObject"], failed),
            ],
        }
        for fn, statements in grants.items():
            for actions, resource in statements:
                self._allow(fn, actions, [resource])
        # Classify reads only what Split found: it never needs to tell a missing key from a forbidden one.
        for fn in (self.split_fn, self.merge_fn, self.report_failure_fn):
            self._allow_list(fn, self.input_bucket)
            self._allow_list(fn, self.output_bucket)

        out = ref(self, self.output_bucket, "Arn")
        inp = ref(self, self.input_bucket, "Arn")
        for fn in grants:
            acknowledge(fn.role, f"AwsSolutions-IAM5[Resource::{out}/{WORK_PREFIX}*]", _WORK_AREA_REASON)
            acknowledge(
                fn.role,
                f"AwsSolutions-IAM5[Resource::{inp}/{s.input_prefix}*]",
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
            self.split_fn.role,
            f"AwsSolutions-IAM5[Resource::{inp}/{LABELS_PREFIX}*]",
            "The label sets under labels/ of the input bucket: an upload's folder names the one it "
            "uses, so which is only known at run time. Read only.",
        )
        for fn in (self.merge_fn, self.report_failure_fn):
            acknowledge(
                fn.role,
                f"AwsSolutions-IAM5[Resource::{out}/{FAILED_PREFIX}*]",
                "failed/<input name>.error.json; the input name is only known at run time, so the "
                "grant is the failed/ prefix.",
            )

    def _allow(self, fn: lambda_.Function, actions: list[str], resources: list[str]) -> None:
        fn.add_to_role_policy(iam.PolicyStatement(actions=actions, resources=resources))

    def _allow_list(self, fn: lambda_.Function, bucket: s3.Bucket) -> None:
        """s3:ListBucket, so that HeadObject/GetObject of a missing key answer 404, not 403.

        The workflow tells "missing" from "forbidden" (Merge verifies that every part
        exists; Split retries a URL-encoded key decoded). S3 answers 404 only to callers
        with ListBucket on the bucket, and an `s3:prefix` condition would not help: object
        requests carry no prefix, so a conditional grant never applies to them.
        """
        fn.add_to_role_policy(iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn]))

    # ---------------------------------------------------------- state machine
    def _state_machine(self, removal: RemovalPolicy) -> None:
        s = self.settings
        self.state_machine_log_group = logs.LogGroup(
            self,
            "WorkflowLogs",
            # The /aws/vendedlogs/ prefix keeps Step Functions' log delivery from growing
            # the account's CloudWatch Logs resource policy with every state machine.
            log_group_name=f"/aws/vendedlogs/states/{self.state_machine_name}",
            retention=_retention(s.log_retention_days),
            removal_policy=removal,
        )
        checkov_skip(self.state_machine_log_group, "CKV_AWS_158", _LOG_KMS_REASON)
        self.state_machine = sfn.StateMachine(
            self,
            "Workflow",
            state_machine_name=self.state_machine_name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_file(str(ASL_FILE)),
            definition_substitutions=self.definition_substitutions(),
            logs=sfn.LogOptions(
                destination=self.state_machine_log_group,
                level=sfn.LogLevel.ALL,
                include_execution_data=True,  # keys and counts only: no lyrics travel through the state
            ),
            tracing_enabled=True,
        )
        sm_role = self.state_machine.role
        # Published versions only (ARN:*), never $LATEST: each execution calls the versions its
        # definition named when it started, while a deploy publishes new ones for new runs
        # (CDK retains the old versions, so a running execution keeps its code and model).
        sm_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"], resources=[f"{fn.function_arn}:*" for fn in self.functions.values()]
            )
        )
        for name, fn in self.functions.items():
            acknowledge(
                sm_role,
                f"AwsSolutions-IAM5[Resource::{ref(self, fn, 'Arn')}:*]",
                f"Invoke of the {name} function's published versions (ARN:*): an execution calls the "
                "version its definition names, and running executions keep older ones.",
            )
        # The Distributed Map's ItemReader reads the manifest from the work area and its
        # ResultWriter writes the children's results there (as a multipart upload when large).
        sm_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"],
                resources=[self.output_objects(WORK_PREFIX)],
            )
        )
        # STANDARD child executions of a Distributed Map are executions of this state
        # machine. CDK grants this only when it builds the Map; the definition comes from
        # a file, so grant it here, with the ARN built from the fixed name (no cycle).
        own_arn = self.format_arn(
            service="states",
            resource="stateMachine",
            resource_name=self.state_machine_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        executions_arn = self.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{self.state_machine_name}/*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        sm_role.add_to_principal_policy(iam.PolicyStatement(actions=["states:StartExecution"], resources=[own_arn]))
        sm_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["states:DescribeExecution", "states:StopExecution", "states:RedriveExecution"],
                resources=[executions_arn],
            )
        )
        acknowledge(
            sm_role,
            "AwsSolutions-IAM5[Resource::*]",
            "Resource '*' only for actions without resource-level permissions: Step Functions "
            "log delivery (logs:CreateLogDelivery, GetLogDelivery, UpdateLogDelivery, "
            "DeleteLogDelivery, ListLogDeliveries, PutResourcePolicy, DescribeResourcePolicies, "
            "DescribeLogGroups) and X-Ray tracing (xray:PutTraceSegments, PutTelemetryRecords, "
            "GetSamplingRules, GetSamplingTargets).",
        )
        acknowledge(
            sm_role,
            f"AwsSolutions-IAM5[Resource::{ref(self, self.output_bucket, 'Arn')}/{WORK_PREFIX}*]",
            "The Distributed Map's ItemReader reads runs/<execution name>/manifest.json and its "
            "ResultWriter writes runs/map-results/<map run id>/. " + _WORK_AREA_REASON,
        )
        acknowledge(
            sm_role,
            f"AwsSolutions-IAM5[Resource::{render(self, executions_arn)}]",
            "Describe/stop/redrive the Distributed Map's child executions, which are executions "
            "of this state machine only (execution:<this name>/<map run>:<uuid>) with names "
            "generated at run time.",
        )

    def definition_substitutions(self) -> dict[str, str]:
        return {
            **{f"{name}FunctionArn": version.function_arn for name, version in self.versions.items()},
            "MaxConcurrency": str(self.settings.map_max_concurrency),
            "ExecutionTimeoutSeconds": str(self.settings.execution_timeout_s),
            "WorkBucketName": self.output_bucket.bucket_name,
            "MapResultsPrefix": MAP_RESULTS_PREFIX,
        }

    # ----------------------------------------------------------------- trigger
    def _trigger(self) -> None:
        s = self.settings
        self.trigger_dlq = sqs.Queue(
            self,
            "TriggerDeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        checkov_skip(self.trigger_dlq, "CKV_AWS_27", "The queue is encrypted at rest with SQS-managed "
                     "keys (SSE-SQS); its messages are upload events (bucket, key), no lyrics.")
        acknowledge(
            self.trigger_dlq,
            "AwsSolutions-SQS3",
            "This queue is itself the dead-letter queue of the EventBridge trigger (uploads "
            "whose execution could not be started); an alarm watches it.",
        )
        key_pattern = f"{s.input_prefix}*{s.input_suffix}"
        self.trigger = events.Rule(
            self,
            "OnUpload",
            description="Start the lyrics-classifier workflow for every CSV uploaded to the input bucket",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [self.input_bucket.bucket_name]},
                    "object": {"key": events.Match.wildcard(key_pattern)},
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

    # -------------------------------------------------------------- operations
    def _operations(self) -> None:
        s = self.settings
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="lyrics-classifier alarm topic encryption",
            enable_key_rotation=True,
            # Nothing stays encrypted under this key (it only protects alarm messages in
            # the topic), so it goes with the stack, after KMS's minimum waiting period.
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )
        # CloudWatch alarms publish to an encrypted topic only with a customer managed key
        # that lets cloudwatch.amazonaws.com use it.
        key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        self.alarm_topic = sns.Topic(
            self, "Alarms", display_name="lyrics-classifier alarms", master_key=key, enforce_ssl=True
        )
        if s.alarm_email:
            self.alarm_topic.add_subscription(subs.EmailSubscription(s.alarm_email))
        action = cw_actions.SnsAction(self.alarm_topic)
        period = Duration.minutes(5)

        def alarm(construct_id: str, metric: cw.IMetric, description: str) -> cw.Alarm:
            a = cw.Alarm(
                self,
                construct_id,
                alarm_description=description,
                metric=metric,
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            )
            a.add_alarm_action(action)
            return a

        sm = self.state_machine
        self.alarms = [
            alarm("ExecutionsFailed", sm.metric_failed(period=period), "A lyrics-classifier run failed: see failed/ in the output bucket"),
            alarm(
                "ExecutionsTimedOut",
                sm.metric_timed_out(period=period),
                f"A lyrics-classifier run exceeded execution_timeout_s ({s.execution_timeout_s} s) and was stopped",
            ),
            alarm("ExecutionsAborted", sm.metric_aborted(period=period), "A lyrics-classifier run was aborted"),
            alarm(
                "ExecutionsThrottled",
                sm.metric_throttled(period=period),
                "Step Functions throttled state transitions of lyrics-classifier runs (they are retried; runs slow down)",
            ),
            alarm(
                "TriggerDeadLettersAlarm",
                self.trigger_dlq.metric_approximate_number_of_messages_visible(period=period),
                "An upload did not start a run (EventBridge could not start the state machine): see the dead-letter queue",
            ),
            # Classify is the one function a run invokes thousands of times: its throttles mean
            # the reserved (or the account's) concurrency is exhausted and runs are slowed down.
            alarm(
                "ClassifyThrottles",
                self.classify_fn.metric_throttles(period=period),
                "Classify was throttled: runs wait and retry (up to ~25 minutes per range) and slow down; "
                "raise classify_reserved_concurrency or the account's concurrency, or lower map_max_concurrency",
            ),
        ]
        for name, fn in self.functions.items():
            self.alarms.append(alarm(f"{name}Errors", fn.metric_errors(period=period), f"The {name} function reported errors"))

        self.dashboard = self._dashboard(period)

    def _dashboard(self, period: Duration) -> cw.Dashboard:
        sm = self.state_machine

        def rows(metric_name: str) -> cw.Metric:
            return cw.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=metric_name,
                dimensions_map={"service": SERVICE_NAME},
                statistic="Sum",
                period=period,
            )

        dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"{self.stack_name}-Dashboard")
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Executions",
                left=[
                    sm.metric_started(period=period),
                    sm.metric_succeeded(period=period),
                    sm.metric_failed(period=period),
                    sm.metric_timed_out(period=period),
                    sm.metric_aborted(period=period),
                    sm.metric_throttled(period=period),
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Execution duration (ms)",
                left=[sm.metric_time(period=period, statistic="Average"), sm.metric_time(period=period, statistic="Maximum")],
                width=8,
            ),
            cw.GraphWidget(
                title="Rows",
                left=[rows("RowsIn"), rows("RowsClassified"), rows("RowsRejected")],
                width=8,
            ),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Function errors and throttles",
                left=[fn.metric_errors(period=period, label=f"{n} errors") for n, fn in self.functions.items()],
                right=[fn.metric_throttles(period=period, label=f"{n} throttles") for n, fn in self.functions.items()],
                width=8,
            ),
            cw.GraphWidget(
                title="Function duration p90 (ms)",
                left=[fn.metric_duration(period=period, statistic="p90", label=n) for n, fn in self.functions.items()],
                width=8,
            ),
            cw.GraphWidget(
                title="Classify concurrency and invocations",
                left=[
                    cw.Metric(
                        namespace="AWS/Lambda",
                        metric_name="ConcurrentExecutions",
                        dimensions_map={"FunctionName": self.classify_fn.function_name},
                        statistic="Maximum",
                        period=Duration.minutes(1),
                        label="Classify concurrent",
                    )
                ],
                right=[self.classify_fn.metric_invocations(period=period, label="Classify invocations")],
                width=8,
            ),
        )
        dashboard.add_widgets(
            cw.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24),
        )
        return dashboard

    # ----------------------------------------------------------------- outputs
    def _outputs(self) -> None:
        s = self.settings
        region = Aws.REGION
        CfnOutput(self, "InputBucketName", value=self.input_bucket.bucket_name, description="Upload CSVs here")
        CfnOutput(self, "InputPrefix", value=s.input_prefix or "-", description="Key prefix that starts a run ('-' = none)")
        CfnOutput(self, "InputSuffix", value=s.input_suffix or "-", description="Key suffix that starts a run ('-' = none)")
        CfnOutput(self, "OutputBucketName", value=self.output_bucket.bucket_name, description="results/, failed/ and the runs/ work area")
        CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn)
        CfnOutput(
            self,
            "StateMachineConsoleUrl",
            value=f"https://{region}.console.aws.amazon.com/states/home?region={region}#/statemachines/view/"
            f"{self.state_machine.state_machine_arn}",
        )
        CfnOutput(
            self,
            "DashboardUrl",
            value=f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#dashboards:name="
            f"{self.stack_name}-Dashboard",
        )
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn, description="Subscribe to get alarm notifications")


_RETENTION = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH",
    60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS", 150: "FIVE_MONTHS", 180: "SIX_MONTHS",
    365: "ONE_YEAR", 400: "THIRTEEN_MONTHS", 545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS",
    1096: "THREE_YEARS", 1827: "FIVE_YEARS", 2192: "SIX_YEARS", 2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS", 3288: "NINE_YEARS", 3653: "TEN_YEARS",
}  # fmt: skip


def _retention(days: int) -> logs.RetentionDays:
    return logs.RetentionDays[_RETENTION[days]]
