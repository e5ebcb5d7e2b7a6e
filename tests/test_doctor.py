"""`lyrics-classifier doctor` against moto's in-process AWS.

moto (5.2) does not implement Lambda's GetAccountSettings (it answers 404 "Not yet
implemented"), and MOTO_LAMBDA_CONCURRENCY_QUOTA only guards PutFunctionConcurrency. So the
account's concurrency is emulated by a botocore `before-send.lambda.GetAccountSettings`
handler that answers with the real API's JSON. It is added to botocore's BUILTIN_HANDLERS
(as moto adds its own stubber), so the sessions doctor creates get it; botocore calls the
handlers of the more specific event first, so it answers before moto's `before-send` one.
"""

from __future__ import annotations

import ast
import json
import logging
import socket
from pathlib import Path

import boto3
import botocore.handlers
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from lyrics_classifier import doctor
from lyrics_classifier.cli import main

REPO = Path(__file__).resolve().parents[1]
ACCOUNT = "123456789012"  # moto's
REGION = "us-east-1"
BOOTSTRAP = "/cdk-bootstrap/hnb659fds/version"


class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_kwargs):
        yield self.body


def _answer(status: int, payload: dict | str, content_type: str = "application/json"):
    body = (payload if isinstance(payload, str) else json.dumps(payload)).encode()

    def handler(request, **_kwargs):
        return AWSResponse(request.url, status, {"Content-Type": content_type}, _Body(body))

    return handler


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
    """A clean AWS environment: fake credentials, us-east-1, no config files, no endpoint."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN",
                 "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_LAMBDA", "AWS_ENDPOINT_URL_SSM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    return project


def write_cdk_json(folder: Path, **context) -> Path:
    """cdk.json with the repo's context (the stack's defaults), changed by `context`."""
    document = json.loads((REPO / "cdk.json").read_text())
    document["context"].update(context)
    path = folder / "cdk.json"
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
def lambda_account(monkeypatch):
    """lambda_account(limit, unreserved): what GetAccountSettings answers from now on."""

    def emulate(limit: int, unreserved: int | None = None) -> None:
        payload = {
            "AccountLimit": {"TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000,
                             "CodeSizeZipped": 52428800, "ConcurrentExecutions": limit,
                             "UnreservedConcurrentExecutions": limit if unreserved is None else unreserved},
            "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 0},
        }
        monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", [
            *botocore.handlers.BUILTIN_HANDLERS, ("before-send.lambda.GetAccountSettings", _answer(200, payload)),
        ])

    return emulate


@pytest.fixture(scope="module")
def moto():
    """One in-process moto for the module (starting one per test costs more than the tests)."""
    with mock_aws():
        yield


def set_bootstrap(version: str | None) -> None:
    """`cdk bootstrap`'s version parameter in moto's account (None: not bootstrapped)."""
    # AWS's own endpoint (moto answers it), whatever AWS_ENDPOINT_URL a test has set
    ssm = boto3.client("ssm", region_name=REGION, endpoint_url=f"https://ssm.{REGION}.amazonaws.com")
    if version is None:
        ssm.delete_parameters(Names=[BOOTSTRAP])
    else:
        ssm.put_parameter(Name=BOOTSTRAP, Value=version, Type="String", Overwrite=True)


@pytest.fixture
def account(moto, aws_env):
    """moto's account, bootstrapped (version 30), with the repo's cdk.json in the current directory."""
    write_cdk_json(aws_env)
    set_bootstrap("30")
    yield
    set_bootstrap(None)


def doctor_lines(capsys, *args: str) -> tuple[int, dict[str, str]]:
    code = main(["doctor", *args])
    out = capsys.readouterr().out
    lines = {}
    for line in out.splitlines():
        status, _, rest = line.partition("  ")
        what, _, message = rest.strip().partition(": ")
        assert status.strip() in ("ok", "warn", "FAIL"), line
        lines[what] = f"{status.strip()} {message}"
    return code, lines


def test_default_account_passes_and_prints_the_numbers(account, lambda_account, capsys):
    lambda_account(1000)  # AWS's default quota
    code, lines = doctor_lines(capsys)
    assert code == 0
    assert lines["region"] == f"ok {REGION}"
    assert lines["credentials"].startswith(f"ok account {ACCOUNT} as arn:aws:")
    assert lines["cdk context"].startswith("ok ") and lines["cdk context"].endswith("cdk.json")
    assert lines["lambda concurrency"] == (
        "ok account limit 1000, 1000 unreserved; the stack reserves none (at most 900 can be reserved: "
        "AWS keeps 100 unreserved); map_max_concurrency 50 < 1000"
    )
    assert lines["cdk bootstrap"] == f"ok version 30 in aws://{ACCOUNT}/{REGION}"
    assert lines["architecture"] == "ok arm64 (Graviton); for x86_64 deploy with -c architecture=x86_64"


def settings(**changes) -> dict:
    return {**doctor.CONTEXT_DEFAULTS, **changes}


def test_reservations_that_fit_and_do_not():
    """The arithmetic alone: reservations must leave 100 of the unreserved concurrency."""
    check = doctor.concurrency_check(1000, 950, settings(classify_reserved_concurrency=800,
                                                         workflow_reserved_concurrency=5))
    assert check.status == "ok"
    assert check.message.startswith("account limit 1000, 950 unreserved; the stack reserves 820 (at most 850 ")
    check = doctor.concurrency_check(1000, 950, settings(classify_reserved_concurrency=840,
                                                         workflow_reserved_concurrency=5))
    assert check.status == "FAIL"
    assert check.message == (
        "the deploy would fail creating the functions with reserved concurrency (Classify 840, "
        "Split, Merge, ReportFailure and Cleanup 5 each): set -c classify_reserved_concurrency=0 "
        "-c workflow_reserved_concurrency=0 (unreserved, the default), or reserve at most 850 in all; "
        "the stack reserves 860, more than the 850 this account can reserve (account limit 1000, 950 unreserved, "
        "and AWS keeps 100 unreserved)"
    )
    assert doctor.concurrency_check(1000, 950, settings(map_max_concurrency=1000)).status == "warn"
    assert doctor.concurrency_check(1000, 950, settings(map_max_concurrency=999)).status == "ok"
    tiny = doctor.concurrency_check(3, 3, settings())
    assert tiny.status == "warn" and "-c map_max_concurrency=1 " in tiny.message


def test_ten_concurrency_account_with_a_reservation_fails(account, lambda_account, capsys):
    lambda_account(10)
    code, lines = doctor_lines(capsys, "-c", "classify_reserved_concurrency=50")
    assert code == 1
    message = lines["lambda concurrency"]
    assert message.startswith(
        "FAIL the deploy would fail creating the Classify function: set -c classify_reserved_concurrency=0 "
    )
    assert ("; the stack reserves 50, and this account can reserve nothing (account limit 10, 10 unreserved, "
            "and AWS keeps 100 unreserved)") in message
    assert message.endswith("Also set -c map_max_concurrency=6: 50 >= the account's limit of 10 would throttle runs")
    # the same from cdk.json
    write_cdk_json(Path.cwd(), classify_reserved_concurrency=50)
    code, lines = doctor_lines(capsys)
    assert code == 1 and lines["lambda concurrency"].startswith("FAIL the deploy would fail creating the Classify function")


def test_ten_concurrency_account_with_the_defaults_warns_about_the_map(account, lambda_account, capsys):
    lambda_account(10)
    code, lines = doctor_lines(capsys)
    assert code == 0
    message = lines["lambda concurrency"]
    assert message.startswith("warn map_max_concurrency 50 >= the account's limit of 10 concurrent executions "
                              "(10 unreserved): runs will be throttled and slowed down")
    assert "about 2 hours per step" in message
    assert "deploy with -c map_max_concurrency=6 (room for Split, Merge, ReportFailure and Cleanup)" in message
    assert 'Service Quotas > AWS Lambda > "Concurrent executions"' in message
    # following the advice makes it ok
    code, lines = doctor_lines(capsys, "-c", "map_max_concurrency=6")
    assert code == 0 and lines["lambda concurrency"].startswith("ok account limit 10, 10 unreserved;")
    assert lines["cdk context"].endswith("cdk.json with -c map_max_concurrency=6")


def test_unreadable_account_settings_warn(account, capsys):
    """moto itself (and `lyrics-classifier serve`) do not implement GetAccountSettings."""
    code, lines = doctor_lines(capsys)
    assert code == 0
    assert lines["lambda concurrency"].startswith("warn cannot read the account's Lambda settings (404: ")


def test_an_endpoints_html_error_page_stays_one_line():
    """moto's server (`lyrics-classifier serve`) answers an unknown API with an HTML page."""
    from botocore.exceptions import ClientError

    page = ("<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
            "<p>The requested URL was not found on the server.</p>\n")
    exc = ClientError({"Error": {"Code": "404", "Message": page}}, "GetAccountSettings")
    assert doctor._error(exc) == ("404", "Not Found")
    assert doctor.Check("x", "warn", f"a\n{page}").line().count("\n") == 0


def test_missing_bootstrap_fails(account, lambda_account, capsys):
    lambda_account(1000)
    set_bootstrap(None)
    code, lines = doctor_lines(capsys)
    assert code == 1
    assert lines["cdk bootstrap"] == (
        f"FAIL aws://{ACCOUNT}/{REGION} is not bootstrapped (no SSM parameter {BOOTSTRAP}): "
        f"run `npx cdk bootstrap aws://{ACCOUNT}/{REGION}` (once per account and region)"
    )
    # another qualifier: another parameter, and the command says so
    set_bootstrap("30")
    code, lines = doctor_lines(capsys, "--qualifier", "custom1")
    assert code == 1
    assert f"cdk bootstrap aws://{ACCOUNT}/{REGION} --qualifier custom1`" in lines["cdk bootstrap"]


@pytest.mark.parametrize(("version", "status"), [("5", "FAIL"), ("6", "ok"), ("30", "ok")])
def test_bootstrap_version(account, lambda_account, capsys, version, status):
    lambda_account(1000)
    set_bootstrap(version)
    code, lines = doctor_lines(capsys)
    assert code == (1 if status == "FAIL" else 0)
    if status == "FAIL":
        assert lines["cdk bootstrap"].startswith(f"FAIL re-run cdk bootstrap (version {version}, CDK needs >= 6): "
                                                 f"`npx cdk bootstrap aws://{ACCOUNT}/{REGION}`")
    else:
        assert lines["cdk bootstrap"] == f"ok version {version} in aws://{ACCOUNT}/{REGION}"


def test_no_region_fails(account, monkeypatch, capsys):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    code, lines = doctor_lines(capsys)
    assert code == 1
    assert lines["region"].startswith("FAIL none configured: set AWS_REGION")
    assert "or pass --region" in lines["region"]
    assert set(lines) == {"cdk context", "region", "architecture"}  # nothing else can be checked
    # --region is enough
    code, lines = doctor_lines(capsys, "--region", "eu-west-1")
    assert lines["region"] == "ok eu-west-1 (--region)"
    assert lines["credentials"].startswith(f"ok account {ACCOUNT}")
    # AWS_REGION, which the README's deploy steps set and the CDK CLI reads (boto3 alone does not)
    monkeypatch.setenv("AWS_REGION", "eu-west-2")
    code, lines = doctor_lines(capsys)
    assert lines["region"] == "ok eu-west-2 (AWS_REGION)"
    assert lines["cdk bootstrap"].startswith(f"FAIL aws://{ACCOUNT}/eu-west-2 is not bootstrapped")


def test_no_credentials_fails(monkeypatch, capsys):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, lines = doctor_lines(capsys)  # botocore finds none before sending anything, moto or not
    assert code == 1
    assert lines["credentials"].startswith("FAIL no AWS credentials found: run `aws configure` or `aws sso login`")
    assert "lambda concurrency" not in lines and "cdk bootstrap" not in lines


def test_rejected_credentials_fail(account, monkeypatch, capsys):
    error = ('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
             "<Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid."
             "</Message></Error><RequestId>0</RequestId></ErrorResponse>")  # STS speaks XML (query protocol)
    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", [
        *botocore.handlers.BUILTIN_HANDLERS, ("before-send.sts.GetCallerIdentity", _answer(403, error, "text/xml")),
    ])
    code, lines = doctor_lines(capsys)
    assert code == 1
    assert lines["credentials"].startswith("FAIL AWS refused them (InvalidClientTokenId: The security token")


def test_json_output_parses(account, lambda_account, capsys):
    lambda_account(10)
    code = main(["doctor", "--json", "-c", "classify_reserved_concurrency=50"])
    checks = json.loads(capsys.readouterr().out)
    assert code == 1
    assert [c["check"] for c in checks] == ["cdk context", "region", "credentials", "lambda concurrency",
                                            "cdk bootstrap", "architecture"]
    by_name = {c["check"]: c for c in checks}
    assert {c["status"] for c in checks} <= {"ok", "warn", "FAIL"}
    concurrency = by_name["lambda concurrency"]
    assert concurrency["status"] == "FAIL"
    assert concurrency["concurrent_executions"] == 10 and concurrency["unreserved_concurrent_executions"] == 10
    assert concurrency["reserved_by_stack"] == 50 and concurrency["suggested_map_max_concurrency"] == 6
    assert by_name["credentials"]["account"] == ACCOUNT
    assert by_name["cdk bootstrap"]["version"] == 30


@pytest.fixture
def moto_server():
    """moto's server on a free local port (what `lyrics-classifier serve` runs), its URL."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_endpoint_url_reaches_every_client(account, lambda_account, moto_server, monkeypatch, capsys, caplog):
    """--endpoint-url (or AWS_ENDPOINT_URL, as boto3 reads it) sends every call to moto's server
    (which shares the in-process moto's accounts)."""
    lambda_account(10)  # a client-side answer: the server has no GetAccountSettings either
    caplog.set_level(logging.INFO, logger="werkzeug")
    code, lines = doctor_lines(capsys, "--endpoint-url", moto_server)
    assert code == 0
    assert lines["credentials"] == f"ok account {ACCOUNT} as arn:aws:sts::{ACCOUNT}:user/moto at {moto_server}"
    assert lines["cdk bootstrap"] == f"ok version 30 in aws://{ACCOUNT}/{REGION}"
    assert lines["lambda concurrency"].startswith("warn map_max_concurrency 50 >= the account's limit of 10 ")
    served = [r for r in caplog.records if r.name == "werkzeug"]
    assert len(served) == 2  # STS and SSM went over HTTP to the server
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    code, lines = doctor_lines(capsys)
    assert code == 0 and lines["credentials"].endswith(f" at {moto_server}")
    assert len([r for r in caplog.records if r.name == "werkzeug"]) == 4


def test_context_without_cdk_json_and_usage_errors(account, lambda_account, capsys):
    lambda_account(1000)
    Path("cdk.json").unlink()
    code, lines = doctor_lines(capsys, "-c", "architecture=x86_64")
    assert code == 0
    assert lines["cdk context"].startswith("warn no cdk.json in ")
    assert "checked the stack's defaults with -c architecture=x86_64" in lines["cdk context"]
    assert lines["architecture"].startswith("ok x86_64")
    assert doctor.architecture_check(settings(architecture="sparc")).line() == (
        "FAIL  architecture: 'sparc' is not a Lambda architecture: set -c architecture=arm64 (or x86_64)")
    # usage errors: exit 2, no traceback
    for args in (["--cdk-json", "missing.json"], ["-c", "map_max_concurrency"], ["-c", "classify_reserved_concurrency=x"],
                 ["-c", "workflow_reserved_concurrency=-1"]):
        assert main(["doctor", *args]) == 2, args
        assert capsys.readouterr().err.startswith("error: ")
    Path("bad.json").write_text("{")
    assert main(["doctor", "--cdk-json", "bad.json"]) == 2


def test_help_documents_the_exit_status(capsys):
    with pytest.raises(SystemExit):
        main(["doctor", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 when no check FAILed (warnings allowed), 1 when one did, 2 for a usage error" in help_text


def test_defaults_and_functions_match_infra():
    """doctor repeats infra's defaults (cdk.json repeats them too, tests/test_infra.py keeps
    those equal) and which functions share each reservation (infra/functions.py, read as
    source: importing aws_cdk takes seconds)."""
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    for key, default in doctor.CONTEXT_DEFAULTS.items():
        assert context[key] == default, key

    tree = ast.parse((REPO / "infra" / "functions.py").read_text())
    spec_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "FunctionSpec")
    default_setting = next(
        n.value.value for n in spec_class.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.target.id == "reserved_setting"
    )
    groups: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "FunctionSpec":
            setting = next((k.value.value for k in node.keywords if k.arg == "reserved_setting"), default_setting)
            groups.setdefault(setting, []).append(node.args[0].value)
    assert {k: tuple(v) for k, v in groups.items()} == doctor.RESERVED_FUNCTIONS
