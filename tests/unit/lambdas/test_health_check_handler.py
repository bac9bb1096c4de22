"""The health-check handler: configuration, event routing, EMF metrics, errors."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters import base as parameters_base
from moto import mock_aws

from lambdas.common.env import ConfigurationError
from lambdas.health_check import handler
from lambdas.health_check.config import HealthCheckConfig
from lambdas.health_check.errors import HealthGateFailed, InvalidEventError
from tests.unit.lambdas import k8s_fixtures as fx
from tests.unit.lambdas.test_health_check_gate import FakeTriton, install_fake_triton
from tests.unit.lambdas.test_health_check_rollout import ScriptedReader

REPO_ROOT = Path(__file__).resolve().parents[3]
SCHEDULED = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "111122223333",
    "time": "2026-03-02T12:01:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:111122223333:rule/radstream-health-canary"],
    "detail": {},
}
ENV = {
    "CLUSTER_NAME": "radstream-cluster",
    "CLUSTER_ENDPOINT": "https://ABCDEF.gr7.us-east-1.eks.amazonaws.com",
    "CLUSTER_CA": "Y2E=",
    "AWS_REGION": "us-east-1",
    "NAMESPACE": fx.NAMESPACE,
    "DEPLOYMENT_NAME": fx.DEPLOYMENT,
    "TRITON_URL": "internal-radstream-nlb.elb.us-east-1.amazonaws.com:8000",
    "ROLLOUT_TIMEOUT_SECONDS": "300",
    "METRICS_NAMESPACE": "RadStream/Hooks",
    "STAGE": "dev",
    # The gate retries a failing Triton check until this deadline: short here, real time passes.
    "TRITON_DEADLINE_SECONDS": "0.2",
    "TRITON_RETRY_SECONDS": "0.05",
}


@dataclass
class Context:
    function_name: str = "radstream-health-check"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:111122223333:function:radstream-health-check"
    aws_request_id: str = "3c4e2a7e-0000-4000-8000-000000000001"
    remaining_ms: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def emf(out: str) -> list[dict[str, Any]]:
    """The EMF documents Powertools printed (log lines are JSON too, without ``_aws``)."""
    documents = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [d for d in documents if "_aws" in d]


def metric_names(document: dict[str, Any]) -> set[str]:
    return {m["Name"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]}


def values(document: dict[str, Any], name: str) -> list[float]:
    """A metric's values in an EMF document (Powertools writes a list)."""
    value = document[name]
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]


def reset_parameter_cache() -> None:
    """Powertools caches parameter values and its SSM client across invocations (as in a warm Lambda)."""
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    vars(parameters_base)["DEFAULT_PROVIDERS"].clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def triton(monkeypatch: pytest.MonkeyPatch) -> FakeTriton:
    return install_fake_triton(monkeypatch)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("TRITON_URL_PARAMETER", "SMOKE_IMAGE_PATH", "EXPECTED_MODELS", "TRITON_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    handler.metrics.clear_metrics()
    yield dict(ENV)
    handler.metrics.clear_metrics()


# ---- configuration -------------------------------------------------------------------------------------


def test_config_from_env() -> None:
    config = HealthCheckConfig.from_env({**ENV, "EXPECTED_MODELS": "a, b", "TRITON_PROTOCOL": "GRPC"})
    assert config.cluster_name == "radstream-cluster"
    assert config.rollout_timeout_seconds == 300.0
    assert config.expected_models == ("a", "b")
    assert config.triton_protocol == "grpc"
    assert config.triton_timeout_seconds == 10.0


@pytest.mark.parametrize(
    "name",
    [
        "CLUSTER_NAME",
        "CLUSTER_ENDPOINT",
        "CLUSTER_CA",
        "NAMESPACE",
        "DEPLOYMENT_NAME",
        "ROLLOUT_TIMEOUT_SECONDS",
        "METRICS_NAMESPACE",
    ],
)
def test_a_missing_variable_is_named(name: str) -> None:
    with pytest.raises(ConfigurationError, match=f"environment variable {name} is not set"):
        HealthCheckConfig.from_env({k: v for k, v in ENV.items() if k != name})


def test_triton_url_or_its_parameter_is_required() -> None:
    without = {k: v for k, v in ENV.items() if k != "TRITON_URL"}
    with pytest.raises(ConfigurationError, match="TRITON_URL or TRITON_URL_PARAMETER must be set"):
        HealthCheckConfig.from_env(without)
    assert HealthCheckConfig.from_env({**without, "TRITON_URL_PARAMETER": "/p"}).triton_url_parameter == "/p"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"ROLLOUT_TIMEOUT_SECONDS": "ten"}, "ROLLOUT_TIMEOUT_SECONDS='ten' is not a number of seconds"),
        ({"ROLLOUT_TIMEOUT_SECONDS": "0"}, "ROLLOUT_TIMEOUT_SECONDS='0' must be positive"),
        ({"TRITON_PROTOCOL": "smtp"}, "TRITON_PROTOCOL='smtp' must be one of http, grpc"),
    ],
)
def test_invalid_values_are_named(extra: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        HealthCheckConfig.from_env({**ENV, **extra})


# ---- event routing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "mode"),
    [
        ({}, "gate"),  # the CDK Trigger invokes without a payload
        (None, "gate"),
        ({"source": "codepipeline"}, "gate"),
        (SCHEDULED, "canary"),
        ({"mode": "canary"}, "canary"),
        ({**SCHEDULED, "mode": "gate"}, "gate"),
    ],
)
def test_invocation_mode(event: Any, mode: str) -> None:
    assert handler.invocation_mode(event) == mode


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([], "event must be a JSON object, not list"),
        ({"mode": "smoke"}, "event mode='smoke' must be 'gate' or 'canary'"),
        ({**SCHEDULED, "detail-type": "EC2 Instance State-change Notification"}, "detail-type="),
    ],
)
def test_invalid_events_are_rejected(event: Any, message: str) -> None:
    with pytest.raises(InvalidEventError, match=message):
        handler.invocation_mode(event)


# ---- the handler, end to end (Kubernetes and tritonclient faked at their edges) -------------------------


def test_gate_passes_and_publishes_its_metrics(
    env: dict[str, str], triton: FakeTriton, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(handler, "build_reader", lambda config: ScriptedReader((fx.deployment(), fx.steady_pods())))
    result = handler.handler({}, Context())
    assert result["ok"] is True
    assert result["mode"] == "gate"
    [document] = emf(capsys.readouterr().out)
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "RadStream/Hooks"
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Stage", "service"]]
    assert document["service"] == "radstream-health-check"
    assert metric_names(document) == {"HealthGatePassed", "HealthGateMs", "RolloutWaitMs"}
    assert values(document, "HealthGatePassed") == [1.0]


def test_a_failed_gate_raises_with_the_report_summary_and_publishes_zero(
    env: dict[str, str], triton: FakeTriton, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    triton.not_ready = ("cxr_classifier",)
    monkeypatch.setattr(handler, "build_reader", lambda config: ScriptedReader((fx.deployment(), fx.steady_pods())))
    with pytest.raises(HealthGateFailed) as caught:
        handler.handler({}, Context())
    assert str(caught.value).startswith(
        "HEALTH GATE FAILED: triton: internal-radstream-nlb.elb.us-east-1.amazonaws.com:8000 models: "
        "models not READY: cxr_classifier (still failing after "
    )
    assert str(caught.value).endswith(" attempts over 0.2 s)")
    assert caught.value.report["failed"] == ["triton"]
    [document] = emf(capsys.readouterr().out)
    assert values(document, "HealthGatePassed") == [0.0]
    assert "RolloutWaitMs" in metric_names(document)


def test_canary_publishes_availability_and_latency(
    env: dict[str, str], triton: FakeTriton, capsys: pytest.CaptureFixture[str]
) -> None:
    result = handler.handler(SCHEDULED, Context())
    assert result["ok"] is True
    [document] = emf(capsys.readouterr().out)
    assert metric_names(document) == {"Availability", "LatencyMs"}
    assert values(document, "Availability") == [1.0]
    assert values(document, "LatencyMs")[0] >= 0
    # The stage's own dashboard and alarms select Stage: dev and prod may share an account.
    (dimensions,) = document["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert set(dimensions) == {"service", "Stage"}
    assert document["Stage"] == "dev"


def test_canary_reports_an_unreachable_triton_without_raising(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The real tritonclient against a loopback port nobody listens on.
    monkeypatch.setenv("TRITON_URL", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("TRITON_TIMEOUT_SECONDS", "2")
    result = handler.handler(SCHEDULED, Context())
    assert result["ok"] is False
    assert result["summary"].startswith("CANARY FAILED: triton: 127.0.0.1:")
    [document] = emf(capsys.readouterr().out)
    assert metric_names(document) == {"Availability"}
    assert values(document, "Availability") == [0.0]


def test_canary_reads_the_triton_address_from_ssm(
    env: dict[str, str], triton: FakeTriton, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TRITON_URL")
    monkeypatch.setenv("TRITON_URL_PARAMETER", "/radstream/dev/triton-url")
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    reset_parameter_cache()
    with mock_aws():
        ssm = boto3.client("ssm", region_name="us-east-1")
        ssm.put_parameter(Name="/radstream/dev/triton-url", Value="nlb.internal:8000", Type="String")
        result = handler.handler(SCHEDULED, Context())
    reset_parameter_cache()
    assert result["ok"] is True
    assert triton.urls == ["nlb.internal:8000"]
    assert values(emf(capsys.readouterr().out)[0], "Availability") == [1.0]


def test_a_missing_variable_fails_the_invocation_with_its_name(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("METRICS_NAMESPACE")
    with (
        pytest.warns(UserWarning, match="No application metrics to publish"),
        pytest.raises(ConfigurationError, match="METRICS_NAMESPACE"),
    ):
        handler.handler({}, Context())


def test_a_function_pinned_to_the_gate_refuses_a_scheduled_canary_event(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 7: the canary has its own function; the gate function never runs a scheduled event."""
    monkeypatch.setenv("HEALTH_CHECK_MODE", "gate")
    with pytest.raises(InvalidEventError, match="this function runs the gate"):
        handler.handler(SCHEDULED, Context())


def test_a_function_pinned_to_the_canary_runs_the_canary_on_any_event(
    env: dict[str, str], triton: FakeTriton, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HEALTH_CHECK_MODE", "canary")
    assert handler.handler(SCHEDULED, Context())["mode"] == "canary"
    assert values(emf(capsys.readouterr().out)[0], "Availability") == [1.0]
