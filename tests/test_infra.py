"""The CDK stack: template properties, cdk-nag (AwsSolutions), cfn-lint, the ASL file after
substitution (asl-validator), asset sizes, and `cdk synth` through the pinned CLI.

Synths are expensive (jsii + bundling), so they are session fixtures: one synth with the
defaults, one with the acknowledgements switched off (raw cdk-nag findings), one with
overridden context. Bundled dependencies are cached under build/lambda-deps/.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a CDK synth / a USE-m3 export

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import infra  # noqa: E402,F401  (environment for jsii before aws_cdk loads)
from aws_cdk import App  # noqa: E402
from aws_cdk.assertions import Match, Template  # noqa: E402

from infra import nag  # noqa: E402
from infra.bundling import AssetSpec, directory_size, install_dependencies  # noqa: E402
from infra.settings import DEFAULTS, Settings, SettingsError  # noqa: E402
from infra.workflow import ASL_FILE  # noqa: E402
from lyrics_classifier import contract  # noqa: E402

LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
STACK = "LyricsClassifier"
CDK_JSON = json.loads((REPO / "cdk.json").read_text())


def _context(model_dir: Path, **overrides) -> dict:
    context = copy.deepcopy(CDK_JSON["context"])
    context["model_dir"] = str(model_dir)
    context.update(overrides)
    return context


def _synth(outdir: Path, context: dict):
    from app import build_app

    started = time.perf_counter()
    app, stack = build_app(App(outdir=str(outdir), context=context))
    error = None
    try:
        app.synth()
    except Exception as exc:  # cdk-nag findings fail the synth; the report is still written
        error = exc
    print(f"synth into {outdir.name}: {time.perf_counter() - started:.1f}s")
    return stack, error


class Synth:
    def __init__(self, outdir: Path, stack, error):
        self.outdir = outdir
        self.stack = stack
        self.error = error
        self.template_dict = json.loads((outdir / f"{STACK}.template.json").read_text())
        self.template = Template.from_json(self.template_dict)

    def resources(self, type_: str) -> dict:
        return {k: v for k, v in self.template_dict["Resources"].items() if v["Type"] == type_}

    def logical_id(self, construct) -> str:
        return self.stack.resolve(self.stack.get_logical_id(construct.node.default_child))

    def asset_dir(self, function) -> Path:
        code = self.template_dict["Resources"][self.logical_id(function)]["Properties"]["Code"]
        return self.outdir / f"asset.{code['S3Key'].removesuffix('.zip')}"


@pytest.fixture(scope="session")
def model_dir(default_model_dir) -> Path:
    return default_model_dir


@pytest.fixture(scope="session")
def synth(tmp_path_factory, model_dir) -> Synth:
    outdir = tmp_path_factory.mktemp("cdk-default")
    stack, error = _synth(outdir, _context(model_dir))
    if error is not None:
        report = outdir / "validation-report.json"
        detail = report.read_text() if report.exists() else ""
        pytest.fail(f"synth failed: {error}\n{detail[:4000]}")
    return Synth(outdir, stack, error)


@pytest.fixture(scope="session")
def raw_findings(tmp_path_factory, model_dir) -> tuple[Synth, list[dict]]:
    """Synth with acknowledgements off: every finding cdk-nag raises, acknowledged or not."""
    outdir = tmp_path_factory.mktemp("cdk-raw")
    nag.APPLY_ACKNOWLEDGEMENTS = False
    try:
        stack, error = _synth(outdir, _context(model_dir))
    finally:
        nag.APPLY_ACKNOWLEDGEMENTS = True
    report = json.loads((outdir / "validation-report.json").read_text())
    findings = [
        {"rule": v["ruleName"], "path": c["constructPath"]}
        for r in report["pluginReports"]
        if r["pluginName"] == "AwsSolutions"
        for v in r["violations"]
        for c in v["violatingConstructs"]
    ]
    return Synth(outdir, stack, error), findings


def _statements(synth: Synth, role) -> list[dict]:
    role_id = synth.logical_id(role)
    out = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        props = policy["Properties"]
        if {"Ref": role_id} in props["Roles"]:
            out.extend(props["PolicyDocument"]["Statement"])
    return out


def _actions(statement: dict) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def _resources(statement: dict) -> list:
    resources = statement["Resource"]
    return resources if isinstance(resources, list) else [resources]


def _grants(synth: Synth, role) -> dict[str, list[str]]:
    """action -> the resources it is allowed on, as JSON strings (for substring checks)."""
    grants: dict[str, list[str]] = {}
    for st in _statements(synth, role):
        assert st["Effect"] == "Allow"
        for action in _actions(st):
            grants.setdefault(action, []).extend(json.dumps(r) for r in _resources(st))
    return grants


# --------------------------------------------------------------------------- settings


def test_cdk_json_has_every_setting_with_its_default():
    context = CDK_JSON["context"]
    for key, (default, _doc) in DEFAULTS.items():
        assert key in context, f"cdk.json lacks context key {key}"
        assert context[key] == default, f"cdk.json default of {key} differs from infra/settings.py"
    assert CDK_JSON["app"].endswith("app.py")


def _readme_configuration_table() -> dict[str, str]:
    """key -> default as README's configuration table shows it (`value`, or (empty))."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Configuration", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+?) \| .+ \|$", section, flags=re.MULTILINE)
    return {key: "" if value == "(empty)" else value.strip("`") for key, value in rows}


def test_readme_configuration_table_lists_every_setting_with_its_default():
    table = _readme_configuration_table()
    assert list(table) == list(DEFAULTS), "README's configuration table: keys differ from infra/settings.py (or their order)"
    for key, (default, _doc) in DEFAULTS.items():
        assert table[key] == str(default), f"README shows {key} = {table[key]!r}, infra/settings.py {default!r}"


def test_removed_and_new_settings():
    assert "chunk_rows" not in DEFAULTS and "chunk_rows" not in CDK_JSON["context"]
    assert "`chunk_rows`" not in (REPO / "README.md").read_text()
    # the workflow's own default range is the stack's default
    assert DEFAULTS["range_mb"][0] * contract.MIB == contract.DEFAULT_RANGE_BYTES
    assert DEFAULTS["execution_timeout_s"][0] == 43200
    assert DEFAULTS["output_noncurrent_expiry_days"][0] == 30
    assert "100" in DEFAULTS["classify_reserved_concurrency"][1]  # what an account needs, documented


@pytest.mark.parametrize(
    "overrides",
    [
        {"architecture": "ppc64"},
        {"classify_memory_mb": "lots"},
        {"classify_memory_mb": 64},
        {"log_retention_days": 10},
        {"map_max_concurrency": 0},
        {"alarm_email": "not-an-address"},
        {"input_suffix": "*.csv"},
        {"range_mb": 5},  # parts of a multipart upload must be >= 5 MiB: ranges keep a margin
        {"range_mb": "eight"},
        {"execution_timeout_s": 599},
        {"execution_timeout_s": 7 * 86400 + 1},
        {"classify_reserved_concurrency": -1},
        {"output_noncurrent_expiry_days": 0},
    ],
)
def test_bad_settings_are_refused_with_the_key_named(overrides):
    app = App(context={**CDK_JSON["context"], **overrides})
    with pytest.raises(SettingsError, match=next(iter(overrides))):
        Settings.from_context(app.node)


def test_settings_from_command_line_strings():
    app = App(context={**CDK_JSON["context"], "classify_memory_mb": "3008", "architecture": "x86_64", "range_mb": "6"})
    settings = Settings.from_context(app.node)
    assert settings.classify_memory_mb == 3008
    assert settings.architecture == "x86_64"
    assert settings.range_mb == 6


def test_work_area_must_outlast_the_execution_timeout():
    app = App(context={**CDK_JSON["context"], "execution_timeout_s": 7 * 86400, "work_area_expiry_days": 7})
    with pytest.raises(SettingsError, match="work_area_expiry_days"):
        Settings.from_context(app.node)
    app = App(context={**CDK_JSON["context"], "execution_timeout_s": 7 * 86400, "work_area_expiry_days": 8})
    assert Settings.from_context(app.node).execution_timeout_s == 604800


# -------------------------------------------------------------------------- storage


def test_resource_inventory_with_cdk_assertions(synth):
    t = synth.template
    for type_, count in {
        "AWS::S3::Bucket": 3,
        "AWS::Lambda::Function": 5,
        "AWS::StepFunctions::StateMachine": 1,
        "AWS::Events::Rule": 2,
        "AWS::SQS::Queue": 2,
        "AWS::SNS::Topic": 1,
        "AWS::CloudWatch::Dashboard": 1,
    }.items():
        t.resource_count_is(type_, count)
    t.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "lyrics_classifier.handlers.classify.handler",
            "Runtime": "python3.12",
            "Architectures": ["arm64"],
            "MemorySize": 1769,
            "TracingConfig": {"Mode": "Active"},
            "Environment": {"Variables": Match.object_like({"MODEL_DIR": "/var/task/model"})},
        },
    )
    t.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "VersioningConfiguration": {"Status": "Enabled"},
            "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}},
        },
    )
    t.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "TracingConfiguration": {"Enabled": True},
            "LoggingConfiguration": Match.object_like({"Level": "ALL", "IncludeExecutionData": True}),
            "DefinitionSubstitutions": Match.object_like({"MaxConcurrency": "50"}),
        },
    )
    t.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    t.has_resource_properties("AWS::SQS::Queue", {"SqsManagedSseEnabled": True})
    # each function: one published version, which the ASL names (so a running execution keeps
    # calling the versions it started with), retained when a deploy publishes the next one
    t.resource_count_is("AWS::Lambda::Version", 4)
    substitutions = {}
    for name in contract.FUNCTION_NAMES:
        fn = synth.stack.functions.by_name[name]
        t.has_resource("AWS::Lambda::Version", {
            "Properties": {"FunctionName": {"Ref": synth.logical_id(fn)}},
            "DeletionPolicy": "Retain",
        })  # fmt: skip
        substitutions[f"{name}FunctionArn"] = {"Ref": _version_id(synth, fn)}
    t.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "DefinitionSubstitutions": {
                **substitutions,
                "MaxConcurrency": str(DEFAULTS["map_max_concurrency"][0]),
                "ExecutionTimeoutSeconds": str(DEFAULTS["execution_timeout_s"][0]),
                "WorkBucketName": {"Ref": synth.logical_id(synth.stack.storage.output_bucket)},
                "MapResultsPrefix": contract.MAP_RESULTS_PREFIX,
            }
        },
    )
    t.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "lyrics_classifier.handlers.split.handler",
            "MemorySize": DEFAULTS["split_memory_mb"][0],
            "Timeout": DEFAULTS["split_timeout_s"][0],
            "Environment": {
                "Variables": Match.object_like(
                    {
                        contract.ENV_OUTPUT_BUCKET: {"Ref": synth.logical_id(synth.stack.storage.output_bucket)},
                        contract.ENV_RANGE_BYTES: str(DEFAULTS["range_mb"][0] * contract.MIB),
                        contract.ENV_TEXT_COLUMN: "",
                        contract.ENV_DELIMITER: "",  # detected per file
                    }
                )
            },
        },
    )
    t.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "lyrics_classifier.handlers.classify.handler",
            "Timeout": DEFAULTS["classify_timeout_s"][0],
            "ReservedConcurrentExecutions": Match.absent(),
        },
    )
    for handler, key in (("merge", "merge"), ("report_failure", "report_failure"), ("cleanup", "cleanup")):
        t.has_resource_properties(
            "AWS::Lambda::Function",
            {
                "Handler": f"lyrics_classifier.handlers.{handler}.handler",
                "MemorySize": DEFAULTS[f"{key}_memory_mb"][0],
                "Timeout": DEFAULTS[f"{key}_timeout_s"][0],
                "ReservedConcurrentExecutions": Match.absent(),
            },
        )



def test_every_bucket_blocks_public_access_encrypts_and_enforces_tls(synth):
    buckets = synth.resources("AWS::S3::Bucket")
    assert len(buckets) == 3  # input, output, access logs
    for props in (b["Properties"] for b in buckets.values()):
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "AES256"
        }
    policies = synth.resources("AWS::S3::BucketPolicy")
    assert {json.dumps(p["Properties"]["Bucket"]) for p in policies.values()} == {
        json.dumps({"Ref": k}) for k in buckets
    }
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
            for s in statements
        )
        assert any(
            s["Effect"] == "Deny" and "s3:TlsVersion" in s.get("Condition", {}).get("NumericLessThan", {})
            for s in statements
        )


def test_input_bucket_versioned_with_eventbridge_and_access_logs(synth):
    props = synth.template_dict["Resources"][synth.logical_id(synth.stack.storage.input_bucket)]["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    assert props["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": synth.logical_id(synth.stack.storage.access_logs)}
    # no notifications custom resource (an extra Lambda) was needed for EventBridge
    assert not synth.resources("Custom::S3BucketNotifications")


def test_output_bucket_work_area_expires(synth):
    props = synth.template_dict["Resources"][synth.logical_id(synth.stack.storage.output_bucket)]["Properties"]
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-work-area"]["Prefix"] == "runs/"
    assert rules["expire-work-area"]["ExpirationInDays"] == DEFAULTS["work_area_expiry_days"][0]
    # a result's upload lives as long as its run: aborted only after the longest execution
    days = -(-DEFAULTS["execution_timeout_s"][0] // 86400) + 1
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": days}
    # results can be replaced (re-uploads, a newer failure): versions keep them recoverable
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert rules["expire-replaced-results"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": DEFAULTS["output_noncurrent_expiry_days"][0]
    }
    assert "LoggingConfiguration" in props


def test_output_bucket_versioning_and_lifecycle_with_cdk_assertions(synth):
    days = -(-DEFAULTS["execution_timeout_s"][0] // 86400) + 1
    assert days * 86400 > DEFAULTS["execution_timeout_s"][0]  # an upload outlives its run
    synth.template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "VersioningConfiguration": {"Status": "Enabled"},
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like(
                            {"Prefix": contract.WORK_PREFIX, "ExpirationInDays": DEFAULTS["work_area_expiry_days"][0]}
                        ),
                        {   # the whole bucket: no Prefix, no filter
                            "Id": "abort-incomplete-uploads",
                            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": days},
                            "Status": "Enabled",
                        },
                        Match.object_like(
                            {"NoncurrentVersionExpiration": {"NoncurrentDays": DEFAULTS["output_noncurrent_expiry_days"][0]}}
                        ),
                    ]
                )
            },
            "LoggingConfiguration": Match.object_like({"LogFilePrefix": "output/"}),
        },
    )


def test_buckets_and_logs_are_retained_by_default(synth):
    for bucket in synth.resources("AWS::S3::Bucket").values():
        assert bucket["DeletionPolicy"] == "Retain"
    for group in synth.resources("AWS::Logs::LogGroup").values():
        assert group["DeletionPolicy"] == "Retain"
        assert group["Properties"]["RetentionInDays"] == DEFAULTS["log_retention_days"][0]


# ------------------------------------------------------------------------ functions

HANDLERS = {
    "Split": "lyrics_classifier.handlers.split.handler",
    "Classify": "lyrics_classifier.handlers.classify.handler",
    "Merge": "lyrics_classifier.handlers.merge.handler",
    "ReportFailure": "lyrics_classifier.handlers.report_failure.handler",
    "Cleanup": "lyrics_classifier.handlers.cleanup.handler",
}


def test_functions_runtime_architecture_memory_tracing_logging(synth):
    functions = synth.resources("AWS::Lambda::Function")
    assert len(functions) == 5  # and nothing else: no custom-resource Lambdas by default
    memory = {
        "Split": DEFAULTS["split_memory_mb"][0],
        "Classify": DEFAULTS["classify_memory_mb"][0],
        "Merge": DEFAULTS["merge_memory_mb"][0],
        "ReportFailure": DEFAULTS["report_failure_memory_mb"][0],
        "Cleanup": DEFAULTS["cleanup_memory_mb"][0],
    }
    for name, fn in synth.stack.functions.by_name.items():
        props = functions[synth.logical_id(fn)]["Properties"]
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == ["arm64"]
        assert props["Handler"] == HANDLERS[name]
        assert props["MemorySize"] == memory[name]
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["LoggingConfig"]["LogFormat"] == "JSON"
        assert props["LoggingConfig"]["ApplicationLogLevel"] == "INFO"
        assert "LogGroup" in props["LoggingConfig"]
        assert "ReservedConcurrentExecutions" not in props  # a reservation fails a small account's deploy
        env = props["Environment"]["Variables"]
        assert env["OUTPUT_BUCKET"] == {"Ref": synth.logical_id(synth.stack.storage.output_bucket)}
        assert env["POWERTOOLS_SERVICE_NAME"] == "lyrics-classifier"
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "LyricsClassifier"
        assert env["LOG_LEVEL"] == "INFO"
    classify = functions[synth.logical_id(synth.stack.functions.classify)]["Properties"]
    assert classify["Environment"]["Variables"]["MODEL_DIR"] == "/var/task/model"
    assert classify["Timeout"] == DEFAULTS["classify_timeout_s"][0]
    split = functions[synth.logical_id(synth.stack.functions.by_name["Split"])]["Properties"]
    assert split["Environment"]["Variables"]["RANGE_BYTES"] == str(DEFAULTS["range_mb"][0] * 1024 * 1024)
    assert split["Timeout"] == DEFAULTS["split_timeout_s"][0]
    # every function the state machine calls is published; it calls those versions
    versions = synth.resources("AWS::Lambda::Version")
    assert {_version_id(synth, synth.stack.functions.by_name[name]) for name in contract.FUNCTION_NAMES} == set(versions)
    assert split["Environment"]["Variables"]["TEXT_COLUMN"] == ""


def _version_id(synth: Synth, fn) -> str:
    """Logical id of the function's published version (CDK appends a code hash at synth)."""
    (version,) = [vid for vid, v in synth.resources("AWS::Lambda::Version").items()
                  if v["Properties"]["FunctionName"] == {"Ref": synth.logical_id(fn)}]  # fmt: skip
    return version


def _bucket_objects(synth: Synth, bucket, prefix: str) -> str:
    return json.dumps({"Fn::Join": ["", [{"Fn::GetAtt": [synth.logical_id(bucket), "Arn"]}, f"/{prefix}*"]]})


def test_function_permissions_are_per_prefix(synth):
    st = synth.stack
    runs = _bucket_objects(synth, st.storage.output_bucket, "runs/")
    results = _bucket_objects(synth, st.storage.output_bucket, "results/")
    failed = _bucket_objects(synth, st.storage.output_bucket, "failed/")
    inputs = _bucket_objects(synth, st.storage.input_bucket, "")
    label_sets = _bucket_objects(synth, st.storage.input_bucket, "labels/")
    s3_grants = {
        name: {a: sorted(r) for a, r in _grants(synth, fn.role).items() if a.startswith("s3:")}
        for name, fn in st.functions.by_name.items()
    }
    input_arn = json.dumps({"Fn::GetAtt": [synth.logical_id(st.storage.input_bucket), "Arn"]})
    output_arn = json.dumps({"Fn::GetAtt": [synth.logical_id(st.storage.output_bucket), "Arn"]})
    both = sorted([input_arn, output_arn])
    assert s3_grants["Split"] == {
        "s3:GetObject": sorted([inputs, label_sets, runs]),  # label_sets: the upload's labels/<folder>.json
        "s3:GetObjectVersion": [inputs],  # the event's version, never "the latest"
        "s3:PutObject": sorted([runs, results]),  # claim, run.json, manifest; CreateMultipartUpload of the result
        "s3:AbortMultipartUpload": [runs],  # a UTF-16 input's transcoded copy
        "s3:DeleteObject": [runs],  # releases its claim when it fails (workflow.release_claim)
        "s3:ListBucket": both,
    }
    assert s3_grants["Classify"] == {
        "s3:GetObject": sorted([inputs, runs]),  # a ranged GET of the version (or of the transcoded copy)
        "s3:GetObjectVersion": [inputs],
        "s3:PutObject": sorted([runs, results]),  # its stats; UploadPart of its range
    }
    assert s3_grants["Merge"] == {
        # runs: run.json, manifest, stats; results: the upload; failed: HeadObject before deleting
        "s3:GetObject": sorted([inputs, runs, results, failed]),
        "s3:GetObjectVersion": [inputs],
        "s3:PutObject": [results],
        "s3:AbortMultipartUpload": [results],
        "s3:ListMultipartUploadParts": [results],
        "s3:DeleteObject": sorted([results, failed]),  # an older version's failure report
        "s3:ListBucket": both,
    }
    assert s3_grants["ReportFailure"] == {
        # input: HeadObject of the current version; results: HeadObject before deleting
        "s3:GetObject": sorted([inputs, runs, results]),
        "s3:PutObject": sorted([runs, failed]),  # a superseded run's report stays in its work area
        "s3:DeleteObject": sorted([runs, results, failed]),  # its claim; an older version's result
        "s3:AbortMultipartUpload": [results],
        "s3:ListBucket": both,
    }
    assert s3_grants["Cleanup"] == {  # ReportFailure's, and it reads whether ReportFailure already reported
        "s3:GetObject": sorted([inputs, runs, results, failed]),
        "s3:PutObject": sorted([runs, failed]),
        "s3:DeleteObject": sorted([runs, results, failed]),
        "s3:AbortMultipartUpload": [results],
        "s3:ListBucket": both,
    }
    # nobody writes the input bucket
    assert not any(inputs in r for g in s3_grants.values() for a, r in g.items() if a != "s3:GetObject" and a != "s3:GetObjectVersion")


def _policy_of(synth: Synth, role) -> dict:
    return {"Roles": Match.array_with([{"Ref": synth.logical_id(role)}])}


def test_iam_statements_with_cdk_assertions(synth):
    t, st = synth.template, synth.stack
    out = synth.logical_id(st.storage.output_bucket)

    def objects(prefix: str) -> dict:
        return {"Fn::Join": ["", [{"Fn::GetAtt": [out, "Arn"]}, f"/{prefix}*"]]}

    def allows(role, actions, resource) -> None:
        # one statement with exactly these actions on exactly this resource (CDK sorts the actions)
        actions = actions if isinstance(actions, str) else sorted(actions)
        resource = sorted(resource, key=json.dumps) if isinstance(resource, list) else resource
        t.has_resource_properties(
            "AWS::IAM::Policy",
            {
                **_policy_of(synth, role),
                "PolicyDocument": {
                    "Statement": Match.array_with([{"Effect": "Allow", "Action": actions, "Resource": resource}])
                },
            },
        )

    allows(st.functions.by_name["Split"].role, ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:DeleteObject"], objects("runs/"))
    allows(st.functions.classify.role, "s3:PutObject", objects("results/"))
    allows(st.functions.by_name["Merge"].role, ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:GetObject",
                              "s3:DeleteObject"], objects("results/"))  # fmt: skip
    allows(st.functions.by_name["ReportFailure"].role, ["s3:PutObject", "s3:DeleteObject"], objects("failed/"))
    allows(st.workflow.state_machine.role, "lambda:InvokeFunction",
           [{"Fn::Join": ["", [{"Fn::GetAtt": [synth.logical_id(st.functions.by_name[name]), "Arn"]}, ":*"]]}
            for name in contract.FUNCTION_NAMES])  # not Cleanup: EventBridge invokes it
    allows(st.workflow.state_machine.role, ["s3:GetObject", "s3:PutObject", "s3:ListMultipartUploadParts",
                                   "s3:AbortMultipartUpload"], objects("runs/"))  # fmt: skip


# Actions that have no resource-level permissions, so Resource '*' is the only option.
STAR_ALLOWED = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


def test_no_wildcard_actions_and_star_resources_only_where_unavoidable(synth):
    for policy_id, policy in synth.resources("AWS::IAM::Policy").items():
        for st in policy["Properties"]["PolicyDocument"]["Statement"]:
            for action in _actions(st):
                assert "*" not in action.split(":", 1)[1].rstrip("*") and not action.endswith(":*"), (policy_id, action)
            if "*" in _resources(st):
                assert set(_actions(st)) <= STAR_ALLOWED, (policy_id, st)
    for role in synth.resources("AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"], role  # no AWS managed policies


def test_function_logs_go_only_to_their_own_log_group(synth):
    for fn in synth.stack.functions.by_name.values():
        logs_grants = {a: r for a, r in _grants(synth, fn.role).items() if a.startswith("logs:")}
        assert set(logs_grants) == {"logs:CreateLogStream", "logs:PutLogEvents"}
        for resources in logs_grants.values():
            assert all("Logs" in r and "GetAtt" in r for r in resources), resources


# -------------------------------------------------------------------- state machine


def test_state_machine_definition_from_the_asl_file_with_substitutions(synth):
    machines = synth.resources("AWS::StepFunctions::StateMachine")
    assert len(machines) == 1
    props = next(iter(machines.values()))["Properties"]
    assert props["StateMachineName"] == f"{STACK}-Workflow"
    assert "DefinitionS3Location" in props  # DefinitionBody.from_file: the file is the asset
    placeholders = set(re.findall(r"\$\{(\w+)\}", ASL_FILE.read_text()))
    assert set(props["DefinitionSubstitutions"]) == placeholders
    assert props["DefinitionSubstitutions"]["MaxConcurrency"] == str(DEFAULTS["map_max_concurrency"][0])
    for name in contract.FUNCTION_NAMES:
        fn = synth.stack.functions.by_name[name]
        assert props["DefinitionSubstitutions"][f"{name}FunctionArn"] == {"Ref": _version_id(synth, fn)}
    assert props["DefinitionSubstitutions"]["ExecutionTimeoutSeconds"] == str(DEFAULTS["execution_timeout_s"][0])
    assert props["DefinitionSubstitutions"]["WorkBucketName"] == {"Ref": synth.logical_id(synth.stack.storage.output_bucket)}
    assert props["DefinitionSubstitutions"]["MapResultsPrefix"] == "runs/map-results"
    assert props["TracingConfiguration"] == {"Enabled": True}
    logging = props["LoggingConfiguration"]
    assert logging["Level"] == "ALL"
    assert logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0] == synth.logical_id(
        synth.stack.workflow.log_group
    )
    group = synth.template_dict["Resources"][synth.logical_id(synth.stack.workflow.log_group)]
    assert group["Properties"]["LogGroupName"]["Fn::Join"][1][0].startswith("/aws/vendedlogs/states/")


def test_state_machine_permissions(synth):
    st = synth.stack
    grants = _grants(synth, st.workflow.state_machine.role)
    # published versions of the four functions only (ARN:*): never $LATEST (the bare ARN)
    assert sorted(grants["lambda:InvokeFunction"]) == sorted(
        json.dumps({"Fn::Join": ["", [{"Fn::GetAtt": [synth.logical_id(st.functions.by_name[name]), "Arn"]}, ":*"]]})
        for name in contract.FUNCTION_NAMES
    )
    runs = [_bucket_objects(synth, st.storage.output_bucket, "runs/")]
    # ItemReader reads the manifest; ResultWriter writes the children's results
    for action in ("s3:GetObject", "s3:PutObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"):
        assert grants[action] == runs
    assert {a for a in grants if a.startswith("s3:")} == {
        "s3:GetObject", "s3:PutObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"
    }
    (start,) = grants["states:StartExecution"]
    assert ":stateMachine:" in start and f"{STACK}-Workflow" in start
    assert synth.logical_id(st.workflow.state_machine) not in start  # built from the name: no circular reference
    for action in ("states:DescribeExecution", "states:StopExecution", "states:RedriveExecution"):
        (resource,) = grants[action]
        assert f":execution:{STACK}-Workflow/*" in resource


def test_upload_rule_starts_the_state_machine(synth):
    props = synth.resources("AWS::Events::Rule")[synth.logical_id(synth.stack.workflow.trigger)]["Properties"]
    assert props["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [{"Ref": synth.logical_id(synth.stack.storage.input_bucket)}]},
            "object": {"key": [{"suffix": {"equals-ignore-case": suffix}}  # SONGS.CSV too
                               for suffix in contract.INPUT_SUFFIXES]},
        },
    }
    (target,) = props["Targets"]
    assert target["Arn"] == {"Ref": synth.logical_id(synth.stack.workflow.state_machine)}
    assert target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0] == synth.logical_id(synth.stack.workflow.trigger_dlq)
    assert "Input" not in target and "InputPath" not in target  # the whole event is the execution input


# ------------------------------------------------------------ the first deploy, and the next

# Properties that give a resource a fixed physical name. A resource CloudFormation keeps (on a
# failed creation's rollback or on `cdk destroy`) must not have one: the next deploy would
# fail with "already exists".
NAME_PROPERTIES = ("BucketName", "LogGroupName", "FunctionName", "QueueName", "TopicName", "StateMachineName",
                   "RoleName", "DashboardName", "TableName", "KeyAlias", "AliasName", "Name")


def test_the_defaults_deploy_on_a_new_account_and_again_after_a_rollback(synth):
    """A new account can have a Lambda concurrency of 10 and AWS keeps 100 unreserved, so no
    function reserves any by default; and nothing that outlives the stack has a fixed name."""
    functions = synth.resources("AWS::Lambda::Function")
    assert len(functions) == 5
    assert not [lid for lid, fn in functions.items() if "ReservedConcurrentExecutions" in fn["Properties"]]
    kept = {lid: r for lid, r in synth.template_dict["Resources"].items()
            if "Retain" in (r.get("DeletionPolicy", ""), r.get("UpdateReplacePolicy", ""))}
    assert len(kept) >= 10  # buckets, log groups, function versions
    for lid, resource in kept.items():
        for prop in NAME_PROPERTIES:
            name = resource.get("Properties", {}).get(prop)
            # generated: none given, a reference to another resource's generated name, or the stack's id in it
            generated = name is None or "AWS::StackId" in json.dumps(name) or re.search(
                r'"(Ref|Fn::GetAtt)": \[?"(?!AWS::)', json.dumps(name))
            assert generated, f"{lid} is retained with the fixed {prop} {name!r}"
    workflow_logs = synth.template_dict["Resources"][synth.logical_id(synth.stack.workflow.log_group)]
    name = workflow_logs["Properties"]["LogGroupName"]
    assert name["Fn::Join"][1][0] == f"/aws/vendedlogs/states/{STACK}-Workflow-"  # vended-logs prefix kept
    assert "AWS::StackId" in json.dumps(name)


def _asl() -> dict:
    from lyrics_classifier import local

    return json.loads(local.load_definition(50))


def _task_states(asl: dict) -> dict[str, dict]:
    tasks = {}
    for name, state in asl["States"].items():
        if state["Type"] == "Task":
            tasks[name] = state
        for nested in (state.get("ItemProcessor") or {}).get("States", {}).items():
            if nested[1]["Type"] == "Task":
                tasks[nested[0]] = nested[1]
    return tasks


def _mean_wait_seconds(retrier: dict) -> float:
    """What a retrier waits in all, on average, before it gives up (FULL jitter: half of each delay)."""
    interval, rate = retrier.get("IntervalSeconds", 1), retrier.get("BackoffRate", 2.0)
    cap = retrier.get("MaxDelaySeconds", float("inf"))
    delays = [min(interval * rate**attempt, cap) for attempt in range(retrier.get("MaxAttempts", 3))]
    return sum(delays) / (2 if retrier.get("JitterStrategy") == "FULL" else 1)


def test_every_step_waits_out_throttling_and_retries_a_timeout(capsys):
    tasks = _task_states(_asl())
    assert set(tasks) == {"Split", "Classify", "Merge", "ReportFailure"}
    patience = {}
    for name, state in tasks.items():
        (throttle,) = [r for r in state["Retry"] if "Lambda.TooManyRequestsException" in r["ErrorEquals"]]
        patience[name] = _mean_wait_seconds(throttle)
        assert patience[name] >= 3600, f"{name} gives up on throttling after {patience[name] / 60:.0f} minutes"
        caught = {error for r in state["Retry"] if r.get("MaxAttempts", 3) > 0 for error in r["ErrorEquals"]}
        assert {"Sandbox.Timedout", "States.Timeout"} <= caught, f"{name} does not retry a timeout"
        assert {"Lambda.ServiceException", "Lambda.SdkClientException",
                "Lambda.ClientExecutionTimeoutException"} <= caught, f"{name}: a lost response is not retried"
    with capsys.disabled():
        print("\nmean throttle patience (minutes): " + ", ".join(f"{k} {v / 60:.0f}" for k, v in patience.items()))


def test_uncaught_endings_run_cleanup(synth):
    """An execution's own timeout, a stop or a failure inside ReportFailure never reach the
    Catch: a rule on the execution's status change runs Cleanup, with its own dead letters."""
    rule = synth.resources("AWS::Events::Rule")[synth.logical_id(synth.stack.workflow.cleanup_rule)]["Properties"]
    assert rule["EventPattern"] == {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"stateMachineArn": [{"Ref": synth.logical_id(synth.stack.workflow.state_machine)}],
                   "status": ["FAILED", "TIMED_OUT", "ABORTED"]},
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [synth.logical_id(synth.stack.functions.cleanup), "Arn"]}
    assert target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0] == synth.logical_id(synth.stack.workflow.cleanup_dlq)
    synth.template.has_resource_properties("AWS::Lambda::Permission", {
        "Action": "lambda:InvokeFunction", "Principal": "events.amazonaws.com",
        "FunctionName": {"Fn::GetAtt": [synth.logical_id(synth.stack.functions.cleanup), "Arn"]},
    })
    # the state machine invokes the ASL's four functions, never Cleanup
    assert "Cleanup" not in json.dumps(_asl())


# ----------------------------------------------------------------------- operations


def test_alarms_notify_the_encrypted_topic(synth):
    topic_id = synth.logical_id(synth.stack.monitoring.alarm_topic)
    alarms = synth.resources("AWS::CloudWatch::Alarm")

    def dimension(alarm: dict) -> str:
        (d,) = alarm["Properties"].get("Dimensions", [{"Value": None}])
        return json.dumps(d["Value"])

    watched = sorted((a["Properties"]["Namespace"], a["Properties"]["MetricName"], dimension(a)) for a in alarms.values())
    machine = json.dumps({"Ref": synth.logical_id(synth.stack.workflow.state_machine)})
    fn = {name: json.dumps({"Ref": synth.logical_id(f)}) for name, f in synth.stack.functions.by_name.items()}
    queue = json.dumps({"Fn::GetAtt": [synth.logical_id(synth.stack.workflow.trigger_dlq), "QueueName"]})
    cleanup_queue = json.dumps({"Fn::GetAtt": [synth.logical_id(synth.stack.workflow.cleanup_dlq), "QueueName"]})
    assert watched == sorted(
        [
            ("AWS/States", "ExecutionsFailed", machine),
            ("AWS/States", "ExecutionsTimedOut", machine),  # execution_timeout_s reached
            ("AWS/States", "ExecutionsAborted", machine),
            ("AWS/States", "ExecutionThrottled", machine),
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible", queue),
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible", cleanup_queue),  # a run left without its report
            ("AWS/Lambda", "Throttles", fn["Classify"]),  # the one invoked per range
            *(("AWS/Lambda", "Errors", ref) for ref in fn.values()),
        ]
    )
    for alarm in alarms.values():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": topic_id}]
        assert props["Threshold"] == 1 and props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert props["TreatMissingData"] == "notBreaching"
    synth.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": "AWS/States",
            "MetricName": "ExecutionsTimedOut",
            "AlarmDescription": Match.string_like_regexp(str(DEFAULTS["execution_timeout_s"][0])),
            "Statistic": "Sum",
            "Period": 300,
        },
    )
    topic = synth.template_dict["Resources"][topic_id]["Properties"]
    assert "KmsMasterKeyId" in topic
    (key,) = synth.resources("AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True
    assert "cloudwatch.amazonaws.com" in json.dumps(key["Properties"]["KeyPolicy"])
    assert not synth.resources("AWS::SNS::Subscription")  # alarm_email empty by default


def test_dashboard_shows_executions_rows_and_errors(synth):
    (dashboard,) = synth.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for needle in ("ExecutionsStarted", "ExecutionsFailed", "ExecutionTime", "RowsClassified", "RowsIn", "RowsRejected",
                   "LyricsClassifier", "Errors", "Throttles", "Duration", "ExecutionsTimedOut",
                   "ExecutionThrottled", "ConcurrentExecutions"):  # fmt: skip
        assert needle in body, needle


def test_stack_outputs(synth):
    outputs = synth.template_dict["Outputs"]
    assert set(contract.STACK_OUTPUTS) <= set(outputs)
    assert "states/home" in json.dumps(outputs["StateMachineConsoleUrl"])
    assert outputs["InputSuffix"]["Value"] == ",".join(contract.INPUT_SUFFIXES)  # any case


OVERRIDES = dict(
    architecture="x86_64",
    classify_memory_mb=3008,
    classify_reserved_concurrency=20,  # reserved only when asked (a large account)
    cleanup_memory_mb=512,
    workflow_reserved_concurrency=5,
    map_max_concurrency=8,
    range_mb=16,
    execution_timeout_s=7200,
    input_prefix="uploads/",
    input_suffix=".tsv",
    work_area_expiry_days=2,
    log_retention_days=14,
    log_level="DEBUG",
    alarm_email="ops@example.com",
    removal_policy="destroy",
    stack_name="LyricsTest",
)


@pytest.fixture(scope="session")
def synth_overrides(tmp_path_factory, model_dir):
    """Every setting changed from its default (x86_64 also gives an asset this machine can run)."""
    outdir = tmp_path_factory.mktemp("cdk-overrides")
    stack, error = _synth(outdir, _context(model_dir, **OVERRIDES))
    assert error is None, error
    return outdir, stack


def test_context_overrides_reach_the_template(synth_overrides):
    outdir, stack = synth_overrides
    t = json.loads((outdir / "LyricsTest.template.json").read_text())
    res = t["Resources"]
    lid = lambda c: stack.resolve(stack.get_logical_id(c.node.default_child))  # noqa: E731
    classify = res[lid(stack.functions.classify)]["Properties"]
    assert classify["Architectures"] == ["x86_64"]
    assert classify["MemorySize"] == 3008
    assert classify["ReservedConcurrentExecutions"] == 20
    assert res[lid(stack.functions.cleanup)]["Properties"]["MemorySize"] == 512
    for fn in (stack.functions.by_name[name] for name in ("Split", "Merge", "ReportFailure")):
        assert res[lid(fn)]["Properties"]["ReservedConcurrentExecutions"] == 5
    assert classify["LoggingConfig"]["ApplicationLogLevel"] == "DEBUG"
    assert res[lid(stack.functions.by_name["Split"])]["Properties"]["Environment"]["Variables"]["RANGE_BYTES"] == str(16 * 1024 * 1024)
    sm = res[lid(stack.workflow.state_machine)]["Properties"]
    assert sm["DefinitionSubstitutions"]["MaxConcurrency"] == "8"
    assert sm["DefinitionSubstitutions"]["ExecutionTimeoutSeconds"] == "7200"
    assert sm["StateMachineName"] == "LyricsTest-Workflow"
    rule = res[lid(stack.workflow.trigger)]
    # a prefix and a suffix: EventBridge cannot AND a prefix with suffix-ignoring-case, so the
    # suffix matches in lower or upper case
    assert rule["Properties"]["EventPattern"]["detail"]["object"]["key"] == [
        {"wildcard": "uploads/*.tsv"}, {"wildcard": "uploads/*.TSV"}]
    out_rules = res[lid(stack.storage.output_bucket)]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert {"Id": "expire-work-area", "Prefix": "runs/", "ExpirationInDays": 2, "Status": "Enabled"} in out_rules
    assert any(r["Type"] == "AWS::SNS::Subscription" and r["Properties"]["Endpoint"] == "ops@example.com" for r in res.values())
    for r in res.values():
        if r["Type"] == "AWS::S3::Bucket":
            assert r["DeletionPolicy"] == "Delete"
        if r["Type"] == "AWS::Logs::LogGroup":
            assert r["Properties"]["RetentionInDays"] == 14
    # split's input grant follows the prefix
    split_role = lid(stack.functions.by_name["Split"].role)
    split_policy = json.dumps(
        [r for r in res.values() if r["Type"] == "AWS::IAM::Policy" and split_role in json.dumps(r["Properties"]["Roles"])]
    )
    assert "/uploads/*" in split_policy
    # the x86_64 classify asset carries x86_64 wheels
    asset = outdir / f"asset.{classify['Code']['S3Key'].removesuffix('.zip')}"
    assert list((asset / "onnxruntime" / "capi").glob("*x86_64*")) or any(
        "x86_64" in p.read_text() for p in asset.glob("onnxruntime-*.dist-info/WHEEL")
    )
    # destroy mode: cdk-nag is clean too (the auto-delete provider is acknowledged)
    report = json.loads((outdir / "validation-report.json").read_text())
    assert not [r for r in report["pluginReports"] if r["pluginName"] == "AwsSolutions" and r["violations"]]


# -------------------------------------------------------------------------- cdk-nag


def test_cdk_nag_report_exists_and_has_no_unacknowledged_findings(synth):
    report_file = synth.outdir / "validation-report.json"
    assert report_file.exists(), "no validation report: is the AwsSolutions plugin registered?"
    report = json.loads(report_file.read_text())
    unacknowledged = [
        (v["ruleName"], c["constructPath"])
        for r in report["pluginReports"]
        for v in r["violations"]
        for c in v["violatingConstructs"]
        if v["severity"] in ("error", "fatal", "warning")
    ]
    assert unacknowledged == []


def test_cdk_nag_actually_runs(raw_findings):
    """Without the acknowledgements the same app must fail with findings: proves the plugin ran."""
    synth, findings = raw_findings
    assert synth.error is not None and "ValidationFailed" in str(synth.error)
    assert findings


def test_every_acknowledgement_matches_a_finding_and_every_finding_is_acknowledged(synth, raw_findings):
    _, findings = raw_findings
    acknowledgements = synth.stack.ACKNOWLEDGEMENTS

    def covers(ack, finding) -> bool:
        path, rule, _reason = ack
        return rule == finding["rule"] and (finding["path"] == path or finding["path"].startswith(path + "/"))

    unmatched = [a for a in acknowledgements if not any(covers(a, f) for f in findings)]
    assert unmatched == [], "acknowledgements that match no finding (stale or misspelled)"
    unacknowledged = [f for f in findings if not any(covers(a, f) for a in acknowledgements)]
    assert unacknowledged == []
    print("\ncdk-nag acknowledgements:")
    for path, rule, reason in acknowledgements:
        assert len(reason) >= 60 and not reason.lower().startswith(("todo", "n/a", "ignore"))
        print(f"  {rule}  @ {path}\n      {reason}")


def test_acknowledge_refuses_ids_that_would_match_nothing():
    from aws_cdk import Stack

    stack = Stack(App(), "S")
    with pytest.raises(ValueError, match="bare"):
        nag.acknowledge(stack, "AwsSolutions::AwsSolutions-IAM5", "a reason long enough to pass the length check here")
    with pytest.raises(ValueError, match="reason"):
        nag.acknowledge(stack, "AwsSolutions-IAM5", "because")


# ---------------------------------------------------------------------- logical IDs

# The logical IDs of the stack as deployed before infra/ was split into constructs: a change
# of any would make the next `cdk deploy` replace the resource (a retained bucket orphaned
# beside a new empty one, a state machine's history gone).
DEPLOYED_LOGICAL_IDS = {
    "AccessLogs8B620ECA", "Input49F21B70", "OutputAB65CDDE",
    "Split8EBC8DD5", "Classify5848C28F", "Merge2365FAD5", "ReportFailure85F407E6",
    "SplitLogsE8839DA9", "ClassifyLogs38813EB7", "MergeLogs48E50530", "ReportFailureLogsB4FDED6C",
    "SplitRoleE6E24383", "ClassifyRole3C2C84AC", "MergeRoleC1AB97BF", "ReportFailureRole7DA59299",
    "Workflow193EF7C1", "WorkflowLogs6DD5EEB0", "WorkflowRole98C7DC98", "OnUpload071E41C7",
    "TriggerDeadLetters88A2981F", "AlarmTopicKey57B0D3A7", "Alarms04B5A0BF", "Dashboard9E4231ED",
}  # fmt: skip


def test_constructs_keep_the_logical_ids_of_deployed_stacks(synth):
    resources = synth.template_dict["Resources"]
    assert DEPLOYED_LOGICAL_IDS <= set(resources), sorted(DEPLOYED_LOGICAL_IDS - set(resources))
    # while the resources sit in constructs (Storage, Functions, ...) that the IDs leave out
    assert synth.stack.storage.input_bucket.node.path == f"{STACK}/Storage/Input"
    assert synth.logical_id(synth.stack.storage.input_bucket) == "Input49F21B70"


def test_grouped_stack_makes_the_ids_cdk_makes_outside_groups():
    """GroupedStack re-implements CDK's logical ID scheme: without a Group in the path it must
    give exactly CDK's IDs (nested paths, 'Resource'/'Default' ids, repeated ids, long ids)."""
    from aws_cdk import Stack
    from aws_cdk import aws_sqs as sqs
    from constructs import Construct

    from infra.logical_ids import Group, GroupedStack

    def ids(stack_class, grouped: bool) -> list[str]:
        stack = stack_class(App(), "S")
        parent = Group(stack, "Group") if grouped else stack
        level = Construct(parent, "Outer")
        queues = [
            sqs.Queue(parent, "Top"),
            sqs.Queue(level, "Queue"),
            sqs.Queue(Construct(level, "Repeated"), "Repeated"),
            sqs.Queue(Construct(level, "Default"), "Inner"),
            sqs.Queue(level, "x" * 300),
        ]
        return [stack.resolve(stack.get_logical_id(q.node.default_child)) for q in queues]

    assert ids(GroupedStack, grouped=False) == ids(Stack, grouped=False)
    assert ids(GroupedStack, grouped=True) == ids(Stack, grouped=False)


# ------------------------------------------------------------------------- cfn-lint


CFN_LINT = Path(sys.executable).parent / "cfn-lint"  # `python -m cfnlint` does not exist (no __main__)


@pytest.mark.parametrize("which", ["defaults", "overrides"])
def test_cfn_lint_has_no_errors(which, synth, synth_overrides):
    template = (
        synth.outdir / f"{STACK}.template.json" if which == "defaults" else synth_overrides[0] / "LyricsTest.template.json"
    )
    result = subprocess.run([str(CFN_LINT), "--format", "parseable", str(template)], capture_output=True, text=True)
    print(result.stdout)
    # exit status bits: 1 = cfn-lint itself failed, 2 = errors, 4 = warnings, 8 = informational
    assert result.returncode & 3 == 0, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if re.search(r":E\d{4}:", line)]
    assert errors == []
    # it did read the template: every line it prints names it
    assert all(line.startswith(str(template)) for line in result.stdout.splitlines()), result.stdout


# ---------------------------------------------------------------------- ASL + CLI


def _npx(*args: str, **kwargs) -> subprocess.CompletedProcess:
    if not (REPO / "node_modules" / ".bin" / args[0]).exists():
        pytest.fail(f"node_modules/.bin/{args[0]} missing: run `make test` (it runs `npm ci`) or `npm ci`")
    env = {**os.environ, "CDK_DISABLE_CLI_TELEMETRY": "true"}
    return subprocess.run(["npx", "--no-install", *args], cwd=REPO, env=env, capture_output=True, text=True, **kwargs)


def test_asl_after_substitution_is_valid(synth, tmp_path):
    substitutions = {
        name: f"arn:aws:lambda:eu-west-1:123456789012:function:{name.removesuffix('FunctionArn')}"
        for name in synth.stack.workflow.definition_substitutions
    }
    for number in ("MaxConcurrency", "ExecutionTimeoutSeconds"):
        substitutions[number] = synth.stack.workflow.definition_substitutions[number]
    substitutions["WorkBucketName"] = "lyrics-output"
    substitutions["MapResultsPrefix"] = "runs/map-results"
    text = re.sub(r"\$\{(\w+)\}", lambda m: substitutions[m.group(1)], ASL_FILE.read_text())
    definition = json.loads(text)  # JSON only after substitution (MaxConcurrency is unquoted)
    assert definition["States"]["ClassifyRanges"]["MaxConcurrency"] == DEFAULTS["map_max_concurrency"][0]
    assert definition["TimeoutSeconds"] == DEFAULTS["execution_timeout_s"][0]
    # Throttling slows a run down for tens of minutes before it fails it.
    classify = definition["States"]["ClassifyRanges"]["ItemProcessor"]["States"]["Classify"]
    (throttled,) = [r for r in classify["Retry"] if r["ErrorEquals"] == ["Lambda.TooManyRequestsException"]]
    waits = [min(throttled["IntervalSeconds"] * throttled["BackoffRate"] ** n, throttled["MaxDelaySeconds"])
             for n in range(throttled["MaxAttempts"])]
    assert throttled["JitterStrategy"] == "FULL" and sum(waits) / 2 > 20 * 60  # mean wait with full jitter
    path = tmp_path / "workflow.json"
    path.write_text(text)
    result = _npx("asl-validator", "--json-path", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_cdk_synth_through_the_pinned_cli(tmp_path, model_dir, synth):
    version = _npx("cdk", "--version")
    pinned = json.loads((REPO / "package.json").read_text())["devDependencies"]["aws-cdk"]
    assert version.stdout.startswith(pinned), version.stdout
    result = _npx(
        "cdk", "synth", "--no-notices", "--quiet", "--output", str(tmp_path / "cdk.out"),
        "--context", f"model_dir={model_dir}",
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "cdk.out" / f"{STACK}.template.json").exists()
    assert (tmp_path / "cdk.out" / "validation-report.json").exists()


# ------------------------------------------------------------------------- assets


def test_classify_asset_fits_lambda_and_holds_only_what_it_needs(synth, model_dir):
    asset = synth.asset_dir(synth.stack.functions.classify)
    size = directory_size(asset)
    model_size = directory_size(model_dir)
    print(f"\nclassify asset ({synth.stack.settings.architecture}): {size / 2**20:.1f} MiB unzipped "
          f"(model {model_size / 2**20:.1f} MiB, Lambda's limit 250 MiB, ours 200)")  # fmt: skip
    assert size < LAMBDA_UNZIPPED_LIMIT
    assert size <= 200 * 2**20  # headroom below Lambda's limit for the next dependency
    assert (asset / "model" / "model.onnx").is_file()
    assert (asset / "lyrics_classifier" / "handlers" / "classify.py").is_file()
    for package in ("onnxruntime", "tokenizers", "numpy", "py3langid", "aws_lambda_powertools"):
        assert (asset / package).is_dir(), package
    for pruned in ("onnxruntime/transformers", "onnxruntime/quantization", "numpy/_core/tests"):
        assert not (asset / pruned).exists(), pruned
    for unwanted in ("torch", "transformers", "huggingface_hub", "boto3", "botocore", "moto", "pandas"):
        assert not (asset / unwanted).exists(), unwanted
    assert not (asset / "lyrics_classifier" / "modelbuild").exists()
    assert not list(asset.rglob("__pycache__"))
    wheel = next(asset.glob("onnxruntime-*.dist-info/WHEEL")).read_text()
    assert "cp312" in wheel and "aarch64" in wheel, wheel


def test_workflow_asset_is_small(synth):
    asset = synth.asset_dir(synth.stack.functions.by_name["Split"])
    size = directory_size(asset)
    print(f"\nsplit/merge/report-failure/cleanup asset: {size / 2**20:.1f} MB unzipped")
    assert size < 50 * 2**20  # powertools and the pinned boto3/botocore
    assert (asset / "aws_lambda_powertools").is_dir()
    # its own boto3, not the runtime's (IfNoneMatch, checksums): the version the tests run
    import botocore

    assert (asset / f"botocore-{botocore.__version__}.dist-info").is_dir()
    for unwanted in ("onnxruntime", "numpy", "tokenizers", "model"):
        assert not (asset / unwanted).exists(), unwanted
    assert synth.asset_dir(synth.stack.functions.by_name["Merge"]) == asset == synth.asset_dir(synth.stack.functions.by_name["ReportFailure"])


def test_dependency_install_is_cached(synth):
    spec = AssetSpec("workflow", REPO / "lambdas" / "requirements-workflow.txt", "arm64")
    started = time.perf_counter()
    target = install_dependencies(spec)
    assert time.perf_counter() - started < 1.0  # no pip run: the synth above filled the cache
    assert (target / ".complete").exists()


def test_asset_hash_follows_the_inputs(tmp_path, model_dir):
    copy_dir = tmp_path / "model"
    shutil.copytree(model_dir, copy_dir)
    spec = AssetSpec("classify", REPO / "lambdas" / "requirements-classify.txt", "arm64", model_dir=copy_dir)
    before = spec.asset_hash()
    assert spec.asset_hash() == before
    (copy_dir / "config.json").write_text((copy_dir / "config.json").read_text() + " ")
    assert spec.asset_hash() != before
    other_arch = AssetSpec("classify", spec.requirements, "x86_64", model_dir=copy_dir)
    assert other_arch.asset_hash() != spec.asset_hash()


def _python312() -> str | None:
    found = shutil.which("python3.12")
    if found and subprocess.run([found, "--version"], capture_output=True).returncode == 0:
        return found
    candidates = sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))
    return str(candidates[-1]) if candidates else None


def test_x86_64_classify_asset_runs_on_python_312_by_itself(synth_overrides, tmp_path):
    """The asset alone (plus boto3, which the Lambda runtime provides) imports every handler and
    classifies with the bundled model. Run in an isolated Python 3.12 (no site-packages): a
    dependency missing from the asset fails here. arm64 cannot run on this machine; its asset
    differs only in the wheels' platform tag."""
    python = _python312()
    if python is None:
        pytest.skip("no Python 3.12 interpreter on this machine")
    outdir, stack = synth_overrides
    code = json.loads((outdir / "LyricsTest.template.json").read_text())["Resources"][
        stack.resolve(stack.get_logical_id(stack.functions.classify.node.default_child))
    ]["Properties"]["Code"]
    asset = outdir / f"asset.{code['S3Key'].removesuffix('.zip')}"
    # What the Lambda Python runtime brings: boto3 and its dependencies (pure Python).
    runtime = tmp_path / "lambda-runtime"
    runtime.mkdir()
    site = Path(__import__("boto3").__file__).parents[1]
    for name in ("boto3", "botocore", "s3transfer", "dateutil", "urllib3", "six.py"):
        if (site / name).exists():
            (runtime / name).symlink_to(site / name)
    script = f"""
import sys
sys.path[:0] = [{str(asset)!r}, {str(runtime)!r}]
import importlib
for name in ("split", "classify", "merge", "report_failure"):
    importlib.import_module("lyrics_classifier.handlers." + name)
import onnxruntime, tokenizers, numpy
assert onnxruntime.__file__.startswith({str(asset)!r}), onnxruntime.__file__
from lyrics_classifier.runtime import Classifier
clf = Classifier.load({str(asset / "model")!r}, threads=1)
preds = clf.classify(["la la la I love you baby, dancing all night", "whiskey on the tailgate, dirt road home"])
assert len(preds) == 2, preds
print("ok", onnxruntime.__version__, [p.label for p in preds])
"""
    env = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "eu-west-1", "HOME": str(tmp_path)}
    result = subprocess.run([python, "-I", "-S", "-c", script], capture_output=True, text=True, env=env, timeout=300)
    print(result.stdout, result.stderr[-3000:])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok 1.32.0" in result.stdout


# ------------------------------------------------------------------------- checkov

# checkov is a test dependency (pyproject.toml), installed next to this interpreter.
CHECKOV = Path(sys.executable).parent / "checkov"


def _checkov(template: Path) -> dict:
    done = subprocess.run(
        [str(CHECKOV), "-f", str(template), "--framework", "cloudformation",
         "-o", "json", "--soft-fail", "--skip-download"],  # no network: no guideline download
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["summary"]["parsing_errors"] == 0
    return report


def _checks(report: dict, kind: str) -> set[tuple[str, str]]:
    return {(c["check_id"], c["resource"].split(".")[-1]) for c in report["results"][kind]}


def test_checkov_finds_at_most_three_unexplained_issues(synth, tmp_path):
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} missing: `pip install -e '.[test]'` (or `make test`) installs checkov")
    report = _checkov(synth.outdir / f"{STACK}.template.json")
    failed = sorted(_checks(report, "failed_checks"))
    print(f"\ncheckov: {report['summary']}; failed: {failed}")
    assert len(failed) <= 3, failed
    # every skip carries its reason in the template (checkov's convention)
    for check in report["results"]["skipped_checks"]:
        assert len((check.get("check_result", {}).get("suppress_comment") or "").split()) >= 8, check
    # the real findings are fixed, not skipped: output versioning
    skipped = _checks(report, "skipped_checks")
    assert ("CKV_AWS_21", synth.logical_id(synth.stack.storage.output_bucket)) not in skipped
    # no reservation by default, on purpose: a small account could not deploy one
    (unreserved,) = [c for c in report["results"]["skipped_checks"] if c["check_id"] == "CKV_AWS_115"
                     and c["resource"].endswith(synth.logical_id(synth.stack.functions.classify))]
    assert "100" in unreserved["check_result"]["suppress_comment"]
    # and no skip is stale: without the skips, each of them is a failed check
    bare = copy.deepcopy(synth.template_dict)
    for resource in bare["Resources"].values():
        resource.get("Metadata", {}).pop("checkov", None)
    (tmp_path / "bare.template.json").write_text(json.dumps(bare))
    unskipped = _checkov(tmp_path / "bare.template.json")
    assert skipped <= _checks(unskipped, "failed_checks"), "checkov skips that skip a passing check"
    assert unskipped["summary"]["skipped"] == 0
