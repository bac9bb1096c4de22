"""Lambda entry point: post-deploy health gate (CDK Trigger, pipeline) and every-minute canary.

* An EventBridge scheduled event (``"source": "aws.events"``) runs the canary: the Triton
  checks only. It publishes ``Availability`` (1 or 0) and, when healthy, ``LatencyMs``; it
  never raises for an unhealthy service, it reports.
* Any other event (the CDK Trigger invokes with no payload, the pipeline with ``{}``) runs
  the gate: rollout wait, then the Triton checks. A failure raises ``HealthGateFailed``
  whose message is the report's summary, which fails the Trigger and so the deployment.
  An event may force a mode with ``{"mode": "gate"}`` or ``{"mode": "canary"}``.
* HEALTH_CHECK_MODE (set by cdk_app/hooks.py) pins what a function runs: the gate function and the
  canary function are separate, with their own timeouts; an event asking for the other mode is refused.

Metrics (EMF, namespace METRICS_NAMESPACE, dimensions ``service=radstream-health-check`` and ``Stage=STAGE``):
Availability, LatencyMs (canary); HealthGatePassed, HealthGateMs, RolloutWaitMs (gate).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.common import eks_client
from lambdas.health_check import gate
from lambdas.health_check.config import HealthCheckConfig
from lambdas.health_check.errors import HealthGateFailed, InvalidEventError
from lambdas.health_check.kube import ApiKubernetesReader, KubernetesReader

SERVICE = "radstream-health-check"
logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE)
tracer = Tracer(service=SERVICE)


def invocation_mode(event: Any) -> str:
    """``canary`` for an EventBridge scheduled event, ``gate`` for anything else; validates the event."""
    if event is None:
        return gate.GATE
    if not isinstance(event, Mapping):
        raise InvalidEventError(f"event must be a JSON object, not {type(event).__name__}")
    mode = event.get("mode")
    if mode is not None:
        if mode not in (gate.GATE, gate.CANARY):
            raise InvalidEventError(f"event mode={mode!r} must be {gate.GATE!r} or {gate.CANARY!r}")
        return str(mode)
    if event.get("source") == "aws.events":
        if event.get("detail-type") != "Scheduled Event":
            raise InvalidEventError(f"EventBridge event detail-type={event.get('detail-type')!r} is not handled")
        return gate.CANARY
    return gate.GATE


def resolve_mode(event: Any, pinned: str | None) -> str:
    """The event's mode, which must agree with the function's HEALTH_CHECK_MODE when that is set."""
    mode = invocation_mode(event)
    if pinned is None:
        return mode
    if mode != pinned and isinstance(event, Mapping) and (event.get("mode") or event.get("source") == "aws.events"):
        raise InvalidEventError(f"this function runs the {pinned} (HEALTH_CHECK_MODE); the event asks for the {mode}")
    return pinned


def build_reader(config: HealthCheckConfig) -> KubernetesReader:
    """The Kubernetes reader over the EKS API, authenticated as this Lambda's role."""

    def token() -> str:
        return eks_client.generate_token(config.cluster_name, config.region)

    api_client = eks_client.build_api_client(config.cluster_endpoint, config.cluster_ca, token)
    return ApiKubernetesReader(api_client, config.kubernetes_timeout_seconds)


def _parameter_getter(config: HealthCheckConfig) -> Callable[[str], str]:
    """SSM through Powertools, cached for TRITON_URL_CACHE_SECONDS in a warm Lambda."""

    def get(name: str) -> str:
        return str(parameters.get_parameter(name, max_age=int(config.triton_url_cache_seconds)))

    return get


@tracer.capture_method
def run_canary(config: HealthCheckConfig) -> dict[str, Any]:
    report = gate.run_canary(config, get_parameter=_parameter_getter(config))
    metrics.add_metric(name="Availability", unit=MetricUnit.Count, value=1 if report.ok else 0)
    if report.ok:
        metrics.add_metric(name="LatencyMs", unit=MetricUnit.Milliseconds, value=report.total_ms)
    result = report.to_dict()
    if report.ok:
        logger.info(report.summary(), extra={"report": result})
    else:
        logger.warning(report.summary(), extra={"report": result})
    return result


@tracer.capture_method
def run_gate(config: HealthCheckConfig, remaining_s: float | None) -> dict[str, Any]:
    report = gate.run_gate(
        config, lambda: build_reader(config), get_parameter=_parameter_getter(config), time_budget_s=remaining_s
    )
    metrics.add_metric(name="HealthGatePassed", unit=MetricUnit.Count, value=1 if report.ok else 0)
    metrics.add_metric(name="HealthGateMs", unit=MetricUnit.Milliseconds, value=report.total_ms)
    rollout = report.step("rollout")
    if rollout is not None and rollout.ok:
        metrics.add_metric(name="RolloutWaitMs", unit=MetricUnit.Milliseconds, value=rollout.elapsed_ms)
    result = report.to_dict()
    if not report.ok:
        logger.error(report.summary(), extra={"report": result})
        raise HealthGateFailed(report.summary(), result)
    logger.info(report.summary(), extra={"report": result})
    return result


def _remaining_seconds(context: LambdaContext | None) -> float | None:
    try:
        return float(context.get_remaining_time_in_millis()) / 1000 if context is not None else None
    except (AttributeError, TypeError):
        return None


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config = HealthCheckConfig.from_env()
    mode = resolve_mode(event, config.mode)
    metrics.namespace = config.metrics_namespace
    metrics.set_default_dimensions(Stage=config.stage)
    tracer.put_annotation(key="mode", value=mode)
    if mode == gate.CANARY:
        return run_canary(config)
    return run_gate(config, _remaining_seconds(context))


# The function the Lambda runtime calls ("handler.handler" with the CDK app's index/handler settings).
handler = lambda_handler
