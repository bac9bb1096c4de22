"""The HorizontalPodAutoscaler controller, ported from Kubernetes.

A line-by-line port of the parts of the kube-controller-manager's HPA controller
that decide replica counts, so that the simulation scales exactly as a cluster
would. Sources (kubernetes/kubernetes, master as of Kubernetes 1.33+):

* ``pkg/controller/podautoscaler/replica_calculator.go``: ``GetResourceReplicas``,
  ``GetRawResourceReplicas``, ``GetMetricReplicas``, ``calcPlainMetricReplicas``,
  ``groupPods`` (failed, deleted, pending, unready and missing pods), ``Tolerances``;
* ``pkg/controller/podautoscaler/metrics/utilization.go``: ``GetResourceUtilizationRatio``,
  ``GetMetricUsageRatio`` (integer arithmetic on milli-values, as in Go);
* ``pkg/controller/podautoscaler/horizontal.go``: ``reconcileAutoscaler``,
  ``computeReplicasForMetrics`` (the largest proposal wins; invalid metrics block a
  scale-down), ``normalizeDesiredReplicas`` (no ``behavior``: 5-minute downscale
  stabilisation, scale-up limit ``max(2 x current, 4)``),
  ``normalizeDesiredReplicasWithBehaviors``, ``stabilizeRecommendationWithBehaviors``,
  ``convertDesiredReplicasWithBehaviorRate``, ``calculateScaleUpLimitWithScalingRules``,
  ``calculateScaleDownLimitWithBehaviors``, ``storeScaleEvent``;
* ``pkg/apis/autoscaling/v2/defaults.go``: the API server's defaults (``minReplicas``
  1, CPU 80 % when no metric is given, the default scale-up and scale-down rules
  filled into a partially given ``behavior``).

Times are seconds on the simulation's clock (floats); Go's ``time.Now()`` is the
``now`` argument. Go's zero ``time.Time`` (an unset timestamp) is ``GO_ZERO_TIME``.
Object and External metrics are not used by RadStream and are rejected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, Decimal
from typing import Any, Literal

MAX_INT32 = 2**31 - 1
MIN_INT32 = -(2**31)
#: Go's zero time.Time (year 1), far before any simulated instant.
GO_ZERO_TIME = -1.0e12

#: kube-controller-manager defaults (``--horizontal-pod-autoscaler-*`` flags, EKS does not change them).
DEFAULT_TOLERANCE = 0.1
DEFAULT_DOWNSCALE_STABILISATION_S = 300.0
DEFAULT_CPU_INITIALIZATION_PERIOD_S = 300.0
DEFAULT_DELAY_OF_INITIAL_READINESS_STATUS_S = 30.0
DEFAULT_SYNC_PERIOD_S = 15.0
#: pkg/apis/autoscaling: the CPU target when an HPA lists no metric.
DEFAULT_CPU_UTILIZATION = 80
#: horizontal.go: the scale-up limit without ``behavior``.
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0

PodPhase = Literal["Pending", "Running", "Succeeded", "Failed"]
SelectPolicy = Literal["Max", "Min", "Disabled"]


class MetricsError(RuntimeError):
    """A metric could not be computed (Go returns an error); the message follows Go's."""


class SpecError(ValueError):
    """The HPA object cannot be simulated."""


# --------------------------------------------------------------------------- quantities


_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?\d+))?(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_SUFFIX = {
    None: Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def quantity(value: str | int | float) -> Decimal:
    """A Kubernetes resource.Quantity ("30000", "30k", "500m", "1.5Gi", "1e3") as a number."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if match is None:
        raise SpecError(f"{value!r} is not a Kubernetes quantity")
    number = Decimal(match.group(1))
    if match.group(2):
        number = number.scaleb(int(match.group(2)))
    return number * _SUFFIX[match.group(3)]


def milli_value(value: str | int | float) -> int:
    """resource.Quantity.MilliValue(): the value in thousandths, rounded up as Go does."""
    return int((quantity(value) * 1000).to_integral_value(rounding=ROUND_CEILING))


# --------------------------------------------------------------------------- pods and metrics


@dataclass(frozen=True)
class Pod:
    """What the controller reads of a pod (core/v1 Pod status and spec)."""

    name: str
    phase: PodPhase = "Running"
    #: The PodReady condition: True, False, or None when the pod has no such condition.
    ready: bool | None = True
    #: The PodReady condition's lastTransitionTime.
    ready_transition_time: float = GO_ZERO_TIME
    #: status.startTime (set when the kubelet accepts the pod); None when unset.
    start_time: float | None = GO_ZERO_TIME
    #: metadata.deletionTimestamp is set.
    deleting: bool = False
    #: Sum of the containers' requests per resource, in milli-units; a missing key is a missing request.
    requests_milli: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PodMetric:
    """One pod's sample (metrics.PodMetric): a milli-value, its timestamp and window."""

    value: int
    timestamp: float = GO_ZERO_TIME
    window: float = 60.0


PodMetricsInfo = dict[str, PodMetric]


@dataclass(frozen=True)
class Tolerances:
    """replica_calculator.go ``Tolerances``: no change while the usage ratio stays within the band."""

    scale_down: float = DEFAULT_TOLERANCE
    scale_up: float = DEFAULT_TOLERANCE

    def is_within(self, usage_ratio: float) -> bool:
        return (1.0 - self.scale_down) <= usage_ratio <= (1.0 + self.scale_up)


@dataclass(frozen=True)
class Grouping:
    ready_pod_count: int
    unready_pods: frozenset[str]
    missing_pods: frozenset[str]
    ignored_pods: frozenset[str]


def group_pods(
    pods: Sequence[Pod],
    metrics: Mapping[str, PodMetric],
    resource: str,
    cpu_initialization_period: float,
    delay_of_initial_readiness_status: float,
    now: float,
) -> Grouping:
    """replica_calculator.go ``groupPods``."""
    ready = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    for pod in pods:
        if pod.deleting or pod.phase == "Failed":
            ignored.add(pod.name)
            continue
        # Pending pods are ignored.
        if pod.phase == "Pending":
            unready.add(pod.name)
            continue
        # Pods missing metrics.
        metric = metrics.get(pod.name)
        if metric is None:
            missing.add(pod.name)
            continue
        # Unready pods are ignored (CPU only).
        if resource == "cpu":
            if pod.ready is None or pod.start_time is None:
                is_unready = True
            elif pod.start_time + cpu_initialization_period > now:
                # Pod still within possible initialisation period: ignore the sample if the pod is
                # unready or one window of metric wasn't collected since the last state transition.
                is_unready = pod.ready is False or metric.timestamp < pod.ready_transition_time + metric.window
            else:
                # Ignore the metric if the pod is unready and it has never been ready.
                is_unready = pod.ready is False and pod.start_time + delay_of_initial_readiness_status > (
                    pod.ready_transition_time
                )
            if is_unready:
                unready.add(pod.name)
                continue
        ready += 1
    return Grouping(ready, frozenset(unready), frozenset(missing), frozenset(ignored))


def get_resource_utilization_ratio(
    metrics: Mapping[str, PodMetric], requests: Mapping[str, int], target_utilization: int
) -> tuple[float, int, int]:
    """utilization.go ``GetResourceUtilizationRatio``: (ratio, utilization %, raw average milli-value)."""
    metrics_total = 0
    requests_total = 0
    entries = 0
    for pod_name, metric in metrics.items():
        request = requests.get(pod_name)
        if request is None:
            # We check for missing requests elsewhere, so assuming missing requests == extraneous metrics.
            continue
        metrics_total += metric.value
        requests_total += request
        entries += 1
    if requests_total == 0:
        raise MetricsError("no metrics returned matched known pods")
    current_utilization = _go_div(metrics_total * 100, requests_total)
    current_utilization = max(MIN_INT32, min(MAX_INT32, current_utilization))
    return current_utilization / target_utilization, current_utilization, _go_div(metrics_total, entries)


def get_metric_usage_ratio(metrics: Mapping[str, PodMetric], target_usage: int) -> tuple[float, int]:
    """utilization.go ``GetMetricUsageRatio``: (ratio, average milli-value)."""
    metrics_total = sum(metric.value for metric in metrics.values())
    current_usage = _go_div(metrics_total, len(metrics))
    return current_usage / target_usage, current_usage


def _go_div(numerator: int, denominator: int) -> int:
    """Go's integer division truncates toward zero."""
    quotient = abs(numerator) // abs(denominator)
    return quotient if (numerator >= 0) == (denominator > 0) else -quotient


def _ceil_int32(value: float) -> int:
    return MAX_INT32 if value > MAX_INT32 else int(math.ceil(value))


@dataclass(frozen=True)
class ReplicaCalculator:
    """replica_calculator.go ``ReplicaCalculator`` over an explicit pod list and metric samples."""

    cpu_initialization_period: float = DEFAULT_CPU_INITIALIZATION_PERIOD_S
    delay_of_initial_readiness_status: float = DEFAULT_DELAY_OF_INITIAL_READINESS_STATUS_S

    def get_resource_replicas(
        self,
        current_replicas: int,
        target_utilization: int,
        resource: str,
        tolerances: Tolerances,
        pods: Sequence[Pod],
        metrics: Mapping[str, PodMetric],
        now: float,
    ) -> tuple[int, int, int]:
        """``GetResourceReplicas``: (replicas, utilization %, raw average milli-value)."""
        metrics = _resource_metrics_or_error(resource, metrics)
        if not pods:
            raise MetricsError("no pods returned by selector while calculating replica count")
        grouping = group_pods(
            pods, metrics, resource, self.cpu_initialization_period, self.delay_of_initial_readiness_status, now
        )
        metrics = {k: v for k, v in metrics.items() if k not in grouping.ignored_pods | grouping.unready_pods}
        if not metrics:
            raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")
        requests = calculate_requests(pods, resource)
        usage_ratio, utilization, raw_utilization = get_resource_utilization_ratio(
            metrics, requests, target_utilization
        )

        scale_up_with_unready = bool(grouping.unready_pods) and usage_ratio > 1.0
        if not scale_up_with_unready and not grouping.missing_pods:
            if tolerances.is_within(usage_ratio):
                # Return the current replicas if the change would be too small.
                return current_replicas, utilization, raw_utilization
            # If we don't have any unready or missing pods, we can calculate the new replica count now.
            return _ceil_int32(usage_ratio * grouping.ready_pod_count), utilization, raw_utilization

        if grouping.missing_pods:
            if usage_ratio < 1.0:
                # On a scale-down, treat missing pods as using 100% (all) of the resource request,
                # or the utilization target for targets higher than 100%.
                fallback_utilization = max(100, target_utilization)
                for pod_name in grouping.missing_pods:
                    metrics[pod_name] = PodMetric(_go_div(requests[pod_name] * fallback_utilization, 100))
            elif usage_ratio > 1.0:
                # On a scale-up, treat missing pods as using 0% of the resource request.
                for pod_name in grouping.missing_pods:
                    metrics[pod_name] = PodMetric(0)

        if scale_up_with_unready:
            # On a scale-up, treat unready pods as using 0% of the resource request.
            for pod_name in grouping.unready_pods:
                metrics[pod_name] = PodMetric(0)

        # Re-run the utilization calculation with our new numbers.
        new_usage_ratio, _, _ = get_resource_utilization_ratio(metrics, requests, target_utilization)
        if (
            tolerances.is_within(new_usage_ratio)
            or (usage_ratio < 1.0 < new_usage_ratio)
            or (usage_ratio > 1.0 > new_usage_ratio)
        ):
            # Return the current replicas if the change would be too small,
            # or if the new usage ratio would cause a change in scale direction.
            return current_replicas, utilization, raw_utilization

        new_replicas = _ceil_int32(new_usage_ratio * len(metrics))
        if (new_usage_ratio < 1.0 and new_replicas > current_replicas) or (
            new_usage_ratio > 1.0 and new_replicas < current_replicas
        ):
            # Return the current replicas if the change of metrics length would cause a change in scale direction.
            return current_replicas, utilization, raw_utilization

        # Return the result, where the number of replicas considered is
        # however many replicas factored into our calculation.
        return new_replicas, utilization, raw_utilization

    def get_raw_resource_replicas(
        self,
        current_replicas: int,
        target_usage: int,
        resource: str,
        tolerances: Tolerances,
        pods: Sequence[Pod],
        metrics: Mapping[str, PodMetric],
        now: float,
    ) -> tuple[int, int]:
        """``GetRawResourceReplicas`` (a Resource metric with an AverageValue target)."""
        metrics = _resource_metrics_or_error(resource, metrics)
        return self.calc_plain_metric_replicas(metrics, current_replicas, target_usage, tolerances, pods, resource, now)

    def get_metric_replicas(
        self,
        current_replicas: int,
        target_usage: int,
        metric_name: str,
        tolerances: Tolerances,
        pods: Sequence[Pod],
        metrics: Mapping[str, PodMetric],
        now: float,
    ) -> tuple[int, int]:
        """``GetMetricReplicas`` (a Pods metric): (replicas, average milli-value)."""
        if not metrics:
            raise MetricsError(f"unable to get metric {metric_name}: no metrics returned from custom metrics API")
        return self.calc_plain_metric_replicas(dict(metrics), current_replicas, target_usage, tolerances, pods, "", now)

    def calc_plain_metric_replicas(
        self,
        metrics: Mapping[str, PodMetric],
        current_replicas: int,
        target_usage: int,
        tolerances: Tolerances,
        pods: Sequence[Pod],
        resource: str,
        now: float,
    ) -> tuple[int, int]:
        """``calcPlainMetricReplicas``: the rules for plain (non-percentage) metrics."""
        if not pods:
            raise MetricsError("no pods returned by selector while calculating replica count")
        grouping = group_pods(
            pods, metrics, resource, self.cpu_initialization_period, self.delay_of_initial_readiness_status, now
        )
        working = {k: v for k, v in metrics.items() if k not in grouping.ignored_pods | grouping.unready_pods}
        if not working:
            raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")

        usage_ratio, usage = get_metric_usage_ratio(working, target_usage)
        scale_up_with_unready = bool(grouping.unready_pods) and usage_ratio > 1.0
        if not scale_up_with_unready and not grouping.missing_pods:
            if tolerances.is_within(usage_ratio):
                return current_replicas, usage
            return _ceil_int32(usage_ratio * grouping.ready_pod_count), usage

        if grouping.missing_pods:
            if usage_ratio < 1.0:
                # On a scale-down, treat missing pods as using exactly the target amount.
                for pod_name in grouping.missing_pods:
                    working[pod_name] = PodMetric(target_usage)
            elif usage_ratio > 1.0:
                # On a scale-up, treat missing pods as using 0% of the resource request.
                for pod_name in grouping.missing_pods:
                    working[pod_name] = PodMetric(0)

        if scale_up_with_unready:
            for pod_name in grouping.unready_pods:
                working[pod_name] = PodMetric(0)

        new_usage_ratio, _ = get_metric_usage_ratio(working, target_usage)
        if (
            tolerances.is_within(new_usage_ratio)
            or (usage_ratio < 1.0 < new_usage_ratio)
            or (usage_ratio > 1.0 > new_usage_ratio)
        ):
            return current_replicas, usage

        new_replicas = _ceil_int32(new_usage_ratio * len(working))
        if (new_usage_ratio < 1.0 and new_replicas > current_replicas) or (
            new_usage_ratio > 1.0 and new_replicas < current_replicas
        ):
            return current_replicas, usage
        return new_replicas, usage


def _resource_metrics_or_error(resource: str, metrics: Mapping[str, PodMetric]) -> dict[str, PodMetric]:
    """The REST metrics client's check: an empty answer from metrics-server is an error."""
    if not metrics:
        raise MetricsError(
            f"unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        )
    return dict(metrics)


def calculate_requests(pods: Sequence[Pod], resource: str) -> dict[str, int]:
    """``calculateRequests``: every pod's request (sum of its containers'), or an error naming the pod."""
    requests: dict[str, int] = {}
    for pod in pods:
        if resource not in pod.requests_milli:
            raise MetricsError(f"missing request for {resource} in container of Pod {pod.name}")
        requests[pod.name] = pod.requests_milli[resource]
    return requests


# --------------------------------------------------------------------------- the HPA object


@dataclass(frozen=True)
class ScalingPolicy:
    type: Literal["Pods", "Percent"]
    value: int
    period_seconds: int


@dataclass(frozen=True)
class ScalingRules:
    """autoscaling/v2 HPAScalingRules, after the API server's defaulting."""

    stabilization_window_seconds: int | None
    select_policy: SelectPolicy
    policies: tuple[ScalingPolicy, ...]
    tolerance: float | None = None


@dataclass(frozen=True)
class Behavior:
    scale_up: ScalingRules
    scale_down: ScalingRules


#: defaults.go: scale up by 4 pods or 100 % per 15 s, no stabilisation.
DEFAULT_SCALE_UP_RULES = ScalingRules(
    stabilization_window_seconds=0,
    select_policy="Max",
    policies=(ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15)),
)
#: defaults.go: scale down by 100 % per 15 s; the window comes from the controller flag (5 min).
DEFAULT_SCALE_DOWN_RULES = ScalingRules(
    stabilization_window_seconds=None, select_policy="Max", policies=(ScalingPolicy("Percent", 100, 15),)
)


def generate_scaling_rules(given: Mapping[str, Any] | None, defaults: ScalingRules) -> ScalingRules:
    """defaults.go ``GenerateHPAScaleUpRules``/``GenerateHPAScaleDownRules`` (``copyHPAScalingRules``)."""
    if given is None:
        return defaults
    rules = defaults
    if given.get("selectPolicy") is not None:
        policy = str(given["selectPolicy"])
        if policy not in ("Max", "Min", "Disabled"):
            raise SpecError(f"selectPolicy={policy!r} is not Max, Min or Disabled")
        rules = replace(rules, select_policy=policy)  # type: ignore[arg-type]
    if given.get("stabilizationWindowSeconds") is not None:
        rules = replace(rules, stabilization_window_seconds=int(given["stabilizationWindowSeconds"]))
    if given.get("policies") is not None:
        policies = []
        for item in given["policies"]:
            if item["type"] not in ("Pods", "Percent"):
                raise SpecError(f"scaling policy type {item['type']!r} is not Pods or Percent")
            policies.append(ScalingPolicy(item["type"], int(item["value"]), int(item["periodSeconds"])))
        rules = replace(rules, policies=tuple(policies))
    if given.get("tolerance") is not None:
        rules = replace(rules, tolerance=float(quantity(given["tolerance"])))
    return rules


@dataclass(frozen=True)
class ResourceMetricSpec:
    """``type: Resource``: a Utilization (percent of request) or AverageValue target."""

    name: str
    average_utilization: int | None = None
    average_value_milli: int | None = None

    @property
    def label(self) -> str:
        return f"{self.name} resource"


@dataclass(frozen=True)
class PodsMetricSpec:
    """``type: Pods``: the average over pods of a custom metric, against an AverageValue."""

    name: str
    average_value_milli: int

    @property
    def label(self) -> str:
        return f"pods metric {self.name}"


MetricSpec = ResourceMetricSpec | PodsMetricSpec


@dataclass(frozen=True)
class HpaSpec:
    min_replicas: int
    max_replicas: int
    metrics: tuple[MetricSpec, ...]
    behavior: Behavior | None

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> HpaSpec:
        """An autoscaling/v2 HorizontalPodAutoscaler (the object or its ``spec``), defaulted as the API server does."""
        spec = manifest.get("spec", manifest)
        if "maxReplicas" not in spec:
            raise SpecError("the HPA has no maxReplicas")
        metrics = tuple(_parse_metric(item) for item in spec.get("metrics") or [])
        if not metrics:
            metrics = (ResourceMetricSpec("cpu", average_utilization=DEFAULT_CPU_UTILIZATION),)
        behavior_spec = spec.get("behavior")
        behavior = None
        if behavior_spec is not None:
            behavior = Behavior(
                scale_up=generate_scaling_rules(behavior_spec.get("scaleUp"), DEFAULT_SCALE_UP_RULES),
                scale_down=generate_scaling_rules(behavior_spec.get("scaleDown"), DEFAULT_SCALE_DOWN_RULES),
            )
        min_replicas = int(spec["minReplicas"]) if spec.get("minReplicas") is not None else 1
        return cls(min_replicas, int(spec["maxReplicas"]), metrics, behavior)


def _parse_metric(item: Mapping[str, Any]) -> MetricSpec:
    kind = item.get("type")
    if kind == "Resource":
        source = item["resource"]
        target = source["target"]
        if target.get("type") == "Utilization" and target.get("averageUtilization") is not None:
            return ResourceMetricSpec(str(source["name"]), average_utilization=int(target["averageUtilization"]))
        if target.get("type") == "AverageValue" and target.get("averageValue") is not None:
            return ResourceMetricSpec(str(source["name"]), average_value_milli=milli_value(target["averageValue"]))
        raise SpecError(f"resource metric {source['name']}: neither a Utilization nor an AverageValue target")
    if kind == "Pods":
        source = item["pods"]
        target = source["target"]
        if target.get("type") != "AverageValue" or target.get("averageValue") is None:
            raise SpecError(f"pods metric {source['metric']['name']}: only AverageValue targets exist for Pods")
        return PodsMetricSpec(str(source["metric"]["name"]), milli_value(target["averageValue"]))
    raise SpecError(f"metric type {kind!r} is not simulated (Resource and Pods are)")


# --------------------------------------------------------------------------- the controller


@dataclass
class TimestampedRecommendation:
    recommendation: int
    timestamp: float


@dataclass
class ScaleEvent:
    """``timestampedScaleEvent``: a positive replica change, up or down by the list it is in."""

    replica_change: int
    timestamp: float
    outdated: bool = False


@dataclass(frozen=True)
class MetricsSnapshot:
    """What the metrics APIs answer at one sync: resource metrics (metrics-server) and Pods metrics
    (custom metrics API), each pod name to sample. An absent name answers an empty list."""

    resource: Mapping[str, Mapping[str, PodMetric]] = field(default_factory=dict)
    pods: Mapping[str, Mapping[str, PodMetric]] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricProposal:
    metric: str
    replicas: int | None
    current: int | None
    error: str | None = None


@dataclass(frozen=True)
class Decision:
    """One reconcile: the replica count written to the scale subresource (or kept)."""

    time: float
    current_replicas: int
    desired_replicas: int
    rescale: bool
    reason: str
    proposals: tuple[MetricProposal, ...] = ()
    error: str | None = None


def get_replicas_change_per_period(period_seconds: int, events: Sequence[ScaleEvent], now: float) -> int:
    """``getReplicasChangePerPeriod``."""
    cutoff = now - period_seconds
    return sum(event.replica_change for event in events if event.timestamp > cutoff)


def calculate_scale_up_limit_with_scaling_rules(
    current_replicas: int,
    scale_up_events: Sequence[ScaleEvent],
    scale_down_events: Sequence[ScaleEvent],
    rules: ScalingRules,
    now: float,
) -> int:
    """``calculateScaleUpLimitWithScalingRules``: the most replicas the policies allow now."""
    if rules.select_policy == "Disabled":
        return current_replicas
    select = min if rules.select_policy == "Min" else max
    result = MAX_INT32 if rules.select_policy == "Min" else MIN_INT32
    for policy in rules.policies:
        added = get_replicas_change_per_period(policy.period_seconds, scale_up_events, now)
        deleted = get_replicas_change_per_period(policy.period_seconds, scale_down_events, now)
        period_start = current_replicas - added + deleted
        if policy.type == "Pods":
            proposed = period_start + policy.value
        else:
            # Rounded up: the proposed change might otherwise never increase the replica count.
            proposed = int(math.ceil(period_start * (1 + policy.value / 100)))
        result = select(result, proposed)
    return result


def calculate_scale_down_limit_with_behaviors(
    current_replicas: int,
    scale_up_events: Sequence[ScaleEvent],
    scale_down_events: Sequence[ScaleEvent],
    rules: ScalingRules,
    now: float,
) -> int:
    """``calculateScaleDownLimitWithBehaviors``: the fewest replicas the policies allow now."""
    if rules.select_policy == "Disabled":
        return current_replicas
    select = max if rules.select_policy == "Min" else min
    result = MIN_INT32 if rules.select_policy == "Min" else MAX_INT32
    for policy in rules.policies:
        added = get_replicas_change_per_period(policy.period_seconds, scale_up_events, now)
        deleted = get_replicas_change_per_period(policy.period_seconds, scale_down_events, now)
        period_start = current_replicas - added + deleted
        if policy.type == "Pods":
            proposed = period_start - policy.value
        else:
            proposed = int(period_start * (1 - policy.value / 100))
        result = select(result, proposed)
    return result


def calculate_scale_up_limit(current_replicas: int) -> int:
    """``calculateScaleUpLimit`` (no behavior): at most double, at least 4."""
    return int(max(SCALE_UP_LIMIT_FACTOR * current_replicas, SCALE_UP_LIMIT_MINIMUM))


def convert_desired_replicas_with_rules(
    current_replicas: int, desired_replicas: int, hpa_min_replicas: int, hpa_max_replicas: int
) -> tuple[int, str]:
    """``convertDesiredReplicasWithRules`` (no behavior): (replicas, condition reason)."""
    minimum_allowed = hpa_min_replicas
    scale_up_limit = calculate_scale_up_limit(current_replicas)
    if hpa_max_replicas > scale_up_limit:
        maximum_allowed, condition = scale_up_limit, "ScaleUpLimit"
    else:
        maximum_allowed, condition = hpa_max_replicas, "TooManyReplicas"
    if desired_replicas < minimum_allowed:
        return minimum_allowed, "TooFewReplicas"
    if desired_replicas > maximum_allowed:
        return maximum_allowed, condition
    return desired_replicas, "DesiredWithinRange"


def _longest_policy_period(rules: ScalingRules) -> int:
    return max((policy.period_seconds for policy in rules.policies), default=0)


def mark_scale_events_outdated(events: list[ScaleEvent], longest_policy_period: int, now: float) -> None:
    cutoff = now - longest_policy_period
    for event in events:
        if event.timestamp < cutoff:
            event.outdated = True


class HorizontalController:
    """One HPA's state in the controller (recommendations, scale events) and its reconcile step."""

    def __init__(
        self,
        spec: HpaSpec,
        *,
        calculator: ReplicaCalculator | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        downscale_stabilisation_window: float = DEFAULT_DOWNSCALE_STABILISATION_S,
    ) -> None:
        self.spec = spec
        self.calculator = calculator or ReplicaCalculator()
        self.tolerance = tolerance
        self.downscale_stabilisation_window = downscale_stabilisation_window
        self.recommendations: list[TimestampedRecommendation] | None = None
        self.scale_up_events: list[ScaleEvent] = []
        self.scale_down_events: list[ScaleEvent] = []

    # -- reconcileAutoscaler

    def reconcile(self, now: float, current_replicas: int, pods: Sequence[Pod], metrics: MetricsSnapshot) -> Decision:
        """``reconcileAutoscaler``: read the scale, compute, normalize, and decide whether to rescale."""
        if self.recommendations is None:  # recordInitialRecommendation
            self.recommendations = [TimestampedRecommendation(current_replicas, now)]
        spec = self.spec
        proposals: tuple[MetricProposal, ...] = ()
        error: str | None = None
        if current_replicas == 0 and spec.min_replicas != 0:
            return Decision(now, 0, 0, False, "ScalingDisabled")
        if current_replicas > spec.max_replicas:
            desired, reason = spec.max_replicas, "Current number of replicas above Spec.MaxReplicas"
        elif current_replicas < spec.min_replicas:
            desired, reason = spec.min_replicas, "Current number of replicas below Spec.MinReplicas"
        else:
            metric_desired, metric_name, proposals, error = self.compute_replicas_for_metrics(
                now, current_replicas, pods, metrics
            )
            if error is not None and metric_desired == -1:
                return Decision(
                    now, current_replicas, current_replicas, False, "FailedComputeMetricsReplicas", proposals, error
                )
            desired = max(0, metric_desired)
            reason = f"{metric_name} above target" if desired > current_replicas else "All metrics below target"
            if spec.behavior is None:
                desired = self.normalize_desired_replicas(now, current_replicas, desired)
            else:
                desired = self.normalize_desired_replicas_with_behaviors(now, current_replicas, desired)
        rescale = desired != current_replicas
        if rescale:
            self.store_scale_event(now, current_replicas, desired)
        else:
            desired = current_replicas
        return Decision(now, current_replicas, desired, rescale, reason if rescale else "", proposals, error)

    def tolerances(self) -> Tolerances:
        """``tolerancesForHpa``: per-direction tolerances from ``behavior`` (HPAConfigurableTolerance)."""
        behavior = self.spec.behavior
        down = up = self.tolerance
        if behavior is not None:
            if behavior.scale_down.tolerance is not None:
                down = behavior.scale_down.tolerance
            if behavior.scale_up.tolerance is not None:
                up = behavior.scale_up.tolerance
        return Tolerances(scale_down=down, scale_up=up)

    def compute_replicas_for_metrics(
        self, now: float, spec_replicas: int, pods: Sequence[Pod], metrics: MetricsSnapshot
    ) -> tuple[int, str, tuple[MetricProposal, ...], str | None]:
        """``computeReplicasForMetrics``: the largest valid proposal; -1 when nothing may be done."""
        replicas = 0
        metric = ""
        invalid = 0
        first_error: str | None = None
        proposals: list[MetricProposal] = []
        tolerances = self.tolerances()
        for spec in self.spec.metrics:
            try:
                proposal, current = self._compute_replicas_for_metric(
                    spec, spec_replicas, pods, metrics, tolerances, now
                )
            except MetricsError as error:
                proposals.append(MetricProposal(spec.label, None, None, str(error)))
                if invalid == 0:
                    first_error = f"{spec.label}: {error}"
                invalid += 1
                continue
            proposals.append(MetricProposal(spec.label, proposal, current))
            if replicas == 0 or proposal > replicas:
                replicas, metric = proposal, spec.label
        failure = None
        if first_error is not None:
            failure = (
                f"invalid metrics ({invalid} invalid out of {len(self.spec.metrics)}), first error is: {first_error}"
            )
        # If all metrics are invalid or some are invalid and we would scale down, do nothing.
        if invalid >= len(self.spec.metrics) or (invalid > 0 and replicas < spec_replicas):
            return -1, "", tuple(proposals), failure
        return replicas, metric, tuple(proposals), failure

    def _compute_replicas_for_metric(
        self,
        spec: MetricSpec,
        spec_replicas: int,
        pods: Sequence[Pod],
        metrics: MetricsSnapshot,
        tolerances: Tolerances,
        now: float,
    ) -> tuple[int, int]:
        calc = self.calculator
        if isinstance(spec, PodsMetricSpec):
            samples = metrics.pods.get(spec.name, {})
            return calc.get_metric_replicas(
                spec_replicas, spec.average_value_milli, spec.name, tolerances, pods, samples, now
            )
        samples = metrics.resource.get(spec.name, {})
        if spec.average_value_milli is not None:
            return calc.get_raw_resource_replicas(
                spec_replicas, spec.average_value_milli, spec.name, tolerances, pods, samples, now
            )
        assert spec.average_utilization is not None
        replicas, utilization, _ = calc.get_resource_replicas(
            spec_replicas, spec.average_utilization, spec.name, tolerances, pods, samples, now
        )
        return replicas, utilization

    # -- normalization without behavior

    def stabilize_recommendation(self, now: float, prenormalized_desired_replicas: int) -> int:
        """``stabilizeRecommendation``: the highest recommendation of the downscale window."""
        recommendations = self._recommendations()
        max_recommendation = prenormalized_desired_replicas
        found_old_sample = False
        old_sample_index = 0
        cutoff = now - self.downscale_stabilisation_window
        for index, rec in enumerate(recommendations):
            if rec.timestamp < cutoff:
                found_old_sample = True
                old_sample_index = index
            elif rec.recommendation > max_recommendation:
                max_recommendation = rec.recommendation
        new = TimestampedRecommendation(prenormalized_desired_replicas, now)
        if found_old_sample:
            recommendations[old_sample_index] = new
        else:
            recommendations.append(new)
        return max_recommendation

    def normalize_desired_replicas(self, now: float, current_replicas: int, prenormalized: int) -> int:
        stabilized = self.stabilize_recommendation(now, prenormalized)
        desired, _ = convert_desired_replicas_with_rules(
            current_replicas, stabilized, self.spec.min_replicas, self.spec.max_replicas
        )
        return desired

    # -- normalization with behavior

    def _behavior(self) -> Behavior:
        behavior = self.spec.behavior
        if behavior is None:
            raise SpecError("the HPA has no behavior")
        if behavior.scale_down.stabilization_window_seconds is None:  # maybeInitScaleDownStabilizationWindow
            window = int(self.downscale_stabilisation_window)
            behavior = replace(behavior, scale_down=replace(behavior.scale_down, stabilization_window_seconds=window))
        return behavior

    def normalize_desired_replicas_with_behaviors(self, now: float, current_replicas: int, prenormalized: int) -> int:
        behavior = self._behavior()
        up_window = behavior.scale_up.stabilization_window_seconds or 0
        down_window = behavior.scale_down.stabilization_window_seconds or 0
        stabilized, _ = self.stabilize_recommendation_with_behaviors(
            now, current_replicas, prenormalized, up_window, down_window
        )
        desired, _ = self.convert_desired_replicas_with_behavior_rate(
            now, current_replicas, stabilized, self.spec.min_replicas, self.spec.max_replicas, behavior
        )
        return desired

    def stabilize_recommendation_with_behaviors(
        self, now: float, current_replicas: int, desired_replicas: int, up_window: int, down_window: int
    ) -> tuple[int, str]:
        """``stabilizeRecommendationWithBehaviors``: clamp between the window's lowest (up) and highest (down)."""
        recommendations = self._recommendations()
        found_old_sample = False
        old_sample_index = 0
        up_recommendation = desired_replicas
        up_cutoff = now - up_window
        down_recommendation = desired_replicas
        down_cutoff = now - down_window
        for index, rec in enumerate(recommendations):
            if rec.timestamp > up_cutoff:
                up_recommendation = min(rec.recommendation, up_recommendation)
            if rec.timestamp > down_cutoff:
                down_recommendation = max(rec.recommendation, down_recommendation)
            if rec.timestamp < up_cutoff and rec.timestamp < down_cutoff:
                found_old_sample = True
                old_sample_index = index
        recommendation = current_replicas
        recommendation = max(recommendation, up_recommendation)
        recommendation = min(recommendation, down_recommendation)
        new = TimestampedRecommendation(desired_replicas, now)
        if found_old_sample:
            recommendations[old_sample_index] = new
        else:
            recommendations.append(new)
        reason = "ScaleUpStabilized" if desired_replicas >= current_replicas else "ScaleDownStabilized"
        return recommendation, reason

    def convert_desired_replicas_with_behavior_rate(
        self,
        now: float,
        current_replicas: int,
        desired_replicas: int,
        min_replicas: int,
        max_replicas: int,
        behavior: Behavior,
    ) -> tuple[int, str]:
        """``convertDesiredReplicasWithBehaviorRate``: apply the rate policies and the min/max bounds."""
        if desired_replicas > current_replicas:
            scale_up_limit = calculate_scale_up_limit_with_scaling_rules(
                current_replicas, self.scale_up_events, self.scale_down_events, behavior.scale_up, now
            )
            # We shouldn't scale up further until the scaleUpEvents will be cleaned up.
            scale_up_limit = max(scale_up_limit, current_replicas)
            if max_replicas > scale_up_limit:
                maximum_allowed, reason = scale_up_limit, "ScaleUpLimit"
            else:
                maximum_allowed, reason = max_replicas, "TooManyReplicas"
            if desired_replicas > maximum_allowed:
                return maximum_allowed, reason
        elif desired_replicas < current_replicas:
            scale_down_limit = calculate_scale_down_limit_with_behaviors(
                current_replicas, self.scale_up_events, self.scale_down_events, behavior.scale_down, now
            )
            # We shouldn't scale down further until the scaleDownEvents will be cleaned up.
            scale_down_limit = min(scale_down_limit, current_replicas)
            if min_replicas < scale_down_limit:
                minimum_allowed, reason = scale_down_limit, "ScaleDownLimit"
            else:
                minimum_allowed, reason = min_replicas, "TooFewReplicas"
            if desired_replicas < minimum_allowed:
                return minimum_allowed, reason
        return desired_replicas, "DesiredWithinRange"

    def store_scale_event(self, now: float, prev_replicas: int, new_replicas: int) -> None:
        """``storeScaleEvent``: record the change, reusing an outdated slot (only with ``behavior``)."""
        behavior = self.spec.behavior
        if behavior is None:
            return  # Events are only used by the behavior's rate policies.
        if new_replicas > prev_replicas:
            events, rules, change = self.scale_up_events, behavior.scale_up, new_replicas - prev_replicas
        else:
            events, rules, change = self.scale_down_events, behavior.scale_down, prev_replicas - new_replicas
        mark_scale_events_outdated(events, _longest_policy_period(rules), now)
        old_index = None
        for index, event in enumerate(events):
            if event.outdated:
                old_index = index
        new_event = ScaleEvent(change, now)
        if old_index is not None:
            events[old_index] = new_event
        else:
            events.append(new_event)

    def _recommendations(self) -> list[TimestampedRecommendation]:
        if self.recommendations is None:
            self.recommendations = []
        return self.recommendations
