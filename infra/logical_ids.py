"""Constructs that group a stack's resources without renaming them.

CloudFormation knows a resource by its logical ID, which CDK makes from the construct path.
Moving a bucket from the stack into a `Storage` construct would change its ID, and the next
deploy would replace it: a retained bucket would be orphaned beside a new, empty one. A
`Group` leaves its own id out of the path its resources' IDs are made from, so the stacks
deployed before the grouping update in place.
"""

from __future__ import annotations

import hashlib
import re

from aws_cdk import CfnElement, Stack
from constructs import Construct


class Group(Construct):
    """A construct whose id is not part of its resources' logical IDs (see GroupedStack)."""


class GroupedStack(Stack):
    """A stack whose logical IDs are made as if its Groups were not in the construct tree."""

    def _allocate_logical_id(self, cfn_element: CfnElement) -> str:  # jsii: allocateLogicalId
        scopes = cfn_element.node.scopes
        below_stack = scopes[[s.node.path for s in scopes].index(self.node.path) + 1 :]
        return make_unique_id([s.node.id for s in below_stack if not isinstance(s, Group)])


def make_unique_id(components: list[str]) -> str:
    """CDK's own logical ID of a path (aws-cdk-lib core/lib/private/uniqueid.ts, makeUniqueId)."""
    components = [c for c in components if c != "Default"]
    if len(components) == 1 and len(alphanumeric := _alphanumeric(components[0])) <= 255:
        return alphanumeric  # a top-level resource keeps its id
    digest = hashlib.md5("/".join(components).encode()).hexdigest()[:8].upper()
    human: list[str] = []
    for component in components:  # consecutive repeats ("Bucket/Bucket") are said once
        if not human or not human[-1].endswith(component):
            human.append(component)
    return "".join(_alphanumeric(c) for c in human if c != "Resource")[:240] + digest


def _alphanumeric(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", text)
