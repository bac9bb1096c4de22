"""The health-check Lambda against the real local Triton: its Triton part for real, the Triton
address from SSM (moto), the smoke inference on the real chest X-ray (RG1_UNCR.dcm, through
SMOKE_IMAGE_PATH) or the built-in image. The rollout part reads Kubernetes API objects
(k8s_fixtures): there is no cluster here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters import base as parameters_base
from moto import mock_aws

from lambdas.health_check import handler
from lambdas.health_check.errors import HealthGateFailed
from radstream_triton.server import LocalTritonServer, free_port
from tests.conftest import pydicom_file
from tests.unit.lambdas import k8s_fixtures as fx
from tests.unit.lambdas.test_health_check_rollout import ScriptedReader

pytestmark = pytest.mark.integration

PARAMETER = "/radstream/test/triton-url"
SCHEDULED = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}


@dataclass
class Context:
    function_name: str = "radstream-health-check"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:111122223333:function:radstream-health-check"
    aws_request_id: str = "3c4e2a7e-0000-4000-8000-000000000002"

    def get_remaining_time_in_millis(self) -> int:
        return 600_000


def _reset_parameter_cache() -> None:
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    vars(parameters_base)["DEFAULT_PROVIDERS"].clear()


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The Lambda's environment, SSM in moto, and a rolled-out Deployment to read."""
    env = {
        "CLUSTER_NAME": "radstream-cluster",
        "CLUSTER_ENDPOINT": "https://ABCDEF.gr7.us-east-1.eks.amazonaws.com",
        "CLUSTER_CA": "Y2E=",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "NAMESPACE": fx.NAMESPACE,
        "DEPLOYMENT_NAME": fx.DEPLOYMENT,
        "TRITON_URL_PARAMETER": PARAMETER,
        "ROLLOUT_TIMEOUT_SECONDS": "60",
        # Generous: the CPU server may share the machine with other tests.
        "TRITON_TIMEOUT_SECONDS": "120",
        # A failing Triton check is retried until this deadline (the NLB may lag the rollout): short here.
        "TRITON_DEADLINE_SECONDS": "1",
        "TRITON_RETRY_SECONDS": "0.2",
        "METRICS_NAMESPACE": "RadStream/Hooks",
        "STAGE": "dev",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("TRITON_URL", "SMOKE_IMAGE_PATH", "EXPECTED_MODELS", "TRITON_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(handler, "build_reader", lambda config: ScriptedReader((fx.deployment(), fx.steady_pods())))
    handler.metrics.clear_metrics()
    _reset_parameter_cache()
    with mock_aws():
        yield boto3.client("ssm", region_name="us-east-1")
    _reset_parameter_cache()
    handler.metrics.clear_metrics()


def _emf(out: str) -> dict[str, Any]:
    documents: list[dict[str, Any]] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    [document] = [d for d in documents if "_aws" in d]
    return document


def _value(document: dict[str, Any], name: str) -> float:
    value = document[name]
    return float(value[0] if isinstance(value, list) else value)


def test_gate_passes_on_the_real_server_with_the_chest_xray(
    triton_server: LocalTritonServer,
    lambda_env: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lambda_env.put_parameter(Name=PARAMETER, Value=triton_server.http_url, Type="String")
    monkeypatch.setenv("SMOKE_IMAGE_PATH", str(pydicom_file("RG1_UNCR.dcm")))
    report = handler.handler({}, Context())
    assert report["ok"] is True, report["summary"]
    assert report["summary"].startswith("HEALTH GATE PASSED")
    assert report["triton_url"] == triton_server.http_url
    checks = report["steps"][1]["checks"]
    assert [c["name"] for c in checks] == ["live", "ready", "models", "smoke_inference"]
    assert checks[-1]["detail"].startswith("FINDINGS[1, 14] in [")
    assert "LESION_MASK[1, 1, 256, 256]" in checks[-1]["detail"]
    document = _emf(capsys.readouterr().out)
    assert _value(document, "HealthGatePassed") == 1.0
    assert _value(document, "HealthGateMs") >= checks[-1]["elapsed_ms"]


def test_canary_passes_on_the_built_in_image_and_publishes_availability(
    triton_server: LocalTritonServer, lambda_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    lambda_env.put_parameter(Name=PARAMETER, Value=f"http://{triton_server.http_url}/", Type="String")
    report = handler.handler(SCHEDULED, Context())
    assert report["ok"] is True, report["summary"]
    document = _emf(capsys.readouterr().out)
    assert _value(document, "Availability") == 1.0
    assert _value(document, "LatencyMs") > 0


def test_gate_fails_with_the_reason_when_a_model_is_missing(
    triton_server: LocalTritonServer,
    lambda_env: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lambda_env.put_parameter(Name=PARAMETER, Value=triton_server.http_url, Type="String")
    monkeypatch.setenv("EXPECTED_MODELS", "radstream_pipeline,no_such_model")
    with pytest.raises(HealthGateFailed) as caught:
        handler.handler({}, Context())
    assert str(caught.value).startswith(
        f"HEALTH GATE FAILED: triton: {triton_server.http_url} models: models not READY: no_such_model "
        "(still failing after "
    )
    assert _value(_emf(capsys.readouterr().out), "HealthGatePassed") == 0.0


def test_gate_fails_with_the_reason_when_nothing_listens(lambda_env: Any, capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    lambda_env.put_parameter(Name=PARAMETER, Value=address, Type="String")
    with pytest.raises(HealthGateFailed, match=f"HEALTH GATE FAILED: triton: {address} live: .*Connection refused"):
        handler.handler({}, Context())
    assert _value(_emf(capsys.readouterr().out), "HealthGatePassed") == 0.0


def test_canary_reports_nothing_listening_as_unavailable(lambda_env: Any, capsys: pytest.CaptureFixture[str]) -> None:
    lambda_env.put_parameter(Name=PARAMETER, Value=f"127.0.0.1:{free_port()}", Type="String")
    report = handler.handler(SCHEDULED, Context())
    assert report["ok"] is False
    assert _value(_emf(capsys.readouterr().out), "Availability") == 0.0
