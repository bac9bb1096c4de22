"""The gate and the canary as plain functions: rollout on API objects, Triton through
triton/health_check.py's own check_health with a fake probe in place of tritonclient."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lambdas.common import eks_client
from lambdas.health_check import gate, triton_probe
from lambdas.health_check.config import HealthCheckConfig
from tests.conftest import TRITON_DIR
from tests.unit.lambdas import k8s_fixtures as fx
from tests.unit.lambdas.test_health_check_rollout import Clock, ScriptedReader

CONFIG = HealthCheckConfig(
    cluster_name="radstream-cluster",
    cluster_endpoint="https://ABCDEF.gr7.us-east-1.eks.amazonaws.com",
    cluster_ca="Y2E=",
    region="us-east-1",
    namespace=fx.NAMESPACE,
    deployment_name=fx.DEPLOYMENT,
    triton_url="internal-radstream-nlb-0123.elb.us-east-1.amazonaws.com:8000",
    triton_url_parameter=None,
    rollout_timeout_seconds=600,
    metrics_namespace="RadStream/Hooks",
    stage="dev",
    rollout_poll_seconds=5,
)


def good_outputs() -> dict[str, Any]:
    return {
        "FINDINGS": np.full((1, 14), 0.25, dtype=np.float32),
        "LESION_MASK": np.zeros((1, 1, 256, 256), dtype=np.float32),
    }


@dataclass
class FakeTriton:
    """Stands in for tritonclient behind triton/health_check.py's TritonProbe interface."""

    not_ready: tuple[str, ...] = ()
    outputs: dict[str, Any] = field(default_factory=good_outputs)
    live: bool = True
    urls: list[str] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)

    def probe(self, url: str, protocol: str, timeout_s: float) -> FakeTriton:
        self.urls.append(url)
        return self

    def is_live(self) -> bool:
        return self.live

    def is_ready(self) -> bool:
        return True

    def is_model_ready(self, model: str) -> bool:
        return model not in self.not_ready

    def infer_pipeline(self, payload: bytes) -> dict[str, Any]:
        self.payloads.append(payload)
        return self.outputs

    def close(self) -> None:
        pass


def install_fake_triton(monkeypatch: pytest.MonkeyPatch) -> FakeTriton:
    """Replace tritonclient (through health_check.TritonProbe) with a FakeTriton for one test."""
    fake = FakeTriton()
    monkeypatch.setattr(triton_probe.triton_health, "TritonProbe", fake.probe)
    return fake


@pytest.fixture
def triton(monkeypatch: pytest.MonkeyPatch) -> FakeTriton:
    return install_fake_triton(monkeypatch)


def no_parameter(name: str) -> str:
    raise AssertionError(f"SSM read {name} while TRITON_URL is set")


def _gate(reader: ScriptedReader, config: HealthCheckConfig = CONFIG, **kwargs: Any) -> gate.GateReport:
    clock = Clock()
    return gate.run_gate(config, lambda: reader, get_parameter=no_parameter, clock=clock, sleep=clock.sleep, **kwargs)


def test_triton_probe_uses_the_container_health_check_itself() -> None:
    """One source: the Lambda's module is triton/health_check.py (through the package's link)."""
    assert Path(triton_probe.triton_health.__file__).resolve() == TRITON_DIR / "health_check.py"
    assert triton_probe.EXPECTED_MODELS == (
        "study_preprocess",
        "cxr_classifier",
        "lesion_segmenter",
        "radstream_pipeline",
    )


def test_gate_passes_when_rolled_out_and_triton_is_healthy(triton: FakeTriton) -> None:
    report = _gate(ScriptedReader((fx.deployment(), fx.steady_pods())))
    assert report.ok
    assert report.summary().startswith("HEALTH GATE PASSED in ")
    result = report.to_dict()
    assert result["passed"] == ["rollout", "triton"]
    assert result["failed"] == []
    rollout, triton_step = result["steps"]
    assert rollout["status"]["complete"] is True
    assert [check["name"] for check in triton_step["checks"]] == ["live", "ready", "models", "smoke_inference"]
    assert all(check["ok"] and check["elapsed_ms"] >= 0 for check in triton_step["checks"])
    assert triton.urls == [CONFIG.triton_url]
    assert triton.payloads == [triton_probe.triton_health.known_input_png()]


def test_gate_fails_on_a_crash_looping_pod_without_calling_triton(triton: FakeTriton) -> None:
    reader = ScriptedReader((fx.deployment(ready=1, available=1), [fx.steady_pods()[0], fx.crash_looping_pod()]))
    report = _gate(reader)
    assert not report.ok
    assert report.summary().startswith(
        "HEALTH GATE FAILED: rollout: deployment radstream/triton-inference-server: pod triton-inference-server-"
    )
    assert "CrashLoopBackOff (5 restarts, last exit 1 Error)" in report.summary()
    assert [step.name for step in report.steps] == ["rollout"]
    assert triton.urls == []


def test_gate_fails_when_a_model_is_not_ready(triton: FakeTriton) -> None:
    triton.not_ready = ("lesion_segmenter",)
    report = _gate(ScriptedReader((fx.deployment(), fx.steady_pods())))
    assert report.summary() == (
        f"HEALTH GATE FAILED: triton: {CONFIG.triton_url} models: models not READY: lesion_segmenter "
        "(still failing after 19 attempts over 90 s)"
    )
    assert report.to_dict()["passed"] == ["rollout"]


def test_gate_fails_when_the_pipeline_output_is_out_of_range(triton: FakeTriton) -> None:
    triton.outputs = {**good_outputs(), "FINDINGS": np.full((1, 14), 1.5, dtype=np.float32)}
    report = _gate(ScriptedReader((fx.deployment(), fx.steady_pods())))
    assert "smoke_inference: output FINDINGS spans [1.5000, 1.5000], outside [0, 1]" in report.summary()


def test_gate_fails_when_the_pipeline_output_has_the_wrong_shape(triton: FakeTriton) -> None:
    triton.outputs = {**good_outputs(), "LESION_MASK": np.zeros((1, 224, 224), dtype=np.float32)}
    report = _gate(ScriptedReader((fx.deployment(), fx.steady_pods())))
    assert "output LESION_MASK has shape [1, 224, 224], expected [1, 1, 256, 256]" in report.summary()


def test_gate_reports_kubernetes_access_failures_as_the_rollout_step(triton: FakeTriton) -> None:
    def denied() -> ScriptedReader:
        raise eks_client.KubernetesAuthError("cannot sign an EKS token for radstream-cluster: no credentials")

    clock = Clock()
    report = gate.run_gate(CONFIG, denied, get_parameter=no_parameter, clock=clock, sleep=clock.sleep)
    assert (
        report.summary()
        == "HEALTH GATE FAILED: rollout: cannot sign an EKS token for radstream-cluster: no credentials"
    )


def test_the_lambdas_remaining_time_caps_the_rollout_wait(triton: FakeTriton) -> None:
    stuck = ScriptedReader((fx.deployment(replicas=2, ready=1), [fx.steady_pods()[0], fx.pending_gpu_pod()]))
    config = replace(CONFIG, triton_timeout_seconds=10, triton_deadline_seconds=20)
    report = _gate(stuck, config, time_budget_s=200)
    assert "(limit 110 s)" in report.summary(), "200 s left minus the Triton deadline and 7 calls of 10 s"


def test_the_triton_step_retries_until_the_nlb_target_answers(triton: FakeTriton) -> None:
    """Defect 3: right after the rollout the NLB may still route to no healthy target; the gate retries."""
    answers = iter([False, False, True])
    triton.is_live = lambda: next(answers)  # type: ignore[method-assign]
    report = _gate(ScriptedReader((fx.deployment(), fx.steady_pods())))
    assert report.ok, report.summary()
    assert report.step("triton").data["attempts"] == 3  # type: ignore[union-attr]


def test_the_release_under_test_is_in_the_report(triton: FakeTriton) -> None:
    release = (("GATE_IMAGE_URI", fx.IMAGE), ("GATE_WORKLOAD_HASH", "0123abcd"))
    report = _gate(ScriptedReader((fx.deployment(), fx.steady_pods())), replace(CONFIG, release=release))
    assert report.to_dict()["release"] == dict(release)


def test_triton_url_from_the_ssm_parameter_is_normalised(triton: FakeTriton) -> None:
    config = replace(CONFIG, triton_url=None, triton_url_parameter="/radstream/dev/triton-url")
    asked: list[str] = []

    def parameter(name: str) -> str:
        asked.append(name)
        return "http://internal-radstream-nlb.elb.us-east-1.amazonaws.com:8000/\n"

    report = gate.run_canary(config, get_parameter=parameter)
    assert report.ok
    assert asked == ["/radstream/dev/triton-url"]
    assert triton.urls == ["internal-radstream-nlb.elb.us-east-1.amazonaws.com:8000"]
    assert report.to_dict()["triton_url"] == "internal-radstream-nlb.elb.us-east-1.amazonaws.com:8000"


def test_an_unreadable_triton_url_parameter_fails_the_check(triton: FakeTriton) -> None:
    config = replace(CONFIG, triton_url=None, triton_url_parameter="/radstream/dev/triton-url")

    def missing(name: str) -> str:
        raise LookupError(f"ParameterNotFound: {name}")

    report = gate.run_canary(config, get_parameter=missing)
    assert report.summary() == (
        "CANARY FAILED: triton: cannot prepare the Triton checks: "
        "LookupError: ParameterNotFound: /radstream/dev/triton-url"
    )


def test_the_smoke_image_comes_from_smoke_image_path(triton: FakeTriton, tmp_path: Path) -> None:
    image = tmp_path / "study.dcm"
    image.write_bytes(b"DICM-not-really")
    report = gate.run_canary(replace(CONFIG, smoke_image_path=str(image)), get_parameter=no_parameter)
    assert report.ok
    assert triton.payloads == [b"DICM-not-really"]


def test_canary_runs_only_the_triton_checks(triton: FakeTriton) -> None:
    triton.live = False
    report = gate.run_canary(CONFIG, get_parameter=no_parameter)
    assert [step.name for step in report.steps] == ["triton"]
    assert report.summary() == f"CANARY FAILED: triton: {CONFIG.triton_url} live: server is not live"
    assert report.to_dict()["mode"] == "canary"


def test_expected_models_override(triton: FakeTriton) -> None:
    triton.not_ready = ("lesion_segmenter",)
    report = gate.run_canary(replace(CONFIG, expected_models=("radstream_pipeline",)), get_parameter=no_parameter)
    assert report.ok
    checks = report.to_dict()["steps"][0]["checks"]
    assert [c["detail"] for c in checks if c["name"] == "models"] == ["1 models READY"]
