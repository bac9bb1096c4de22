"""The discrete-time loop: 1 s steps, the HPA every sync period, metrics as old as their pipelines make them.

Each second: the cluster steps (Deployment, placeholders, scheduler, kubelet,
Cluster Autoscaler), the requests arriving in that second go to a Ready pod
chosen at random (kube-proxy's iptables mode), and at every HPA sync the
controller reads:

* the queue signal as Prometheus/prometheus-adapter serve it: each pod's value
  over the rate window ending ``metrics_pipeline_delay_s`` ago; a pod has a value
  once it has been Ready that long (the rate needs samples), otherwise it is
  missing;
* CPU as metrics-server serves it: each running pod's usage over one window
  ending one resolution ago; a pod has a value once its container has run a
  full window.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cdk_app.autoscaling_sim.cluster import Cluster, ClusterParams, SimPod
from cdk_app.autoscaling_sim.hpa import (
    DEFAULT_CPU_INITIALIZATION_PERIOD_S,
    DEFAULT_DELAY_OF_INITIAL_READINESS_STATUS_S,
    DEFAULT_DOWNSCALE_STABILISATION_S,
    DEFAULT_TOLERANCE,
    Decision,
    HorizontalController,
    HpaSpec,
    MetricsSnapshot,
    PodMetric,
    PodsMetricSpec,
    ReplicaCalculator,
    ResourceMetricSpec,
)
from cdk_app.autoscaling_sim.load import Completion, PodCapacity, Profile


@dataclass(frozen=True)
class SimulationParameters:
    hpa_sync_s: int
    #: Triton refresh + Prometheus scrape + rule evaluation + adapter cache (config.capacity_timing).
    custom_metrics_delay_s: float
    #: The recording rules' rate window (config.monitoring.rate_window).
    custom_metrics_window_s: float
    #: The Pods metric read from the pending-request gauge (no rate window); others are the queue-time signal.
    pending_metric_name: str | None = None
    #: metrics-server --metric-resolution (default 15 s): age and window of a CPU sample.
    resource_metrics_delay_s: float = 15.0
    resource_metrics_window_s: float = 15.0
    tolerance: float = DEFAULT_TOLERANCE
    downscale_stabilisation_s: float = DEFAULT_DOWNSCALE_STABILISATION_S
    cpu_initialization_period_s: float = DEFAULT_CPU_INITIALIZATION_PERIOD_S
    initial_readiness_delay_s: float = DEFAULT_DELAY_OF_INITIAL_READINESS_STATUS_S
    #: Quiet time before the load, and after it (scale-down, node removal).
    lead_in_s: int = 120
    tail_s: int = 1200
    #: "Enough capacity": Ready pods that serve the peak rate at this utilisation or less.
    enough_utilisation: float = 0.9
    seed: int = 7


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    hpa: Mapping[str, Any]
    cluster: ClusterParams
    #: Sensitivity: scale the measured CPU per request so a saturated pod uses this share of its request.
    cpu_at_saturation_percent: float | None = None

    def pod_capacity(self, measured: PodCapacity) -> PodCapacity:
        if self.cpu_at_saturation_percent is None:
            return measured
        cores = self.cpu_at_saturation_percent / 100 * self.cluster.cpu_request_millicores / 1000
        return dataclasses.replace(measured, cpu_seconds_per_request=cores / measured.requests_per_second)


@dataclass(frozen=True)
class Sample:
    """One second of the timeline."""

    t: int
    offered: int
    desired: int
    pods: int
    ready: int
    pending: int
    nodes: int
    nodes_ready: int
    placeholders_running: int
    gpus: int


@dataclass
class SimulationResult:
    scenario: Scenario
    profile: Profile
    capacity: PodCapacity
    parameters: SimulationParameters
    onset: int
    load_end: float
    timeline: list[Sample] = field(default_factory=list)
    completions: list[Completion] = field(default_factory=list)
    rejected: int = 0
    decisions: list[Decision] = field(default_factory=list)
    signals: list[tuple[int, float | None, float | None]] = field(default_factory=list)
    pod_startups: list[tuple[float, float, bool]] = field(default_factory=list)
    #: Every Triton pod with its lifecycle times (created, bound, ready, deleted): the replay tests'
    #: Kubernetes objects are built from them.
    pods: list[SimPod] = field(default_factory=list)


def needed_replicas(profile: Profile, capacity: PodCapacity, utilisation: float) -> int:
    return max(1, math.ceil(profile.peak_rate / (utilisation * capacity.requests_per_second)))


def metrics_snapshot(
    cluster: Cluster, spec: HpaSpec, now: float, parameters: SimulationParameters
) -> tuple[MetricsSnapshot, float | None, float | None]:
    """What the metrics APIs answer at ``now``; also the average queue signal (us) and CPU (%) for the report."""
    pods_metrics: dict[str, dict[str, PodMetric]] = {}
    resource_metrics: dict[str, dict[str, PodMetric]] = {}
    queue_values: list[float] = []
    cpu_values: list[float] = []
    request = cluster.params.cpu_request_millicores
    for metric in spec.metrics:
        if isinstance(metric, PodsMetricSpec):
            end = now - parameters.custom_metrics_delay_s
            samples: dict[str, PodMetric] = {}
            for pod in cluster.pods:
                if pod.kind != "triton" or pod.server is None or pod.ready_at is None or pod.ready_at > end:
                    continue
                if pod.gone_at is not None and pod.gone_at <= now:
                    continue
                if metric.name == parameters.pending_metric_name:
                    value = pod.server.pending_signal(end)
                else:
                    value = pod.server.queue_signal_us(end, parameters.custom_metrics_window_s)
                    queue_values.append(value)
                samples[pod.name] = PodMetric(round(value * 1000), end, parameters.custom_metrics_window_s)
            pods_metrics[metric.name] = samples
        elif isinstance(metric, ResourceMetricSpec) and metric.name == "cpu":
            end = now - parameters.resource_metrics_delay_s
            window = parameters.resource_metrics_window_s
            cpu: dict[str, PodMetric] = {}
            for pod in cluster.pods:
                if pod.kind != "triton" or pod.running_at is None or pod.running_at > end - window:
                    continue
                if pod.gone_at is not None and pod.gone_at <= now:
                    continue
                millicores = cluster.cpu_millicores(pod, end, window)
                cpu_values.append(100.0 * millicores / request)
                cpu[pod.name] = PodMetric(round(millicores), end, window)
            resource_metrics["cpu"] = cpu
    queue = sum(queue_values) / len(queue_values) if queue_values else None
    cpu_percent = sum(cpu_values) / len(cpu_values) if cpu_values else None
    return MetricsSnapshot(resource=resource_metrics, pods=pods_metrics), queue, cpu_percent


def simulate(
    scenario: Scenario, profile: Profile, capacity: PodCapacity, parameters: SimulationParameters
) -> SimulationResult:
    spec = HpaSpec.from_manifest(scenario.hpa)
    capacity = scenario.pod_capacity(capacity)
    controller = HorizontalController(
        spec,
        calculator=ReplicaCalculator(parameters.cpu_initialization_period_s, parameters.initial_readiness_delay_s),
        tolerance=parameters.tolerance,
        downscale_stabilisation_window=parameters.downscale_stabilisation_s,
    )
    cluster = Cluster.warm(scenario.cluster, capacity, spec.min_replicas)
    onset = parameters.lead_in_s
    arrivals = profile.arrivals(onset, parameters.seed)
    load_end = onset + profile.duration_s
    result = SimulationResult(scenario, profile, capacity, parameters, onset, load_end)
    rng = random.Random(parameters.seed + 1)  # noqa: S311 - a reproducible simulation
    end = int(math.ceil(load_end)) + parameters.tail_s
    next_arrival = 0
    retry: list[float] = []
    for now in range(end):
        cluster.step(now)
        servers = cluster.ready_servers(now)
        batch = retry
        retry = []
        offered = 0
        while next_arrival < len(arrivals) and arrivals[next_arrival] < now + 1:
            batch.append(arrivals[next_arrival])
            next_arrival += 1
            offered += 1
        for arrival in batch:
            if not servers:
                retry.append(arrival)  # no endpoint: the client retries
                continue
            completion = rng.choice(servers).submit(max(arrival, float(now)))
            if completion is None:
                result.rejected += 1
            else:
                completion.arrival = arrival
                result.completions.append(completion)
        for server in servers:
            server.record_pending(now)
        if now % parameters.hpa_sync_s == 0:
            snapshot, queue, cpu = metrics_snapshot(cluster, spec, now, parameters)
            decision = controller.reconcile(now, cluster.replicas, cluster.hpa_pods(now), snapshot)
            cluster.replicas = decision.desired_replicas
            result.decisions.append(decision)
            result.signals.append((now, queue, cpu))
        triton = cluster.triton_pods()
        live_nodes = cluster.live_nodes()
        result.timeline.append(
            Sample(
                t=now,
                offered=offered,
                desired=cluster.replicas,
                pods=len(triton),
                ready=sum(1 for pod in triton if pod.is_ready(now)),
                pending=sum(1 for pod in triton if pod.node is None),
                nodes=len(live_nodes),
                nodes_ready=sum(1 for node in live_nodes if node.ready(now)),
                placeholders_running=sum(
                    1 for pod in cluster.pods if pod.kind == "placeholder" and pod.node and pod.gone_at is None
                ),
                gpus=cluster.gpus(now),
            )
        )
    result.pods = [pod for pod in cluster.pods if pod.kind == "triton"]
    for pod in cluster.pods:
        if pod.kind == "triton" and pod.bound_at is not None and pod.ready_at is not None and pod.bound_at >= 0:
            node = cluster.node(pod.node or "")
            warm = node.image_at is not None and node.image_at <= pod.bound_at
            result.pod_startups.append((pod.bound_at, pod.ready_at - pod.bound_at, warm))
    return result


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Summary:
    scenario: str
    title: str
    profile: str
    requests: int
    served: int
    rejected: int
    needed_replicas: int
    initial_replicas: int
    time_to_capacity_s: float | None
    first_new_pod_ready_s: float | None
    scale_down_s: float | None
    node_scale_down_s: float | None
    queue_wait_p99_s: float
    latency_p99_s: float
    max_replicas: int
    max_nodes: int
    gpu_hours: float
    warm_pod_startup_max_s: float | None
    response_ok: bool
    scale_down_ok: bool
    startup_ok: bool

    @property
    def passed(self) -> bool:
        return self.response_ok and self.scale_down_ok and self.startup_ok


#: The brief's targets.
RESPONSE_TARGET_S = 120.0
POD_STARTUP_TARGET_S = 30.0
SCALE_DOWN_TARGET_S = 300.0


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


def summarise(result: SimulationResult) -> Summary:
    onset = result.onset
    timeline = result.timeline
    needed = needed_replicas(result.profile, result.capacity, result.parameters.enough_utilisation)
    at_onset = timeline[onset]
    time_to_capacity = next((float(s.t - onset) for s in timeline[onset:] if s.ready >= needed), None)
    first_new = None
    for sample in timeline[onset:]:
        if sample.ready > at_onset.ready:
            first_new = float(sample.t - onset)
            break
    load_end = result.load_end
    after = [s for s in timeline if s.t >= load_end]
    max_pods = max(s.pods for s in timeline)
    scale_down = _settle_time(
        after,
        load_end,
        lambda s: s.pods <= at_onset.pods and s.desired <= at_onset.desired,
        grew=max_pods > at_onset.pods,
    )
    max_nodes = max(s.nodes for s in timeline)
    node_scale_down = _settle_time(
        after, load_end, lambda s: s.nodes <= at_onset.nodes, grew=max_nodes > at_onset.nodes
    )
    waits = [c.wait for c in result.completions]
    latencies = [c.latency for c in result.completions]
    warm_startups = [duration for (_, duration, warm) in result.pod_startups if warm]
    warm_max = max(warm_startups) if warm_startups else None
    return Summary(
        scenario=result.scenario.name,
        title=result.scenario.title,
        profile=result.profile.name,
        requests=result.profile.total,
        served=len(result.completions),
        rejected=result.rejected,
        needed_replicas=needed,
        initial_replicas=at_onset.desired,
        time_to_capacity_s=time_to_capacity,
        first_new_pod_ready_s=first_new,
        scale_down_s=scale_down,
        node_scale_down_s=node_scale_down,
        queue_wait_p99_s=round(percentile(waits, 0.99), 3),
        latency_p99_s=round(percentile(latencies, 0.99), 3),
        max_replicas=max(s.desired for s in timeline),
        max_nodes=max_nodes,
        gpu_hours=round(sum(s.gpus for s in timeline) / 3600.0, 3),
        warm_pod_startup_max_s=warm_max,
        response_ok=time_to_capacity is not None and time_to_capacity < RESPONSE_TARGET_S,
        scale_down_ok=scale_down is not None and scale_down < SCALE_DOWN_TARGET_S,
        startup_ok=warm_max is None or warm_max < POD_STARTUP_TARGET_S,
    )


def _settle_time(after: list[Sample], load_end: float, settled: Any, *, grew: bool) -> float | None:
    """Seconds from the load's end until ``settled`` holds for good; 0 when nothing grew; None if never."""
    if not grew:
        return 0.0
    last_unsettled = None
    for sample in after:
        if not settled(sample):
            last_unsettled = sample.t
    if last_unsettled is None:
        return 0.0
    if last_unsettled == after[-1].t:
        return None
    return float(last_unsettled + 1 - load_end)
