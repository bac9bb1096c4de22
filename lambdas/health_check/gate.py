"""The post-deploy gate and the canary, as plain functions returning a structured report.

Gate (CDK Trigger, pipeline): wait for the rollout (``rollout.py``: kubectl's verdict, newest pods
healthy NLB targets), then check Triton through the internal NLB, retried until TRITON_DEADLINE_SECONDS.
Canary (every minute): check Triton once. The Triton checks are
``triton/health_check.py``'s (through ``triton_probe``): server live and ready, every
model READY, one known-input pipeline inference with the right output shapes and ranges.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from lambdas.common.eks_client import EksConfigError, KubernetesApiError
from lambdas.health_check import triton_probe
from lambdas.health_check.config import HealthCheckConfig
from lambdas.health_check.errors import RolloutFailed, RolloutTimedOut
from lambdas.health_check.kube import KubernetesReader
from lambdas.health_check.rollout import RolloutPolicy, wait_for_rollout

GATE = "gate"
CANARY = "canary"
# Calls of one Triton check (live, ready, the four models, the smoke inference): what the last
# attempt may still take after the Triton deadline, so reserved when the Lambda's time caps the rollout.
TRITON_CALLS_PER_CHECK = 7


class TritonCheck(Protocol):
    def __call__(
        self, url: str, *, protocol: str, models: Sequence[str], smoke_payload: bytes | None, timeout_s: float
    ) -> Any: ...


@dataclass
class StepResult:
    name: str
    ok: bool
    detail: str
    elapsed_ms: float
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "elapsed_ms": self.elapsed_ms, **self.data}


@dataclass
class GateReport:
    mode: str
    started_at: str
    steps: list[StepResult] = field(default_factory=list)
    total_ms: float = 0.0
    triton_url: str | None = None
    release: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    @property
    def failure(self) -> StepResult | None:
        return next((step for step in self.steps if not step.ok), None)

    def step(self, name: str) -> StepResult | None:
        return next((step for step in self.steps if step.name == name), None)

    def summary(self) -> str:
        label = "HEALTH GATE" if self.mode == GATE else "CANARY"
        failed = self.failure
        if failed is None:
            details = "; ".join(f"{step.name}: {step.detail}" for step in self.steps)
            return f"{label} PASSED in {self.total_ms / 1000:.1f} s: {details}"
        return f"{label} FAILED: {failed.name}: {failed.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "ok": self.ok,
            "summary": self.summary(),
            "started_at": self.started_at,
            "total_ms": self.total_ms,
            "triton_url": self.triton_url,
            "release": dict(self.release),
            "passed": [step.name for step in self.steps if step.ok],
            "failed": [step.name for step in self.steps if not step.ok],
            "steps": [step.to_dict() for step in self.steps],
        }


def _elapsed_ms(started: float, clock: Callable[[], float]) -> float:
    return round((clock() - started) * 1000, 2)


def normalise_triton_url(value: str) -> str:
    """tritonclient wants ``host:port``; accept an ``http://host:port/`` form too."""
    url = value.strip()
    for scheme in ("http://", "https://", "grpc://"):
        if url.startswith(scheme):
            url = url[len(scheme) :]
    return url.rstrip("/")


def resolve_triton_url(config: HealthCheckConfig, get_parameter: Callable[[str], str]) -> str:
    """TRITON_URL, or the value of the SSM parameter named by TRITON_URL_PARAMETER."""
    if config.triton_url:
        return normalise_triton_url(config.triton_url)
    assert config.triton_url_parameter is not None
    value = get_parameter(config.triton_url_parameter)
    if not value or not value.strip():
        raise ValueError(f"SSM parameter {config.triton_url_parameter} is empty")
    return normalise_triton_url(value)


def smoke_payload(config: HealthCheckConfig) -> bytes:
    """SMOKE_IMAGE_PATH's bytes (a real study), or the built-in known-input PNG."""
    if config.smoke_image_path:
        return Path(config.smoke_image_path).read_bytes()
    return triton_probe.known_input_png()


def _triton_step(
    report: GateReport,
    config: HealthCheckConfig,
    get_parameter: Callable[[str], str],
    triton_check: TritonCheck | None,
    clock: Callable[[], float],
    *,
    deadline_s: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """The Triton checks; with ``deadline_s`` > 0 retried until they pass or the deadline passes
    (a pod that just turned Ready may still be registering behind the NLB)."""
    started = clock()
    check = triton_check or triton_probe.check_triton
    try:
        url = resolve_triton_url(config, get_parameter)
        payload = smoke_payload(config)
    except Exception as error:  # SSM unreachable, parameter missing, smoke image unreadable
        detail = f"cannot prepare the Triton checks: {type(error).__name__}: {error}"
        report.steps.append(StepResult("triton", False, detail, _elapsed_ms(started, clock)))
        return
    report.triton_url = url
    models = config.expected_models or triton_probe.EXPECTED_MODELS
    deadline = started + deadline_s
    attempts = 0
    while True:
        attempts += 1
        health = check(
            url,
            protocol=config.triton_protocol,
            models=models,
            smoke_payload=payload,
            timeout_s=config.triton_timeout_seconds,
        )
        remaining = deadline - clock()
        if health.ok or remaining <= 0:
            break
        sleep(min(config.triton_retry_seconds, remaining))
    health_dict = health.to_dict()
    if health.ok:
        detail = health.summary()
    else:
        failed = health.failure
        detail = f"{failed.name}: {failed.detail}" if failed is not None else "no check ran"
        detail = f"{url} {detail}"
        if deadline_s > 0:
            detail += f" (still failing after {attempts} attempts over {deadline_s:g} s)"
    data = {"checks": health_dict["checks"], "protocol": config.triton_protocol, "attempts": attempts}
    report.steps.append(StepResult("triton", bool(health.ok), detail, _elapsed_ms(started, clock), data))


def run_canary(
    config: HealthCheckConfig,
    *,
    get_parameter: Callable[[str], str],
    triton_check: TritonCheck | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> GateReport:
    """The Triton checks alone: what the every-minute canary reports."""
    started = clock()
    report = GateReport(mode=CANARY, started_at=datetime.now(UTC).isoformat(timespec="seconds"))
    _triton_step(report, config, get_parameter, triton_check, clock)
    report.total_ms = _elapsed_ms(started, clock)
    return report


def run_gate(
    config: HealthCheckConfig,
    reader_factory: Callable[[], KubernetesReader],
    *,
    get_parameter: Callable[[str], str],
    time_budget_s: float | None = None,
    triton_check: TritonCheck | None = None,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> GateReport:
    """Rollout complete, then Triton healthy. ``reader_factory`` builds the Kubernetes reader
    (authentication failures are reported as the rollout step's). ``time_budget_s`` (the Lambda's remaining time)
    caps the rollout wait so that the Triton checks still fit."""
    started = clock()
    report = GateReport(
        mode=GATE, started_at=datetime.now(UTC).isoformat(timespec="seconds"), release=dict(config.release)
    )
    timeout_s = config.rollout_timeout_seconds
    if time_budget_s is not None:
        reserve = config.triton_deadline_seconds + TRITON_CALLS_PER_CHECK * config.triton_timeout_seconds
        timeout_s = max(1.0, min(timeout_s, time_budget_s - reserve))
    policy = RolloutPolicy(
        crash_restarts=config.crash_restarts,
        backoff_polls=config.backoff_polls,
        require_target_health=config.require_target_health,
    )
    step_started = clock()
    try:
        result = wait_for_rollout(
            reader_factory(),
            config.namespace,
            config.deployment_name,
            timeout_s=timeout_s,
            poll_s=config.rollout_poll_seconds,
            policy=policy,
            clock=clock,
            sleep=sleep,
        )
    except (RolloutFailed, RolloutTimedOut, KubernetesApiError, EksConfigError) as error:
        report.steps.append(StepResult("rollout", False, str(error), _elapsed_ms(step_started, clock)))
    else:
        data = {"status": result.status.to_dict(), "polls": result.polls}
        detail = f"{result.status.message} after {result.elapsed_s:.1f} s"
        if result.status.notes:
            detail += f" ({len(result.status.notes)} pods without the NLB readiness gate: target health left to Triton)"
        report.steps.append(StepResult("rollout", True, detail, _elapsed_ms(step_started, clock), data))
        _triton_step(
            report, config, get_parameter, triton_check, clock, deadline_s=config.triton_deadline_seconds, sleep=sleep
        )
    report.total_ms = _elapsed_ms(started, clock)
    return report
