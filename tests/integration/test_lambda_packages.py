"""Each hook's Lambda package, as the CDK app stages it, imports and runs by its configured handler.

A fresh interpreter sees only the staged folder and the installed packages (``python -I``: no
repository, no PYTHONPATH, no working directory on sys.path), imports the handler by the dotted
path the template names, and invokes it on a minimal event with AWS mocked by moto. A broken
package layout (a module left out, an import that only works from the repository) fails here,
not on the first deploy.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cdk_app.hooks import HOOK_PACKAGES, handler_path, stage_lambda_source
from tests.conftest import TRITON_DIR

pytestmark = pytest.mark.integration

SCHEDULED = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-03-02T12:01:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/radstream-every-minute"],
    "detail": {},
}

# What the child runs: only the staged folder (and the interpreter's installed packages) on sys.path.
PRELUDE = """
import json, os, sys
staged = sys.argv[1]
sys.path.insert(0, staged)
import importlib
import lambdas
assert lambdas.__file__.startswith(staged), f"lambdas imported from {lambdas.__file__}, not the package"
module_name, _, attribute = sys.argv[2].rpartition(".")
from moto import mock_aws
import boto3

class Context:
    function_name = "radstream-hook"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:radstream-hook"
    aws_request_id = "3c4e2a7e-0000-4000-8000-000000000001"
    def get_remaining_time_in_millis(self):
        return 60_000

def outcome(call):
    try:
        result = call()
    except Exception as error:  # the typed error the function would report
        print("OUTCOME", json.dumps({"error": type(error).__name__, "message": str(error)}))
    else:
        print("OUTCOME", json.dumps({"result": result}, default=str))
"""

SETUP = {
    "health_check": """
with mock_aws():
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/radstream/dev/triton-url", Value=os.environ["CLOSED_ADDRESS"], Type="String")
    handler = getattr(importlib.import_module(module_name), attribute)
    outcome(lambda: handler(json.loads(sys.argv[3]), Context()))
""",
    "scale_events": """
with mock_aws():
    boto3.client("dynamodb").create_table(
        TableName="radstream-dev-scale-events-state",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    handler = getattr(importlib.import_module(module_name), attribute)
    outcome(lambda: handler(json.loads(sys.argv[3]), Context()))
""",
    "inference_endpoint": """
with mock_aws():
    s3 = boto3.client("s3")
    for bucket in ("radstream-studies", "radstream-results"):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket="radstream-studies", Key="incoming/study.png", Body=open(sys.argv[4], "rb").read())
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/radstream/dev/triton-url", Value=os.environ["CLOSED_ADDRESS"], Type="String")
    boto3.client("secretsmanager").create_secret(Name="radstream/dev/log-hash-key", SecretString="k" * 64)
    handler = getattr(importlib.import_module(module_name), attribute)
    event = {"bucket": "radstream-studies", "key": "incoming/study.png", "study_id": "1.2.826.0.1.3680043.8.498.1"}
    outcome(lambda: handler(event, Context()))
""",
}

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_METRICS_NAMESPACE": "RadStream",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def closed_address() -> str:
    """host:port on loopback where nothing listens (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def hook_environment(hook: str, address: str) -> dict[str, str]:
    cluster = {
        "CLUSTER_NAME": "radstream-cluster",
        # Plain http on a closed port: the call fails fast, after the whole import chain ran.
        "CLUSTER_ENDPOINT": f"http://{address}",
        "CLUSTER_CA": "Y2E=",
        "NAMESPACE": "radstream",
        "DEPLOYMENT_NAME": "triton-inference-server",
        "HPA_NAME": "triton-hpa",
        "METRICS_NAMESPACE": "RadStream",
        "KUBERNETES_TIMEOUT_SECONDS": "2",
    }
    if hook == "health_check":
        # The canary function's environment (cdk_app/hooks.py): the package pinned to the canary.
        return cluster | {
            "HEALTH_CHECK_MODE": "canary",
            "TRITON_URL_PARAMETER": "/radstream/dev/triton-url",
            "STAGE": "dev",
            "ROLLOUT_TIMEOUT_SECONDS": "300",
            "TRITON_TIMEOUT_SECONDS": "2",
        }
    if hook == "scale_events":
        return cluster | {"STAGE": "dev", "STATE_TABLE_NAME": "radstream-dev-scale-events-state"}
    return {
        "TRITON_URL_PARAMETER": "/radstream/dev/triton-url",
        "RESULTS_BUCKET": "radstream-results",
        "TRITON_TIMEOUT_SECONDS": "2",
        "METRICS_NAMESPACE": "RadStream",
        "LOG_HASH_KEY_SECRET": "radstream/dev/log-hash-key",
        "STAGE": "dev",
    }


def run_package(hook: str, staged: Path, image: Path) -> dict[str, object]:
    address = closed_address()
    environment = {**AWS_ENV, **hook_environment(hook, address), "CLOSED_ADDRESS": address}
    environment["PATH"] = str(Path(sys.executable).parent)
    completed = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            PRELUDE + SETUP[hook],
            str(staged),
            handler_path(hook),
            json.dumps(SCHEDULED),
            str(image),
        ],
        cwd=staged,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    (line,) = [line for line in completed.stdout.splitlines() if line.startswith("OUTCOME ")]
    outcome: dict[str, object] = json.loads(line.removeprefix("OUTCOME "))
    return outcome


@pytest.fixture(scope="module")
def smoke_png(tmp_path_factory: pytest.TempPathFactory, png_bytes: bytes) -> Path:
    path = tmp_path_factory.mktemp("study") / "study.png"
    path.write_bytes(png_bytes)
    return path


def test_every_hook_is_staged_with_the_repository_layout(tmp_path: Path) -> None:
    for hook in HOOK_PACKAGES:
        staged = stage_lambda_source(hook, tmp_path)
        assert (staged / "lambdas" / "__init__.py").is_file()
        assert (staged / "lambdas" / "common" / "eks_client.py").is_file()
        assert (staged / "lambdas" / hook / "handler.py").is_file()
        others = {p.name for p in (staged / "lambdas").iterdir() if p.is_dir()} - {"common", hook, "__pycache__"}
        assert not others, f"{hook} ships other hooks' code: {others}"


def test_health_check_package_ships_the_container_health_check_itself(tmp_path: Path) -> None:
    staged = stage_lambda_source("health_check", tmp_path)
    shipped = staged / "lambdas" / "health_check" / "triton_health.py"
    assert not shipped.is_symlink(), "the zip holds the file, not a link out of the package"
    assert shipped.read_bytes() == (TRITON_DIR / "health_check.py").read_bytes()


def test_health_check_package_runs_the_canary(tmp_path: Path, smoke_png: Path) -> None:
    outcome = run_package("health_check", stage_lambda_source("health_check", tmp_path), smoke_png)
    # The canary reports an unreachable Triton; it does not raise.
    result = outcome["result"]
    assert isinstance(result, dict), outcome
    assert str(result["summary"]).startswith("CANARY FAILED: triton: 127.0.0.1:")


def test_scale_events_package_reports_an_unreachable_cluster(tmp_path: Path, smoke_png: Path) -> None:
    outcome = run_package("scale_events", stage_lambda_source("scale_events", tmp_path), smoke_png)
    result = outcome["result"]
    assert isinstance(result, dict), outcome
    assert result["ok"] is False
    assert "127.0.0.1" in str(result["reason"])


def test_inference_endpoint_package_raises_the_retried_error_when_triton_is_down(
    tmp_path: Path, smoke_png: Path
) -> None:
    outcome = run_package("inference_endpoint", stage_lambda_source("inference_endpoint", tmp_path), smoke_png)
    # It read the study from S3 (moto), then found no Triton: the error Step Functions retries.
    assert outcome.get("error") == "TritonUnavailable", outcome
