"""Lambda entry point: scale-event metrics, every minute (EventBridge schedule).

Reads the HPA, the Deployment, its pods and the HPA's rescale events, and publishes
(EMF, namespace METRICS_NAMESPACE, dimension ``service=radstream-scale-events``):

| metric | unit | what |
|---|---|---|
| CurrentReplicas, DesiredReplicas | Count | the HPA's status |
| ReadyReplicas | Count | the Deployment's ready replicas |
| ScaleUpEvents, ScaleDownEvents | Count | HPA rescales since the last run (each counted once) |
| TimeToScaleSeconds | Seconds | HPA raised the desired replicas -> that many replicas Ready, per scale-up |
| PodStartupSeconds | Seconds | pod created -> Ready, once per pod |
| PodScheduledToReadySeconds | Seconds | pod scheduled -> Ready, once per pod |
| PendingGpuPods, UnschedulableGpuPods | Count | pods requesting a GPU that are Pending / not scheduled |
| CrashLoopingPods | Count | pods with a container in CrashLoopBackOff |
| ContainerRestarts | Count | restarts since the last run (each counted once) |
| CollectionFailures | Count | 1 when the API was too slow or unreachable: nothing else is published |

The state of what was counted is saved (SSM, STATE_PARAMETER_NAME) before the metrics are
published; a failed run saves and publishes nothing, and the next run catches up within
the look-back window. Run with reserved concurrency 1 (see state.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.common import eks_client
from lambdas.scale_events.collector import ScaleObservation, collect
from lambdas.scale_events.config import ScaleEventsConfig
from lambdas.scale_events.errors import InvalidEventError, StateError, StateUnreadable
from lambdas.scale_events.kube import ApiScaleReader, ScaleReader
from lambdas.scale_events.state import SsmStateStore, StateStore

SERVICE = "radstream-scale-events"
logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE)
tracer = Tracer(service=SERVICE)


def validate_event(event: Any) -> None:
    """An EventBridge scheduled event, or a manual invocation with ``{}``."""
    if event is None:
        return
    if not isinstance(event, Mapping):
        raise InvalidEventError(f"event must be a JSON object, not {type(event).__name__}")
    source = event.get("source")
    if source is not None and (source != "aws.events" or event.get("detail-type") != "Scheduled Event"):
        raise InvalidEventError(f"event source={source!r} detail-type={event.get('detail-type')!r} is not handled")


def build_reader(config: ScaleEventsConfig) -> ScaleReader:
    """The reader over the EKS API, authenticated as this Lambda's role."""

    def token() -> str:
        return eks_client.generate_token(config.cluster_name, config.region)

    api_client = eks_client.build_api_client(config.cluster_endpoint, config.cluster_ca, token)
    return ApiScaleReader(api_client, config.kubernetes_timeout_seconds)


def build_state_store(config: ScaleEventsConfig) -> StateStore:
    return SsmStateStore(boto3.client("ssm", region_name=config.region), config.state_parameter_name)


def publish(observation: ScaleObservation) -> None:
    gauges = {
        "CurrentReplicas": observation.current_replicas,
        "DesiredReplicas": observation.desired_replicas,
        "ReadyReplicas": observation.ready_replicas,
    }
    for name, gauge in gauges.items():
        if gauge is not None:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=gauge)
    counts = {
        "PendingGpuPods": observation.pending_gpu_pods,
        "UnschedulableGpuPods": observation.unschedulable_gpu_pods,
        "CrashLoopingPods": observation.crash_looping_pods,
    }
    if not observation.baseline:  # a baseline run counted nothing: publish no zero counters
        counts |= {
            "ScaleUpEvents": observation.scale_ups,
            "ScaleDownEvents": observation.scale_downs,
            "ContainerRestarts": observation.container_restarts,
        }
    for name, count in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
    series = {
        "TimeToScaleSeconds": observation.time_to_scale_s,
        "PodStartupSeconds": observation.pod_startup_s,
        "PodScheduledToReadySeconds": observation.pod_scheduled_to_ready_s,
    }
    for name, seconds in series.items():
        for value in seconds:
            metrics.add_metric(name=name, unit=MetricUnit.Seconds, value=value)


@tracer.capture_method
def run(
    config: ScaleEventsConfig,
    reader_factory: Callable[[], ScaleReader],
    store: StateStore,
    now: datetime,
    time_left: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Load the state, collect, save the state, then publish: a run that fails publishes no counts."""
    try:
        try:
            previous = store.load()
        except StateUnreadable as error:
            logger.warning(f"{error}; recording a new baseline")
            previous = None
        observation, state = collect(
            reader_factory(),
            namespace=config.namespace,
            deployment_name=config.deployment_name,
            hpa_name=config.hpa_name,
            previous=previous,
            now=now,
            lookback_s=config.lookback_seconds,
            time_left=time_left,
            call_budget_s=config.kubernetes_timeout_seconds,
        )
        store.save(state)
    except (eks_client.KubernetesUnavailable, eks_client.KubernetesAuthError, StateError) as error:
        # Nothing saved, nothing counted: the next run catches up within the look-back window.
        logger.error(f"scale-event collection failed: {error}")
        metrics.add_metric(name="CollectionFailures", unit=MetricUnit.Count, value=1)
        return {"ok": False, "reason": str(error)}
    publish(observation)
    for note in observation.notes:
        logger.info(note)
    result = {"ok": True, **vars(observation)}
    logger.info("scale-event metrics published", extra={"observation": result})
    return result


def utc_now() -> datetime:
    return datetime.now(UTC)


def _time_left(context: LambdaContext | None) -> Callable[[], float] | None:
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return None
    return lambda: float(context.get_remaining_time_in_millis()) / 1000


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    validate_event(event)
    config = ScaleEventsConfig.from_env()
    metrics.namespace = config.metrics_namespace
    store = build_state_store(config)
    return run(config, lambda: build_reader(config), store, utc_now(), _time_left(context))


# The function the Lambda runtime calls ("handler.handler" with the CDK app's index/handler settings).
handler = lambda_handler
