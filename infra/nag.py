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

# Tests switch this off to synthesize the raw findings and check that every acknowledgement
# still matches a finding (a stale one would hide nothing, or hide the wrong thing later).
APPLY_ACKNOWLEDGEMENTS = True

_RULE_ID = re.compile(r"AwsSolutions-[A-Za-z]+[0-9]+(\[.+\])?")


def add_checks(app: App) -> None:
    """Run the AwsSolutions pack on every stack of the app at synth time."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True))


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    if not _RULE_ID.fullmatch(rule_id) or "::" in rule_id.split("[", 1)[0]:
        raise ValueError(f"not a bare AwsSolutions rule id (it would match nothing): {rule_id!r}")
    if len(reason.split()) < 8:
        raise ValueError(f"acknowledgement of {rule_id} needs a reason a reviewer can check: {reason!r}")
    if APPLY_ACKNOWLEDGEMENTS:
        Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))
    stack = Stack.of(scope)
    records = getattr(stack, "ACKNOWLEDGEMENTS", None)
    if records is None:
        records = []
        stack.ACKNOWLEDGEMENTS = records  # type: ignore[attr-defined]
    records.append((scope.node.path, rule_id, reason))


def render(scope: IConstruct, value) -> str:
    """A (possibly token) string as cdk-nag writes it in a finding id: references become
    `<LogicalId.Attr>` / `<LogicalId>` / `<AWS::Region>`, joins are concatenated."""
    resolved = Stack.of(scope).resolve(value)

    def walk(node) -> str:
        if isinstance(node, str):
            return node
        if isinstance(node, dict) and len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Ref":
                return f"<{arg}>"
            if fn == "Fn::GetAtt":
                return f"<{arg[0]}.{arg[1]}>"
            if fn == "Fn::Join":
                return arg[0].join(walk(part) for part in arg[1])
        raise ValueError(f"cannot render {node!r} as a cdk-nag finding")

    return walk(resolved)


def ref(scope: IConstruct, construct: IConstruct, attribute: str | None = None) -> str:
    """How cdk-nag writes a reference in a finding: `<LogicalId.Attr>` or `<LogicalId>`."""
    cfn = construct if isinstance(construct, CfnResource) else construct.node.default_child
    logical_id = Stack.of(scope).resolve(Stack.of(scope).get_logical_id(cfn))  # type: ignore[arg-type]
    return f"<{logical_id}.{attribute}>" if attribute else f"<{logical_id}>"


def checkov_skip(scope: IConstruct, check_id: str, reason: str) -> None:
    """Skip a checkov check on the construct's CloudFormation resource, with the reason, in
    checkov's own convention (`Metadata: checkov: skip: [{id, comment}]` on the resource)."""
    resource = scope if isinstance(scope, CfnResource) else scope.node.default_child
    if not isinstance(resource, CfnResource):
        raise ValueError(f"{scope.node.path} has no CloudFormation resource to carry a checkov skip")
    if len(reason.split()) < 8:
        raise ValueError(f"checkov skip of {check_id} needs a reason a reviewer can check: {reason!r}")
    metadata = resource.get_metadata("checkov") or {"skip": []}
    metadata["skip"].append({"id": check_id, "comment": reason})
    resource.add_metadata("checkov", metadata)
