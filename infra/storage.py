"""The buckets: input (uploads and label sets), output (results, failure reports and the
`runs/` work area) and the access-log bucket both write their server access logs to."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_s3 as s3
from constructs import Construct

from .logical_ids import Group
from .nag import acknowledge, checkov_skip
from .settings import Settings

from lyrics_classifier.contract import WORK_PREFIX


class Storage(Group):
    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        self.settings = s = settings
        self.access_logs = self._bucket(
            "AccessLogs",
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
            # CDK makes one auto-delete provider per stack, at the stack's top level.
            provider = Stack.of(self).node.try_find_child("Custom::S3AutoDeleteObjectsCustomResourceProvider")
            if provider is not None:
                acknowledge(
                    provider,
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
                    "CDK's own auto-delete-objects provider (removal_policy=destroy only): it needs "
                    "nothing but log writing, which is what this AWS managed policy grants.",
                )

    def _bucket(self, construct_id: str, **props) -> s3.Bucket:
        return s3.Bucket(
            self,
            construct_id,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=self.settings.removal,
            auto_delete_objects=self.settings.destroy_on_delete,
            **props,
        )

    def output_objects(self, prefix: str) -> str:
        return self.output_bucket.arn_for_objects(f"{prefix}*")

    def input_objects(self, prefix: str) -> str:
        return self.input_bucket.arn_for_objects(f"{prefix}*")
