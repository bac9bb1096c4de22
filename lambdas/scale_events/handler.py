"""Lambda entry point: scale-event metrics, every minute (EventBridge schedule).

Reads the HPA, the Deployment, its pods, the HPA's rescale events and the scaling signal, and
publishes (EMF, namespace METRICS_NAMESPACE, dimensions ``service=radstream-scale-events`` and
``Stage=STAGE``; docs/runbook.md explains each figure):

| metric | unit | what |
|---|---|---|
| CurrentReplicas, DesiredReplicas | Count | the HPA's status |
| ReadyReplicas | Count | the Deployment's ready replicas |
| ScaleUpEvents, ScaleDownEvents | Count | HPA decisions (new status.lastScaleTime) since the last run, each once |
| TimeToScaleSeconds | Seconds | signal above target -> the first added pod serving (Ready, NLB target healthy) |
| TimeToFullScaleSeconds | Seconds | signal above target -> as many pods serving as the HPA asked for |
| SignalToDecisionSeconds, DecisionToScheduledSeconds | Seconds | its parts (1/2) |
| ScheduledToReadySeconds, ReadyToServingSeconds | Seconds | its parts (2/2) |
| UnservedScaleUps | Count | scale-ups not serving by SCALE_UP_DEADLINE_SECONDS or overtaken by a scale-down |
| OrderingErrors | Count | negative intervals (clock skew, stale reads): logged, the interval not published |
| SignalUnavailable | Count | scale-ups timed from the HPA's decision: the scaling signal could not be read |
| PodStartupSeconds | Seconds | pod created -> Ready, once per pod |
| PodScheduledToReadySeconds | Seconds | pod scheduled -> Ready, once per pod |
| PendingGpuPods, UnschedulableGpuPods | Count | pods requesting a GPU that are Pending / not scheduled |
| CrashLoopingPods | Count | pods with a container in CrashLoopBackOff |
| ContainerRestarts | Count | restarts since the last run (each counted once) |
| CollectionFailures | Count | 1 when the API was too slow or unreachable, or the state could not be saved |

The state of what was counted is saved (DynamoDB, STATE_TABLE_NAME, conditional on its version)
before the metrics are published: a run that fails, or that lost the race to another run, saves
and publishes nothing, and the next run catches up within the look-back window.
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
from lambdas.scale_events.errors import InvalidEventError, StateConflict, StateError
from lambdas.scale_events.kube import ApiScaleReader, PrometheusSignalReader, ScaleReader, SignalReader
from lambdas.scale_events.state import DynamoStateStore, StateStore

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


def _api_client(config: ScaleEventsConfig) -> Any:
    def token() -> str:
        return eks_client.generate_token(config.cluster_name, config.region)

    return eks_client.build_api_client(config.cluster_endpoint, config.cluster_ca, token)


def build_reader(config: ScaleEventsConfig) -> ScaleReader:
    """The reader over the EKS API, authenticated as this Lambda's role."""
    return ApiScaleReader(_api_client(config), config.kubernetes_timeout_seconds)


def build_signal_reader(config: ScaleEventsConfig) -> SignalReader | None:
    if config.signal is None:
        return None
    signal = config.signal
    return PrometheusSignalReader(
        _api_client(config), signal.service, signal.query, signal.step_seconds, config.kubernetes_timeout_seconds
    )


def build_state_store(config: ScaleEventsConfig) -> StateStore:
    return DynamoStateStore(
        boto3.client("dynamodb", region_name=config.region),
        config.state_table_name,
        key=f"{config.stage}#{config.namespace}/{config.hpa_name}",
        ttl_seconds=config.state_ttl_seconds,
    )


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
            "UnservedScaleUps": observation.unserved_scale_ups,
            "OrderingErrors": observation.ordering_errors,
            "SignalUnavailable": observation.signal_unavailable,
            "ContainerRestarts": observation.container_restarts,
        }
    for name, count in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
    series = {
        "TimeToScaleSeconds": observation.time_to_scale_s,
        "TimeToFullScaleSeconds": observation.time_to_full_scale_s,
        "SignalToDecisionSeconds": observation.signal_to_decision_s,
        "DecisionToScheduledSeconds": observation.decision_to_scheduled_s,
        "ScheduledToReadySeconds": observation.scheduled_to_ready_s,
        "ReadyToServingSeconds": observation.ready_to_serving_s,
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
    signal_factory: Callable[[], SignalReader | None] = lambda: None,
) -> dict[str, Any]:
    """Load the state, collect, save it conditionally, then publish: a failed or lost run publishes no counts."""
    metrics.set_default_dimensions(Stage=config.stage)
    try:
        loaded = store.load()
        if loaded.state is None and loaded.version > 0:
            logger.warning("saved state is unreadable; recording a new baseline")
        observation, state = collect(
            reader_factory(),
            namespace=config.namespace,
            deployment_name=config.deployment_name,
            hpa_name=config.hpa_name,
            previous=loaded.state,
            now=now,
            lookback_s=config.lookback_seconds,
            deadline_s=config.scale_up_deadline_seconds,
            signal=signal_factory(),
            signal_target=config.signal.target if config.signal is not None else 0.0,
            time_left=time_left,
            call_budget_s=config.kubernetes_timeout_seconds,
        )
        store.save(state, loaded.version, now.timestamp())
    except StateConflict as error:
        # Another run counted this interval and published it: publishing here would count it twice.
        logger.warning(str(error))
        return {"ok": False, "reason": str(error)}
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
    return run(
        config,
        lambda: build_reader(config),
        store,
        utc_now(),
        _time_left(context),
        lambda: build_signal_reader(config),
    )


# The function the Lambda runtime calls ("handler.handler" with the CDK app's index/handler settings).
handler = lambda_handler
