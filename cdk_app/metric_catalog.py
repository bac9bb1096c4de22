"""Every metric RadStream watches, in one place: names, kinds, units, dimensions.

Three sources feed CloudWatch, and the collector configuration, the dashboard and
the alarms all read their names from here (no copy-pasted strings):

* **Triton's Prometheus metrics** (port 8002 of every Triton pod), scraped by a
  standalone CloudWatch agent (``cdk_app/prometheus_collector.py``, AWS's
  "CloudWatch agent with Prometheus metrics collection" on EKS) and turned into
  CloudWatch metrics by its EMF processor (namespace ``observability.prometheus_namespace``).
  ``scrape_config`` and ``agent_config`` build its two configuration files: the scrape
  job and the ``metric_declaration`` entries come from ``TRITON_METRICS`` and
  ``DECLARATIONS`` below.
* **Container Insights** (enhanced observability, GPU metrics through the
  ``amazon-cloudwatch-observability`` add-on's DCGM exporter): namespace
  ``ContainerInsights``, names fixed by AWS. ``collector_addon_configuration`` builds
  the add-on's configuration, with documented keys only.
* **The hook Lambdas** (Powertools EMF, namespace ``hooks.metrics_namespace``,
  dimension ``service``): the canary and the scale-event publisher.

How the agent converts Prometheus types (AWS: "Prometheus metric type conversion
by the CloudWatch agent"): gauges are sent as read; counters become the delta
since the previous scrape (nothing from the first scrape of a target), so a
counter's CloudWatch ``Sum`` over a period is its increase in that period;
histograms are dropped. Summaries: the documented behaviour keeps each quantile
as a value with its ``quantile`` label; agents whose Prometheus pipeline runs on
OpenTelemetry's EMF exporter send a statistic set instead (Min = first quantile,
Max = last quantile). Triton is started with the quantiles 0.5, 0.95 and 0.99
(``triton/start_triton.sh``), so the last quantile is the p99 and the
``Maximum`` of ``nv_inference_request_summary_us`` per model (without the
``quantile`` dimension) is the worst p99 in either form: the latency alarm uses
that; the dashboard also shows p50/p95/p99 per ``quantile``.

``relabel`` and ``select_metrics`` re-implement, for the tests, what the agent does
with a scraped sample: the target relabelling of the scrape job and the
declaration matching of the EMF processor. The integration test feeds the real
Triton 2.51 ``/metrics`` text through them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from cdk_app.config import PlatformConfig
from cdk_app.scaling_signal import ENSEMBLE_MODEL, TRITON_SCRAPE_JOB

# --- Dimensions (Prometheus labels after relabelling; ClusterName is added by the agent).
CLUSTER: Final = "ClusterName"
NAMESPACE: Final = "Namespace"
POD: Final = "pod_name"
MODEL: Final = "model"
QUANTILE: Final = "quantile"
REASON: Final = "reason"
JOB: Final = "job"
# Container Insights' own dimensions: PodName is the owning workload's name (the Deployment).
CI_POD_NAME: Final = "PodName"
CI_SERVICE: Final = "Service"
# Powertools EMF: the default dimension of the hook Lambdas.
HOOK_SERVICE: Final = "service"
# Every hook metric also carries the stage it was published from (the hooks' STAGE variable).
HOOK_STAGE: Final = "Stage"

CONTAINER_INSIGHTS_NAMESPACE: Final = "ContainerInsights"
# Where the standalone agent reads the scrape configuration (its ConfigMap's mount in AWS's
# reference manifest, prometheus-eks.yaml; cdk_app/prometheus_collector.py mounts it there).
PROMETHEUS_CONFIG_DIR: Final = "/etc/prometheusconfig"
PROMETHEUS_CONFIG_FILE: Final = "prometheus.yaml"
PROMETHEUS_CONFIG_PATH: Final = f"{PROMETHEUS_CONFIG_DIR}/{PROMETHEUS_CONFIG_FILE}"
METRICS_PORT_NAME: Final = "metrics"

# --- Models. Clients call the ensemble; its steps are what queue and compute.
PIPELINE_MODEL: Final = ENSEMBLE_MODEL
STEP_MODELS: Final = ("study_preprocess", "cxr_classifier", "lesion_segmenter")


class Kind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    SUMMARY = "summary"


@dataclass(frozen=True)
class TritonMetric:
    name: str
    kind: Kind
    unit: str  # CloudWatch unit the agent stamps on it
    description: str
    # Only a server with a visible NVIDIA GPU exports it (Triton's GPU metrics need NVML).
    gpu_only: bool = False


REQUEST_SUCCESS: Final = TritonMetric(
    "nv_inference_request_success", Kind.COUNTER, "Count", "Successful requests, per model"
)
# The ensemble may count one failed request twice (seen with Triton 2.51): error rates are an upper bound.
REQUEST_FAILURE: Final = TritonMetric(
    "nv_inference_request_failure", Kind.COUNTER, "Count", "Failed requests, per model and reason"
)
REQUEST_DURATION: Final = TritonMetric(
    "nv_inference_request_duration_us", Kind.COUNTER, "Microseconds", "End-to-end request time, cumulative"
)
QUEUE_DURATION: Final = TritonMetric(
    "nv_inference_queue_duration_us", Kind.COUNTER, "Microseconds", "Time requests waited in the queue, cumulative"
)
COMPUTE_INPUT_DURATION: Final = TritonMetric(
    "nv_inference_compute_input_duration_us", Kind.COUNTER, "Microseconds", "Input preparation time, cumulative"
)
COMPUTE_INFER_DURATION: Final = TritonMetric(
    "nv_inference_compute_infer_duration_us", Kind.COUNTER, "Microseconds", "Model execution time, cumulative"
)
COMPUTE_OUTPUT_DURATION: Final = TritonMetric(
    "nv_inference_compute_output_duration_us", Kind.COUNTER, "Microseconds", "Output extraction time, cumulative"
)
PENDING_REQUESTS: Final = TritonMetric(
    "nv_inference_pending_request_count", Kind.GAUGE, "Count", "Requests waiting to execute, per model"
)
# Needs tritonserver --metrics-config=summary_latencies=true (triton/start_triton.sh).
REQUEST_LATENCY: Final = TritonMetric(
    "nv_inference_request_summary_us", Kind.SUMMARY, "Microseconds", "Request latency quantiles (sliding window)"
)
GPU_UTILIZATION: Final = TritonMetric(
    "nv_gpu_utilization", Kind.GAUGE, "None", "GPU utilisation (0 to 1), per GPU", gpu_only=True
)
GPU_MEMORY_USED: Final = TritonMetric(
    "nv_gpu_memory_used_bytes", Kind.GAUGE, "Bytes", "GPU memory used, per GPU", gpu_only=True
)
GPU_MEMORY_TOTAL: Final = TritonMetric(
    "nv_gpu_memory_total_bytes", Kind.GAUGE, "Bytes", "GPU memory, per GPU", gpu_only=True
)

# Latency quantiles (label value -> allowed error) Triton's summaries export: start_triton.sh passes
# them as --metrics-config=summary_quantiles=...; the highest comes last (see the module docstring).
P50: Final = "0.5"
P95: Final = "0.95"
P99: Final = "0.99"
SUMMARY_QUANTILES: Final = {P50: "0.05", P95: "0.01", P99: "0.001"}

# --- Dimension sets the collector emits.
MODEL_DIMS: Final = (CLUSTER, NAMESPACE, MODEL)
MODEL_POD_DIMS: Final = (CLUSTER, NAMESPACE, MODEL, POD)
MODEL_REASON_DIMS: Final = (CLUSTER, NAMESPACE, MODEL, REASON)
QUANTILE_DIMS: Final = (CLUSTER, NAMESPACE, MODEL, QUANTILE)
DEPLOYMENT_DIMS: Final = (CLUSTER, NAMESPACE)
POD_DIMS: Final = (CLUSTER, NAMESPACE, POD)


@dataclass(frozen=True)
class Declaration:
    """One ``emf_processor.metric_declaration`` entry: these metrics, with these dimension sets."""

    metrics: tuple[TritonMetric, ...]
    dimensions: tuple[tuple[str, ...], ...]


DECLARATIONS: Final = (
    # Per model (all pods together) and per model and pod.
    Declaration(
        (
            REQUEST_SUCCESS,
            REQUEST_FAILURE,
            REQUEST_DURATION,
            QUEUE_DURATION,
            COMPUTE_INPUT_DURATION,
            COMPUTE_INFER_DURATION,
            COMPUTE_OUTPUT_DURATION,
            PENDING_REQUESTS,
        ),
        (MODEL_DIMS, MODEL_POD_DIMS),
    ),
    # Why requests fail (REJECTED: queue full, BACKEND, CANCELED, OTHER).
    Declaration((REQUEST_FAILURE,), (MODEL_REASON_DIMS,)),
    # Without the quantile: Maximum is the p99 whatever the agent does with summaries.
    Declaration((REQUEST_LATENCY,), (MODEL_DIMS, MODEL_POD_DIMS, QUANTILE_DIMS)),
    # Triton's GPU metrics are per GPU, not per model.
    Declaration((GPU_UTILIZATION, GPU_MEMORY_USED, GPU_MEMORY_TOTAL), (DEPLOYMENT_DIMS, POD_DIMS)),
)
TRITON_METRICS: Final = tuple(dict.fromkeys(m for d in DECLARATIONS for m in d.metrics))


def emitted_series() -> set[tuple[str, tuple[str, ...]]]:
    """Every (metric name, dimension names) pair the collector sends to CloudWatch."""
    return {(m.name, dims) for d in DECLARATIONS for m in d.metrics for dims in d.dimensions}


@dataclass(frozen=True)
class ContainerInsightsMetric:
    name: str
    dimensions: tuple[str, ...]
    description: str


POD_CPU: Final = ContainerInsightsMetric(
    "pod_cpu_utilization", (CLUSTER, NAMESPACE, CI_POD_NAME), "Pod CPU, % of the node's"
)
POD_MEMORY: Final = ContainerInsightsMetric(
    "pod_memory_utilization", (CLUSTER, NAMESPACE, CI_POD_NAME), "Pod memory, % of the node's"
)
RUNNING_PODS: Final = ContainerInsightsMetric(
    "service_number_of_running_pods", (CLUSTER, NAMESPACE, CI_SERVICE), "Running pods behind the Service"
)
NODE_COUNT: Final = ContainerInsightsMetric("cluster_node_count", (CLUSTER,), "Worker nodes")
POD_GPU_UTILIZATION: Final = ContainerInsightsMetric(
    "pod_gpu_utilization", (CLUSTER, NAMESPACE, CI_POD_NAME), "GPU utilisation of the pods, %"
)
POD_GPU_MEMORY_USED: Final = ContainerInsightsMetric(
    "pod_gpu_memory_used", (CLUSTER, NAMESPACE, CI_POD_NAME), "GPU memory used by the pods, bytes"
)
NODE_GPU_UTILIZATION: Final = ContainerInsightsMetric(
    "node_gpu_utilization", (CLUSTER,), "GPU utilisation of the nodes, %"
)
NODE_GPU_MEMORY_UTILIZATION: Final = ContainerInsightsMetric(
    "node_gpu_memory_utilization", (CLUSTER,), "GPU memory used on the nodes, %"
)


@dataclass(frozen=True)
class HookMetric:
    name: str
    service: str  # the Powertools ``service`` dimension: which Lambda publishes it
    description: str


HEALTH_CHECK_SERVICE: Final = "radstream-health-check"
SCALE_EVENTS_SERVICE: Final = "radstream-scale-events"

AVAILABILITY: Final = HookMetric("Availability", HEALTH_CHECK_SERVICE, "Canary: 1 healthy, 0 not (every minute)")
CANARY_LATENCY: Final = HookMetric("LatencyMs", HEALTH_CHECK_SERVICE, "Canary check time, when healthy")
CURRENT_REPLICAS: Final = HookMetric("CurrentReplicas", SCALE_EVENTS_SERVICE, "HPA current replicas")
DESIRED_REPLICAS: Final = HookMetric("DesiredReplicas", SCALE_EVENTS_SERVICE, "HPA desired replicas")
READY_REPLICAS: Final = HookMetric("ReadyReplicas", SCALE_EVENTS_SERVICE, "Deployment ready replicas")
SCALE_UP_EVENTS: Final = HookMetric("ScaleUpEvents", SCALE_EVENTS_SERVICE, "HPA scale-ups")
SCALE_DOWN_EVENTS: Final = HookMetric("ScaleDownEvents", SCALE_EVENTS_SERVICE, "HPA scale-downs")
TIME_TO_SCALE: Final = HookMetric(
    "TimeToScaleSeconds", SCALE_EVENTS_SERVICE, "Signal above target -> the added pods serving (NLB healthy)"
)
TIME_TO_FULL_SCALE: Final = HookMetric(
    "TimeToFullScaleSeconds", SCALE_EVENTS_SERVICE, "Signal above target -> all the HPA asked for serving"
)
SIGNAL_TO_DECISION: Final = HookMetric("SignalToDecisionSeconds", SCALE_EVENTS_SERVICE, "Signal above target -> HPA")
DECISION_TO_SCHEDULED: Final = HookMetric("DecisionToScheduledSeconds", SCALE_EVENTS_SERVICE, "HPA -> pod scheduled")
SCHEDULED_TO_READY: Final = HookMetric("ScheduledToReadySeconds", SCALE_EVENTS_SERVICE, "Scheduled -> containers ready")
READY_TO_SERVING: Final = HookMetric("ReadyToServingSeconds", SCALE_EVENTS_SERVICE, "Containers ready -> NLB healthy")
UNSERVED_SCALE_UPS: Final = HookMetric(
    "UnservedScaleUps", SCALE_EVENTS_SERVICE, "Scale-ups not serving by the deadline"
)
ORDERING_ERRORS: Final = HookMetric("OrderingErrors", SCALE_EVENTS_SERVICE, "Negative intervals (clock/ordering)")
SIGNAL_UNAVAILABLE: Final = HookMetric("SignalUnavailable", SCALE_EVENTS_SERVICE, "Scale-ups timed without the signal")
TIME_TO_SCALE_PARTS: Final = (SIGNAL_TO_DECISION, DECISION_TO_SCHEDULED, SCHEDULED_TO_READY, READY_TO_SERVING)
POD_STARTUP: Final = HookMetric("PodStartupSeconds", SCALE_EVENTS_SERVICE, "Pod created -> Ready")
PENDING_GPU_PODS: Final = HookMetric("PendingGpuPods", SCALE_EVENTS_SERVICE, "Triton pods Pending")
UNSCHEDULABLE_GPU_PODS: Final = HookMetric("UnschedulableGpuPods", SCALE_EVENTS_SERVICE, "Triton pods unschedulable")
CRASH_LOOPING_PODS: Final = HookMetric("CrashLoopingPods", SCALE_EVENTS_SERVICE, "Pods in CrashLoopBackOff")
CONTAINER_RESTARTS: Final = HookMetric("ContainerRestarts", SCALE_EVENTS_SERVICE, "Restarts since the last run")
COLLECTION_FAILURES: Final = HookMetric("CollectionFailures", SCALE_EVENTS_SERVICE, "Scale-event runs that failed")
HOOK_METRICS: Final = (
    AVAILABILITY,
    CANARY_LATENCY,
    CURRENT_REPLICAS,
    DESIRED_REPLICAS,
    READY_REPLICAS,
    SCALE_UP_EVENTS,
    SCALE_DOWN_EVENTS,
    TIME_TO_SCALE,
    TIME_TO_FULL_SCALE,
    *TIME_TO_SCALE_PARTS,
    UNSERVED_SCALE_UPS,
    ORDERING_ERRORS,
    SIGNAL_UNAVAILABLE,
    POD_STARTUP,
    PENDING_GPU_PODS,
    UNSCHEDULABLE_GPU_PODS,
    CRASH_LOOPING_PODS,
    CONTAINER_RESTARTS,
    COLLECTION_FAILURES,
)


# --- The collectors' configuration: the standalone Prometheus agent and the add-on.


def _exact(*names: str) -> str:
    return "^(" + "|".join(re.escape(name) for name in names) + ")$"


def prometheus_log_group_name(config: PlatformConfig) -> str:
    return f"/aws/containerinsights/{config.cluster.name}/prometheus"


def scraped_series_names() -> list[str]:
    """The Prometheus series names the scrape job keeps (regex-escaped)."""
    names: list[str] = []
    for metric in TRITON_METRICS:
        suffixes = ("", "_sum", "_count") if metric.kind is Kind.SUMMARY else ("",)
        names.extend(re.escape(metric.name + suffix) for suffix in suffixes)
    return names


def scrape_config(config: PlatformConfig) -> dict[str, Any]:
    """The standalone agent's Prometheus configuration (``prometheus.yaml``): Triton's metrics port only.

    Discovery is limited to the workload namespace, so the agent needs to read pods there only
    (a namespaced Role, cdk_app/prometheus_collector.py).
    """
    workload, observability = config.workload, config.observability
    return {
        "global": {
            "scrape_interval": f"{observability.scrape_interval_seconds}s",
            "scrape_timeout": f"{observability.scrape_timeout_seconds}s",
        },
        "scrape_configs": [
            {
                "job_name": TRITON_SCRAPE_JOB,
                "metrics_path": "/metrics",
                "sample_limit": 10000,
                "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [workload.namespace]}}],
                "relabel_configs": [
                    {
                        "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
                        "regex": re.escape(workload.app_label),
                        "action": "keep",
                    },
                    {
                        "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                        "regex": METRICS_PORT_NAME,
                        "action": "keep",
                    },
                    {
                        "source_labels": ["__meta_kubernetes_pod_container_port_number"],
                        "regex": str(workload.metrics_port),
                        "action": "keep",
                    },
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": NAMESPACE, "action": "replace"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": POD, "action": "replace"},
                ],
                # Drop every series no declaration uses before the agent processes it
                # (a summary keeps its _sum and _count: the agent assembles the summary from all three).
                "metric_relabel_configs": [
                    {"source_labels": ["__name__"], "regex": "|".join(scraped_series_names()), "action": "keep"}
                ],
            }
        ],
    }


def metric_declarations() -> list[dict[str, Any]]:
    """``emf_processor.metric_declaration``: which scraped series become which CloudWatch metrics."""
    return [
        {
            "source_labels": [JOB],
            "label_matcher": _exact(TRITON_SCRAPE_JOB),
            "dimensions": [list(dims) for dims in declaration.dimensions],
            "metric_selectors": [_exact(m.name) for m in declaration.metrics],
        }
        for declaration in DECLARATIONS
    ]


def agent_config(config: PlatformConfig) -> dict[str, Any]:
    """The standalone agent's configuration (``cwagentconfig.json``): Prometheus to EMF, nothing else.

    The shape of AWS's reference manifest (prometheus-eks.yaml): the region, and
    ``logs.metrics_collected.prometheus`` pointing at the scrape configuration.
    """
    return {
        "agent": {"region": config.region},
        "logs": {
            "metrics_collected": {
                "prometheus": {
                    "cluster_name": config.cluster.name,
                    "log_group_name": prometheus_log_group_name(config),
                    "prometheus_config_path": PROMETHEUS_CONFIG_PATH,
                    "emf_processor": {
                        "metric_namespace": config.observability.prometheus_namespace,
                        "metric_unit": {m.name: m.unit for m in TRITON_METRICS},
                        "metric_declaration": metric_declarations(),
                    },
                },
            },
            "force_flush_interval": 5,
        },
    }


# The two documented switches of the add-on's Container Insights.
CONTAINER_INSIGHTS_FEATURES: Final = {"enhanced_container_insights": True, "accelerated_compute_metrics": True}


def addon_agent_config() -> dict[str, Any]:
    """The add-on agent's configuration (``agent.config``): Container Insights only.

    It replaces the add-on's default, so both features are spelled out: enhanced
    observability, and accelerated-compute (NVIDIA GPU) metrics.
    """
    return {"logs": {"metrics_collected": {"kubernetes": dict(CONTAINER_INSIGHTS_FEATURES)}}}


def collector_addon_configuration(config: PlatformConfig) -> dict[str, Any]:
    """``configuration_values`` of the amazon-cloudwatch-observability add-on: Container Insights only.

    Only keys AWS documents for the add-on: ``agent.config`` with
    ``logs.metrics_collected.kubernetes.enhanced_container_insights`` and
    ``accelerated_compute_metrics``, and ``containerLogs.enabled`` (CloudWatch user guide,
    "Install the CloudWatch agent with the Amazon CloudWatch Observability EKS add-on or the
    Helm chart", sections "Configuring the CloudWatch agent", "Opt out of accelerated compute
    metrics" and "Opt out of container log collection").

    No Prometheus scraping here: the chart's ``agent.prometheus``/``targetAllocator`` values are
    documented for neither the chart nor the v6.7.0 add-on (the add-on's documented Prometheus
    scraping starts at v8.0.0), and the chart merges them into every agent it renders. Triton is
    scraped by the standalone agent instead (``cdk_app/prometheus_collector.py``). docs/runbook.md
    says how to read the pinned add-on's schema (``aws eks describe-addon-configuration``).
    """
    del config  # the same for every stage; the signature matches the other generators
    return {"agent": {"config": addon_agent_config()}, "containerLogs": {"enabled": True}}


# --- What the agent does with a scraped sample (for the tests).


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Emitted:
    """One CloudWatch datapoint the agent would send: a metric with one dimension set."""

    name: str
    dimensions: tuple[tuple[str, str], ...]
    value: float

    @property
    def dimension_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.dimensions)


def relabel(rules: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> dict[str, str] | None:
    """Prometheus relabelling (keep, drop, replace): the labels after ``rules``, or None if dropped."""
    result = dict(labels)
    for rule in rules:
        action = rule.get("action", "replace")
        joined = rule.get("separator", ";").join(result.get(name, "") for name in rule.get("source_labels", []))
        match = re.fullmatch(rule.get("regex", "(.*)"), joined)
        if action == "keep" and match is None:
            return None
        if action == "drop" and match is not None:
            return None
        if action == "replace" and match is not None:
            value = match.expand(re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", rule.get("replacement", "$1")))
            if value:
                result[rule["target_label"]] = value
            else:
                result.pop(rule["target_label"], None)
        elif action not in ("keep", "drop", "replace"):
            raise ValueError(f"relabel action {action!r} is not simulated")
    return result


def select_metrics(
    declarations: Iterable[Mapping[str, Any]], samples: Iterable[Sample], extra_labels: Mapping[str, str]
) -> list[Emitted]:
    """The EMF processor: every (sample, dimension set) a declaration selects.

    ``extra_labels`` are what the agent adds itself (``job``, ``ClusterName``) and the
    target labels of the scrape job. A dimension set whose labels a sample lacks is skipped.
    """
    declarations = list(declarations)
    emitted: list[Emitted] = []
    for sample in samples:
        labels = {**sample.labels, **extra_labels}
        for declaration in declarations:
            joined = ";".join(labels.get(name, "") for name in declaration["source_labels"])
            if re.search(declaration["label_matcher"], joined) is None:
                continue
            if not any(re.search(selector, sample.name) for selector in declaration["metric_selectors"]):
                continue
            for dims in declaration["dimensions"]:
                if all(name in labels for name in dims):
                    emitted.append(Emitted(sample.name, tuple((name, labels[name]) for name in dims), sample.value))
    return emitted
