"""`doctor`: a preflight to run before `cdk deploy` (see README, "Deploy to AWS").

    lyrics-classifier doctor [--region R] [--profile P] [-c key=value ...] [--json]

It reads the account the deploy would go to and says, one line per check, what to set:

    ok|warn|FAIL  <what>: <plain words, what to do>

- region: --region, else AWS_REGION, else what boto3 resolves (AWS_DEFAULT_REGION, the
  profile), as the CDK CLI picks it; nothing works without one.
- credentials: `sts get-caller-identity` gives the account id.
- lambda concurrency: `lambda get-account-settings` against the stack's planned settings
  (the CDK context: cdk.json's "context" and -c overrides, as `cdk deploy` reads them).
  AWS keeps 100 of the account's concurrency unreserved, so the functions' reservations
  must fit in UnreservedConcurrentExecutions - 100, or CloudFormation fails creating the
  function; a Distributed Map wider than the account's limit is throttled (runs wait).
- cdk bootstrap: the SSM parameter `/cdk-bootstrap/<qualifier>/version` of `cdk bootstrap`.
- architecture: the Lambda architecture the stack deploys (context only).

The context defaults are repeated here from infra/settings.py (which needs aws_cdk, so the
CLI cannot import it); tests/test_doctor.py keeps the two equal, and the functions that
share each reservation equal to infra/functions.py's FUNCTION_SPECS.

Exit status: 0 when no check FAILed (warnings allowed), 1 when one did, 2 for a usage error.
boto3 is imported inside functions, so the rest of the CLI never pays for it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .errors import UserError

# infra/settings.py DEFAULTS of the context keys doctor reads.
CONTEXT_DEFAULTS: dict[str, Any] = {
    "architecture": "arm64",
    "classify_reserved_concurrency": 0,
    "workflow_reserved_concurrency": 0,
    "map_max_concurrency": 50,
}
# infra/functions.py: which functions each reservation setting applies to (each of them).
RESERVED_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "classify_reserved_concurrency": ("Classify",),
    "workflow_reserved_concurrency": ("Split", "Merge", "ReportFailure", "Cleanup"),
}
# Lambda functions a run invokes besides Classify: the Map leaves them this much room.
OTHER_FUNCTIONS = len(RESERVED_FUNCTIONS["workflow_reserved_concurrency"])
ARCHITECTURES = ("arm64", "x86_64")
# AWS keeps this much of the account's concurrency unreserved; a reservation may not cut into it.
UNRESERVED_MINIMUM = 100
DEFAULT_QUALIFIER = "hnb659fds"  # CDK's default bootstrap qualifier
MIN_BOOTSTRAP_VERSION = 6  # what CDK v2's default synthesizer requires
QUOTA_HINT = 'request a quota increase (Service Quotas > AWS Lambda > "Concurrent executions")'

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclasses.dataclass
class Check:
    what: str
    status: str  # ok | warn | FAIL
    message: str
    data: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.message = " ".join(self.message.split())  # one line, whatever an error message holds

    def line(self) -> str:
        return f"{self.status:<4}  {self.what}: {self.message}"

    def as_json(self) -> dict[str, Any]:
        return {"check": self.what, "status": self.status, "message": self.message, **self.data}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check an AWS account before `cdk deploy`: region, credentials, Lambda concurrency, bootstrap",
        description="A preflight for `cdk deploy`: reads the account (region, credentials, the Lambda "
        "concurrency quota, the CDK bootstrap version) and the stack's planned settings (cdk.json's "
        "context and -c overrides, as `cdk deploy` reads them), and prints one line per check, "
        "`ok|warn|FAIL  <what>: <what to do>`. Read-only: it changes nothing in the account.",
        epilog="exit status: 0 when no check FAILed (warnings allowed), 1 when one did, 2 for a usage "
        "error. examples: lyrics-classifier doctor; lyrics-classifier doctor --region eu-west-1 "
        "-c classify_reserved_concurrency=50; lyrics-classifier doctor --json | jq '.[] | select(.status != \"ok\")'",
    )
    parser.add_argument("--region", metavar="REGION", help="AWS region (default: from your AWS configuration)")
    parser.add_argument("--profile", metavar="NAME", help="AWS named profile")
    parser.add_argument("--endpoint-url", metavar="URL",
                        help="send every AWS call to URL (e.g. `lyrics-classifier serve` or moto's server; "
                             "default: $AWS_ENDPOINT_URL, else AWS)")
    parser.add_argument("--cdk-json", type=Path, metavar="PATH",
                        help="the CDK app's cdk.json whose \"context\" holds the settings (default: ./cdk.json)")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE",
                        help="a context override, as `cdk deploy -c KEY=VALUE` (repeatable)")
    parser.add_argument("--qualifier", default=DEFAULT_QUALIFIER, metavar="NAME",
                        help=f"the CDK bootstrap qualifier (default: {DEFAULT_QUALIFIER})")
    parser.add_argument("--json", action="store_true",
                        help="a JSON list of the checks instead of lines: check, status, message and the numbers")
    parser.set_defaults(func=cmd_doctor)


# --------------------------------------------------------------------------- context


def load_context(cdk_json: Path | None, overrides: list[str]) -> tuple[dict[str, Any], Check]:
    """The settings doctor checks, as `cdk deploy` would see them, and a line saying where from."""
    explicit = cdk_json is not None
    path = cdk_json if explicit else Path("cdk.json")
    context: dict[str, Any] = {}
    found = path.is_file()
    if explicit and not found:
        raise UserError(f"{path}: no such file (--cdk-json names the CDK app's cdk.json)")
    if found:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: cannot read it as JSON: {exc}") from None
        raw = document.get("context", {}) if isinstance(document, dict) else None
        if not isinstance(raw, dict):
            raise UserError(f"{path}: \"context\" must be a JSON object")
        context.update(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"-c {item!r}: expected KEY=VALUE, e.g. -c map_max_concurrency=6")
        context[key] = value  # a string, as CDK passes -c values to the app

    settings: dict[str, Any] = {}
    for key, default in CONTEXT_DEFAULTS.items():
        value = context.get(key, default)
        if isinstance(default, int):
            try:
                value = int(value)
            except (TypeError, ValueError):
                value = None
            if value is None or value < 0:
                raise UserError(f"context `{key}`={context.get(key)!r}: must be an integer >= 0")
        else:
            value = str(value)
        settings[key] = value

    given = [f"-c {item}" for item in overrides]
    if found:
        source = str(path if explicit else Path.cwd() / path)
        check = Check("cdk context", OK, source + (f" with {' '.join(given)}" if given else ""))
    else:
        check = Check(
            "cdk context", WARN,
            f"no cdk.json in {Path.cwd()}: checked the stack's defaults"
            + (f" with {' '.join(given)}" if given else "")
            + "; run doctor where you run `cdk deploy`, or pass --cdk-json PATH",
        )
    check.data = {"source": str(path.resolve()) if found else None, "settings": settings}
    return settings, check


# ----------------------------------------------------------------------------- checks


def _names(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def concurrency_check(limit: int, unreserved: int, settings: dict[str, Any]) -> Check:
    """Can the stack's reservations be made, and does the Map fit in the account's limit?"""
    reserving = {key: settings[key] for key in RESERVED_FUNCTIONS if settings[key] > 0}
    needed = sum(value * len(RESERVED_FUNCTIONS[key]) for key, value in reserving.items())
    reservable = unreserved - UNRESERVED_MINIMUM
    map_max = settings["map_max_concurrency"]
    suggested = max(1, limit - OTHER_FUNCTIONS)
    data = {
        "concurrent_executions": limit,
        "unreserved_concurrent_executions": unreserved,
        "reservable": max(0, reservable),
        "reserved_by_stack": needed,
        "map_max_concurrency": map_max,
    }
    numbers = f"account limit {limit}, {unreserved} unreserved"
    map_warning = None
    if map_max >= limit:
        data["suggested_map_max_concurrency"] = suggested
        map_warning = (
            f"map_max_concurrency {map_max} >= the account's limit of {limit} concurrent executions "
            f"({unreserved} unreserved): runs will be "
            f"throttled and slowed down (throttled invocations wait and retry, about 2 hours per step, "
            f"before a run fails); deploy with -c map_max_concurrency={suggested} (room for "
            f"{_names(RESERVED_FUNCTIONS['workflow_reserved_concurrency'])}) and {QUOTA_HINT}"
        )

    if needed and needed > reservable:
        if list(reserving) == ["classify_reserved_concurrency"]:
            where = "the Classify function"
        else:
            where = "the functions with reserved concurrency (" + ", ".join(
                f"{_names(RESERVED_FUNCTIONS[key])} {value}{' each' if len(RESERVED_FUNCTIONS[key]) > 1 else ''}"
                for key, value in reserving.items()
            ) + ")"
        fix = " ".join(f"-c {key}=0" for key in reserving)
        if reservable > 0:
            fix += f" (unreserved, the default), or reserve at most {reservable} in all"
            room = f"more than the {reservable} this account can reserve"
        else:
            fix += f" (unreserved, the default), or {QUOTA_HINT}"
            room = "and this account can reserve nothing"
        message = (
            f"the deploy would fail creating {where}: set {fix}; the stack reserves {needed}, {room} "
            f"({numbers}, and AWS keeps {UNRESERVED_MINIMUM} unreserved)"
        )
        if map_warning:
            message += (f". Also set -c map_max_concurrency={suggested}: {map_max} >= the account's limit of "
                        f"{limit} would throttle runs")
        return Check("lambda concurrency", FAIL, message, data)

    if map_warning:
        return Check("lambda concurrency", WARN, map_warning, data)

    reserved = f"the stack reserves {needed}" if needed else "the stack reserves none"
    return Check(
        "lambda concurrency", OK,
        f"{numbers}; {reserved} (at most {max(0, reservable)} can be reserved: AWS keeps "
        f"{UNRESERVED_MINIMUM} unreserved); map_max_concurrency {map_max} < {limit}",
        data,
    )


def architecture_check(settings: dict[str, Any]) -> Check:
    architecture = settings["architecture"]
    if architecture == ARCHITECTURES[0]:
        return Check("architecture", OK, "arm64 (Graviton); for x86_64 deploy with -c architecture=x86_64",
                     {"architecture": architecture})
    if architecture == ARCHITECTURES[1]:
        return Check("architecture", OK, "x86_64; arm64 (the default) is -c architecture=arm64",
                     {"architecture": architecture})
    return Check("architecture", FAIL,
                 f"{architecture!r} is not a Lambda architecture: set -c architecture=arm64 (or x86_64)",
                 {"architecture": architecture})


def _error(exc: Exception) -> tuple[str, str]:
    """(code, message) of an AWS error; a non-AWS endpoint's HTML error page becomes its title."""
    error = getattr(exc, "response", {}).get("Error", {})
    code, message = str(error.get("Code", type(exc).__name__)), " ".join(str(error.get("Message", exc)).split())
    if message.lstrip().startswith("<"):
        title = re.search(r"<title>(.*?)</title>", message, re.IGNORECASE | re.DOTALL)
        message = re.sub(r"^\d{3}\s+", "", title.group(1).strip()) if title else "not an AWS error response"
    return code, message[:300]


def _endpoint_note(client) -> str:
    """` at URL` when the calls go somewhere other than AWS (--endpoint-url, AWS_ENDPOINT_URL)."""
    url = client.meta.endpoint_url
    host = urlparse(url).hostname or ""
    aws = host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws"))
    return "" if aws else f" at {url}"


def account_check(sts) -> tuple[Check, str | None]:
    from botocore.exceptions import (BotoCoreError, ClientError, EndpointConnectionError, HTTPClientError,
                                     NoCredentialsError)

    skipped = " (the Lambda and bootstrap checks are skipped)"
    try:
        identity = sts.get_caller_identity()
    except NoCredentialsError:
        return Check("credentials", FAIL,
                     "no AWS credentials found: run `aws configure` or `aws sso login`, or set AWS_PROFILE "
                     "(or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)" + skipped), None
    except ClientError as exc:
        code, message = _error(exc)
        return Check("credentials", FAIL,
                     f"AWS refused them ({code}: {message}): refresh them (`aws sso login`, new access keys) "
                     "or choose another profile with --profile" + skipped, {"error": code}), None
    except (EndpointConnectionError, HTTPClientError) as exc:
        return Check("credentials", FAIL,
                     f"cannot reach AWS ({exc}): check the network, a proxy, or --endpoint-url / "
                     "AWS_ENDPOINT_URL" + skipped), None
    except BotoCoreError as exc:  # an expired SSO token, a failing credential_process, ...
        return Check("credentials", FAIL,
                     f"cannot use them ({exc}): refresh them (`aws sso login`) or choose another profile "
                     "with --profile" + skipped), None
    account = identity["Account"]
    return Check("credentials", OK, f"account {account} as {identity.get('Arn', '?')}{_endpoint_note(sts)}",
                 {"account": account, "arn": identity.get("Arn")}), account


def lambda_check(client, settings: dict[str, Any]) -> Check:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        limits = client.get_account_settings()["AccountLimit"]
        limit = int(limits["ConcurrentExecutions"])
        unreserved = int(limits["UnreservedConcurrentExecutions"])
    except (ClientError, BotoCoreError, KeyError, TypeError, ValueError) as exc:
        code, message = _error(exc)
        return Check(
            "lambda concurrency", WARN,
            f"cannot read the account's Lambda settings{_endpoint_note(client)} ({code}: {message}): "
            f"look up \"Concurrent executions\" "
            f"in Service Quotas > AWS Lambda yourself; map_max_concurrency "
            f"{settings['map_max_concurrency']} should stay below it, and any reservation needs "
            f"{UNRESERVED_MINIMUM} unreserved left over",
            {"error": code},
        )
    return concurrency_check(limit, unreserved, settings)


def bootstrap_check(ssm, account: str, region: str, qualifier: str) -> Check:
    from botocore.exceptions import BotoCoreError, ClientError

    name = f"/cdk-bootstrap/{qualifier}/version"
    command = f"npx cdk bootstrap aws://{account}/{region}"
    if qualifier != DEFAULT_QUALIFIER:
        command += f" --qualifier {qualifier}"
    data: dict[str, Any] = {"parameter": name}
    try:
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as exc:
        code, message = _error(exc)
        if code == "ParameterNotFound":
            return Check("cdk bootstrap", FAIL,
                         f"aws://{account}/{region} is not bootstrapped (no SSM parameter {name}): "
                         f"run `{command}` (once per account and region)", data)
        return Check("cdk bootstrap", WARN,
                     f"cannot read the SSM parameter {name} ({code}: {message}): if `cdk deploy` says the "
                     f"environment is not bootstrapped, run `{command}`", {**data, "error": code})
    except BotoCoreError as exc:
        return Check("cdk bootstrap", WARN, f"cannot read the SSM parameter {name} ({exc})", data)
    try:
        version = int(str(value).strip())
    except ValueError:
        return Check("cdk bootstrap", FAIL,
                     f"{name} holds {value!r}, not a version number: re-run `{command}`", data)
    data["version"] = version
    if version < MIN_BOOTSTRAP_VERSION:
        return Check("cdk bootstrap", FAIL,
                     f"re-run cdk bootstrap (version {version}, CDK needs >= {MIN_BOOTSTRAP_VERSION}): `{command}`",
                     data)
    return Check("cdk bootstrap", OK, f"version {version} in aws://{account}/{region}", data)


# ---------------------------------------------------------------------------- command


def _region(args: argparse.Namespace) -> tuple[str | None, str]:
    """The region as the CDK CLI picks it: AWS_REGION before boto3's AWS_DEFAULT_REGION and
    profile (boto3 alone never reads AWS_REGION, which the README's deploy steps set)."""
    if args.region:
        return args.region, " (--region)"
    if os.environ.get("AWS_REGION"):
        return os.environ["AWS_REGION"], " (AWS_REGION)"
    return None, ""


def _session(args: argparse.Namespace, region: str | None):
    import boto3
    from botocore.exceptions import ProfileNotFound

    try:
        return boto3.session.Session(profile_name=args.profile, region_name=region)
    except ProfileNotFound as exc:
        raise UserError(f"{exc}: check --profile / AWS_PROFILE (`aws configure list-profiles` lists them)") from None


def run_checks(args: argparse.Namespace) -> list[Check]:
    from botocore.config import Config

    settings, context_check = load_context(args.cdk_json, args.context)
    checks = [context_check]
    region, source = _region(args)
    session = _session(args, region)
    region = session.region_name
    if not region:
        checks.append(Check("region", FAIL, "none configured: set AWS_REGION (e.g. export AWS_REGION=eu-west-1) "
                                            "or pass --region (the account checks are skipped)"))
    else:
        checks.append(Check("region", OK, region + source, {"region": region}))
        # Fail fast when AWS cannot be reached: this is a preflight, not a deploy.
        config = Config(connect_timeout=5, read_timeout=20, retries={"mode": "standard", "max_attempts": 3})

        def client(name: str):
            return session.client(name, endpoint_url=args.endpoint_url, config=config)

        credentials, account = account_check(client("sts"))
        checks.append(credentials)
        if account:
            checks.append(lambda_check(client("lambda"), settings))
            checks.append(bootstrap_check(client("ssm"), account, region, args.qualifier))
    checks.append(architecture_check(settings))
    return checks


def cmd_doctor(args: argparse.Namespace) -> int:
    checks = run_checks(args)
    if args.json:
        print(json.dumps([check.as_json() for check in checks], indent=1))
    else:
        for check in checks:
            print(check.line())
    return 1 if any(check.status == FAIL for check in checks) else 0
