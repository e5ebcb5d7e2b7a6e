"""cdk-nag 3.x wiring and acknowledgements.

cdk-nag 3 runs as a CDK policy-validation plugin: findings go to
`cdk.out/validation-report.json` (and fail the synth), and an acknowledgement is
`Validations.of(construct).acknowledge(...)`. Two traps, both guarded here:
- The id must be the bare rule id (`AwsSolutions-IAM5`, or a finding
  `AwsSolutions-IAM5[Resource::...]`). A pack prefix (`AwsSolutions::AwsSolutions-IAM5`)
  is stored under that namespace and silently matches nothing.
- cdk-nag 3.0 has no prefix matching: an IAM5 acknowledgement names one finding.

Every acknowledgement made through `acknowledge()` is also recorded on the stack
(`ACKNOWLEDGEMENTS`) so the tests can list them, check their reasons, and show them.
"""

from __future__ import annotations

import re

from aws_cdk import Acknowledgment, App, CfnResource, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

_RULE_ID = re.compile(r"AwsSolutions-[A-Za-z]+[0-9]+(\[.+\])?")


def add_checks(app: App) -> None:
    """Run the AwsSolutions pack on every stack of the app at synth time."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True))


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    if not _RULE_ID.fullmatch(rule_id) or "::" in rule_id.split("[", 1)[0]:
        raise ValueError(f"not a bare AwsSolutions rule id (it would match nothing): {rule_id!r}")
    if len(reason.split()) < 8:
        raise ValueError(f"acknowledgement of {rule_id} needs a reason a reviewer can check: {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))
    stack = Stack.of(scope)
    records = getattr(stack, "ACKNOWLEDGEMENTS", None)
    if records is None:
        records = []
        stack.ACKNOWLEDGEMENTS = records  # type: ignore[attr-defined]
    records.append((scope.node.path, rule_id, reason))


def ref(scope: IConstruct, construct: IConstruct, attribute: str | None = None) -> str:
    """How cdk-nag writes a reference in a finding: `<LogicalId.Attr>` or `<LogicalId>`."""
    cfn = construct if isinstance(construct, CfnResource) else construct.node.default_child
    logical_id = Stack.of(scope).resolve(Stack.of(scope).get_logical_id(cfn))  # type: ignore[arg-type]
    return f"<{logical_id}.{attribute}>" if attribute else f"<{logical_id}>"
