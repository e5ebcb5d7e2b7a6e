"""Alarms on everything that means a lost or slowed run, an encrypted topic they publish to,
and a dashboard of executions, rows and the functions."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from constructs import Construct

from .functions import Functions
from .logical_ids import Group
from .settings import Settings
from .workflow import Workflow

from lyrics_classifier.contract import METRICS_NAMESPACE, SERVICE_NAME

PERIOD = Duration.minutes(5)


class Monitoring(Group):
    def __init__(
        self, scope: Construct, construct_id: str, *, settings: Settings, functions: Functions, workflow: Workflow
    ) -> None:
        super().__init__(scope, construct_id)
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
        if settings.alarm_email:
            self.alarm_topic.add_subscription(subs.EmailSubscription(settings.alarm_email))

        sm = workflow.state_machine
        self.alarms = [
            self._alarm("ExecutionsFailed", sm.metric_failed(period=PERIOD), "A lyrics-classifier run failed: see failed/ in the output bucket"),
            self._alarm(
                "ExecutionsTimedOut",
                sm.metric_timed_out(period=PERIOD),
                f"A lyrics-classifier run exceeded execution_timeout_s ({settings.execution_timeout_s} s) and was stopped",
            ),
            self._alarm("ExecutionsAborted", sm.metric_aborted(period=PERIOD), "A lyrics-classifier run was aborted"),
            self._alarm(
                "ExecutionsThrottled",
                sm.metric_throttled(period=PERIOD),
                "Step Functions throttled state transitions of lyrics-classifier runs (they are retried; runs slow down)",
            ),
            self._alarm(
                "TriggerDeadLettersAlarm",
                workflow.trigger_dlq.metric_approximate_number_of_messages_visible(period=PERIOD),
                "An upload did not start a run (EventBridge could not start the state machine): see the dead-letter queue",
            ),
            self._alarm(
                "CleanupDeadLettersAlarm",
                workflow.cleanup_dlq.metric_approximate_number_of_messages_visible(period=PERIOD),
                "A run that timed out, was stopped or failed could not be cleaned up (no failure report): "
                "see the cleanup dead-letter queue and the Cleanup function's logs",
            ),
            # Classify is the one function a run invokes thousands of times: its throttles mean
            # the reserved (or the account's) concurrency is exhausted and runs are slowed down.
            self._alarm(
                "ClassifyThrottles",
                functions.classify.metric_throttles(period=PERIOD),
                "Classify was throttled: runs wait and retry (about 2 hours per range on average before one fails) and slow down; "
                "raise classify_reserved_concurrency or the account's concurrency, or lower map_max_concurrency",
            ),
        ]
        for name, fn in functions.by_name.items():
            self.alarms.append(self._alarm(f"{name}Errors", fn.metric_errors(period=PERIOD), f"The {name} function reported errors"))
        self.dashboard_name = f"{Stack.of(self).stack_name}-Dashboard"
        self.dashboard = self._dashboard(functions, workflow)

    def _alarm(self, construct_id: str, metric: cw.IMetric, description: str) -> cw.Alarm:
        alarm = cw.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=metric,
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.alarm_topic))
        return alarm

    def _dashboard(self, functions: Functions, workflow: Workflow) -> cw.Dashboard:
        sm = workflow.state_machine
        fns = functions.by_name

        def rows(metric_name: str) -> cw.Metric:
            return cw.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=metric_name,
                dimensions_map={"service": SERVICE_NAME},
                statistic="Sum",
                period=PERIOD,
            )

        dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=self.dashboard_name)
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Executions",
                left=[
                    sm.metric_started(period=PERIOD),
                    sm.metric_succeeded(period=PERIOD),
                    sm.metric_failed(period=PERIOD),
                    sm.metric_timed_out(period=PERIOD),
                    sm.metric_aborted(period=PERIOD),
                    sm.metric_throttled(period=PERIOD),
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Execution duration (ms)",
                left=[sm.metric_time(period=PERIOD, statistic="Average"), sm.metric_time(period=PERIOD, statistic="Maximum")],
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
                left=[fn.metric_errors(period=PERIOD, label=f"{n} errors") for n, fn in fns.items()],
                right=[fn.metric_throttles(period=PERIOD, label=f"{n} throttles") for n, fn in fns.items()],
                width=8,
            ),
            cw.GraphWidget(
                title="Function duration p90 (ms)",
                left=[fn.metric_duration(period=PERIOD, statistic="p90", label=n) for n, fn in fns.items()],
                width=8,
            ),
            cw.GraphWidget(
                title="Classify concurrency and invocations",
                left=[
                    cw.Metric(
                        namespace="AWS/Lambda",
                        metric_name="ConcurrentExecutions",
                        dimensions_map={"FunctionName": functions.classify.function_name},
                        statistic="Maximum",
                        period=Duration.minutes(1),
                        label="Classify concurrent",
                    )
                ],
                right=[functions.classify.metric_invocations(period=PERIOD, label="Classify invocations")],
                width=8,
            ),
        )
        dashboard.add_widgets(cw.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24))
        return dashboard
