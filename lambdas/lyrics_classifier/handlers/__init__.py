"""Lambda entry points: parse the event, call the workflow core, return a small JSON result.

Every handler reads its settings from the environment (set by the CDK stack, or by the local
runner) and raises on failure, so Step Functions sees the exception type as the Error and
its message as the readable reason.
"""
