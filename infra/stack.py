"""The one stack: storage, the four functions, the workflow (state machine and trigger) and
its monitoring, composed from the constructs beside this file, and the outputs the CLI
(`submit`, `status`) reads."""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput
from constructs import Construct

from .functions import Functions
from .logical_ids import GroupedStack
from .monitoring import Monitoring
from .settings import Settings
from .storage import Storage
from .workflow import Workflow

from lyrics_classifier.contract import STACK_OUTPUTS


class LyricsClassifierStack(GroupedStack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        self.storage = Storage(self, "Storage", settings=settings)
        self.functions = Functions(self, "Functions", settings=settings, storage=self.storage)
        self.workflow = Workflow(self, "Workflow", settings=settings, storage=self.storage, functions=self.functions)
        self.monitoring = Monitoring(
            self, "Monitoring", settings=settings, functions=self.functions, workflow=self.workflow
        )
        self._outputs()

    def _outputs(self) -> None:
        s = self.settings
        region = Aws.REGION
        state_machine = self.workflow.state_machine
        outputs = {
            "InputBucketName": (self.storage.input_bucket.bucket_name, "Upload CSVs here"),
            "InputPrefix": (s.input_prefix or "-", "Key prefix that starts a run ('-' = none)"),
            "InputSuffix": (s.input_suffix or "-", "Key suffix that starts a run ('-' = none)"),
            "OutputBucketName": (self.storage.output_bucket.bucket_name, "results/, failed/ and the runs/ work area"),
            "StateMachineArn": (state_machine.state_machine_arn, None),
            "StateMachineConsoleUrl": (
                f"https://{region}.console.aws.amazon.com/states/home?region={region}#/statemachines/view/"
                f"{state_machine.state_machine_arn}",
                None,
            ),
            "DashboardUrl": (
                f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#dashboards:name="
                f"{self.monitoring.dashboard_name}",
                None,
            ),
            "AlarmTopicArn": (self.monitoring.alarm_topic.topic_arn, "Subscribe to get alarm notifications"),
        }
        if tuple(outputs) != STACK_OUTPUTS:
            raise ValueError(f"stack outputs {list(outputs)} differ from contract.STACK_OUTPUTS")
        for key, (value, description) in outputs.items():
            CfnOutput(self, key, value=value, description=description)
