"""The one source of truth for names, ports, sizes and versions, per stage.

Frozen dataclasses: constructs and the Kubernetes objects read from here and
nowhere else. ``load_config(stage, overrides)`` returns a stage's validated
configuration; a configuration that cannot work raises ``ConfigError`` with one
line naming the field.
"""

from __future__ import annotations

import ipaddress
import math
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any


class ConfigError(ValueError):
    """A configuration that cannot work; the message names the field."""


# GPUs per instance type, for the GPU families RadStream supports. A type not in
# this table is rejected: a node group of an unknown type could hold no GPU at all.
GPU_INSTANCE_GPUS: dict[str, int] = {
    **{f"g4dn.{size}": 1 for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "g4dn.12xlarge": 4,
    "g4dn.metal": 8,
    **{f"g5.{size}": 1 for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "g5.12xlarge": 4,
    "g5.24xlarge": 4,
    "g5.48xlarge": 8,
    **{f"g6.{size}": 1 for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "g6.12xlarge": 4,
    "g6.24xlarge": 4,
    "g6.48xlarge": 8,
    **{f"g6e.{size}": 1 for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "g6e.12xlarge": 4,
    "g6e.24xlarge": 4,
    "g6e.48xlarge": 8,
    "p4d.24xlarge": 8,
    "p5.48xlarge": 8,
}
# vCPUs per GPU instance type (EC2 instance type specifications), for the same types.
GPU_INSTANCE_VCPUS: dict[str, int] = {
    **{
        f"{family}.{size}": vcpus
        for family in ("g4dn", "g5", "g6", "g6e")
        for size, vcpus in (("xlarge", 4), ("2xlarge", 8), ("4xlarge", 16), ("8xlarge", 32), ("16xlarge", 64))
    },
    **{f"{family}.12xlarge": 48 for family in ("g4dn", "g5", "g6", "g6e")},
    **{f"{family}.24xlarge": 96 for family in ("g5", "g6", "g6e")},
    **{f"{family}.48xlarge": 192 for family in ("g5", "g6", "g6e")},
    "g4dn.metal": 96,
    "p4d.24xlarge": 96,
    "p5.48xlarge": 192,
}
LOG_RETENTION_DAYS = (30, 90, 180, 365, 731, 2192)
GPU_FAMILIES = tuple(sorted({name.split(".")[0] for name in GPU_INSTANCE_GPUS}))

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_DASHBOARD_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_QUANTITY = re.compile(r"^(\d+(\.\d+)?)(m|Ki|Mi|Gi|Ti)?$")
_QUANTITY_FACTORS = {None: Decimal(1), "m": Decimal("0.001"), "Ki": Decimal(1024), "Mi": Decimal(1024**2)}
_QUANTITY_FACTORS |= {"Gi": Decimal(1024**3), "Ti": Decimal(1024**4)}


def quantity_value(quantity: str, field_name: str) -> Decimal:
    """A Kubernetes quantity ("500m", "8Gi", "2") as a number of base units."""
    match = _QUANTITY.match(quantity)
    if match is None:
        raise ConfigError(f"{field_name}={quantity!r} is not a Kubernetes quantity like 500m, 2 or 8Gi")
    return Decimal(match.group(1)) * _QUANTITY_FACTORS[match.group(3)]


def scale_quantity(quantity: str, factor: Decimal) -> str:
    """``quantity`` times ``factor``, as milli-CPU for CPU and Mi for memory."""
    match = _QUANTITY.match(quantity)
    if match is None:
        raise ConfigError(f"{quantity!r} is not a Kubernetes quantity")
    unit = match.group(3)
    if unit in (None, "m"):
        millis = quantity_value(quantity, "cpu") * 1000 * factor
        return f"{int(millis)}m"
    mebibytes = quantity_value(quantity, "memory") / (1024**2) * factor
    return f"{int(mebibytes)}Mi"


# AZ IDs where EKS cannot place a cluster's network interfaces ("View Amazon EKS networking
# requirements for VPC and subnets", EKS user guide). AZ names map to IDs per account, so a
# VPC over "the first two AZs" can land in one of these: the configuration names AZ IDs.
EKS_UNSUPPORTED_AZ_IDS = frozenset({"use1-az3", "usw1-az2", "cac1-az3"})


@dataclass(frozen=True)
class NetworkConfig:
    vpc_cidr: str = "10.42.0.0/16"
    max_azs: int = 2
    # The VPC's subnets by AZ ID (same in every account), one per AZ, max_azs of them; the
    # defaults offer g5 in us-east-1 and EKS supports them (`make preflight` checks both).
    availability_zone_ids: tuple[str, ...] = ("use1-az1", "use1-az2")
    nat_gateways: int = 1
    flow_log_retention_days: int = 365


@dataclass(frozen=True)
class NodeGroupConfig:
    name: str
    instance_types: tuple[str, ...]
    min_size: int
    max_size: int
    desired_size: int
    disk_size_gib: int
    ami_type: str


@dataclass(frozen=True)
class AddonVersions:
    """EKS add-on and Helm chart versions, pinned (verify against
    `aws eks describe-addon-versions --kubernetes-version <v>` when upgrading)."""

    vpc_cni: str = "v1.23.1-eksbuild.1"
    coredns: str = "v1.14.7-eksbuild.11"
    kube_proxy: str = "v1.36.0-eksbuild.25"
    pod_identity_agent: str = "v1.4.0-eksbuild.2"
    metrics_server: str = "v0.9.0-eksbuild.11"
    cloudwatch_observability: str = "v6.7.0-eksbuild.1"
    # The newest in NVIDIA's published chart index (gh-pages index.yaml of NVIDIA/k8s-device-plugin,
    # 2026-08-20); 0.20.1 was in no index. Values used (affinity, nodeSelector, tolerations) are in
    # the chart's values.yaml at v0.20.0.
    nvidia_device_plugin_chart: str = "0.20.0"
    cluster_autoscaler_chart: str = "9.59.0"
    # The chart still defaults to the 1.35 autoscaler; the image must match the cluster's minor.
    cluster_autoscaler_image_tag: str = "v1.36.1"
    load_balancer_controller_chart: str = "3.5.0"
    # The standalone Prometheus collector's image (cdk_app/prometheus_collector.py): the agent tag the
    # amazon-cloudwatch-observability chart 6.4.0 pins (aws-observability/helm-charts,
    # charts/amazon-cloudwatch-observability/values.yaml, agent.image.tag), from public.ecr.aws/cloudwatch-agent.
    cloudwatch_agent_image: str = "public.ecr.aws/cloudwatch-agent/cloudwatch-agent"
    cloudwatch_agent_image_tag: str = "1.300070.0b1586"


@dataclass(frozen=True)
class ClusterConfig:
    name: str = "radstream-cluster"
    kubernetes_version: str = "1.36"
    # Public API endpoint CIDRs; empty means a private-only endpoint.
    public_api_cidrs: tuple[str, ...] = ()
    admin_role_arn: str | None = None
    system_nodes: NodeGroupConfig = NodeGroupConfig(  # noqa: RUF009 - frozen, so sharing is safe
        name="system",
        instance_types=("m6i.large",),
        min_size=2,
        max_size=4,
        desired_size=2,
        disk_size_gib=50,
        ami_type="AL2023_x86_64_STANDARD",
    )
    gpu_nodes: NodeGroupConfig = NodeGroupConfig(  # noqa: RUF009 - frozen, so sharing is safe
        name="gpu",
        instance_types=("g5.xlarge",),
        min_size=2,
        max_size=4,
        desired_size=2,
        # The Triton image is ~15 GB uncompressed; room for two versions during a rollout.
        disk_size_gib=100,
        ami_type="AL2023_x86_64_NVIDIA",
    )
    gpu_taint_key: str = "nvidia.com/gpu"
    gpu_taint_value: str = "true"
    gpu_label_key: str = "k8s.amazonaws.com/accelerator"
    addons: AddonVersions = field(default_factory=AddonVersions)
    # ResolveConflicts of every AWS::EKS::Addon: vpc-cni, kube-proxy and coredns replace the
    # self-managed copies EKS installs with the cluster.
    addon_resolve_conflicts: str = "OVERWRITE"
    # vpc-cni's network policy agent: without it NetworkPolicies are accepted but not enforced.
    enforce_network_policies: bool = True

    @property
    def gpus_per_gpu_node(self) -> int:
        """GPUs on the smallest instance type of the GPU node group."""
        return min(GPU_INSTANCE_GPUS[t] for t in self.gpu_nodes.instance_types)

    @property
    def max_gpus(self) -> int:
        return self.gpu_nodes.max_size * self.gpus_per_gpu_node

    @property
    def vcpus_per_gpu_node(self) -> int:
        """vCPUs of the smallest instance type of the GPU node group."""
        return min(GPU_INSTANCE_VCPUS[t] for t in self.gpu_nodes.instance_types)

    @property
    def gpu_label_value(self) -> str:
        return f"nvidia-{self.gpu_nodes.instance_types[0].split('.')[0]}"


@dataclass(frozen=True)
class RegistryConfig:
    repository_name: str = "radstream-triton"
    keep_last_images: int = 10
    # The function that copies the ~15 GB Triton image from the CDK assets repository into
    # repository_name (cdk-ecr-deployment; its timeout is Lambda's 15 minutes). Lambda gives CPU
    # and network in proportion to memory: the most it allows, not the library's 512 MB.
    image_copy_memory_mb: int = 10240


@dataclass(frozen=True)
class ModelStoreConfig:
    """Where Triton reads the model repository: baked into the image (default) or S3."""

    use_s3: bool = False
    s3_prefix: str = "model_repository"


@dataclass(frozen=True)
class WorkloadConfig:
    namespace: str = "radstream"
    deployment_name: str = "triton-inference-server"
    service_name: str = "triton-inference-service"
    service_account_name: str = "triton-inference-server"
    admin_key_secret_name: str = "triton-admin-key"  # noqa: S105 - a Secret name, not a secret
    app_label: str = "triton-inference-server"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    ready_path: str = "/v2/health/ready"
    live_path: str = "/v2/health/live"
    gpus_per_pod: int = 1
    # Requests from the measured footprint (docs/tuning.md); limits are 1.5x requests.
    cpu_request: str = "2"
    memory_request: str = "8Gi"
    limit_factor: Decimal = Decimal("1.5")
    triton_exit_timeout_seconds: int = 25
    pre_stop_sleep_seconds: int = 5
    termination_grace_period_seconds: int = 45
    startup_probe_period_seconds: int = 5
    # 60 x 5 s: model loading (S3 download, warm-up) may take minutes on a cold node.
    startup_probe_failure_threshold: int = 60
    readiness_period_seconds: int = 5
    liveness_period_seconds: int = 10
    pdb_max_unavailable: int = 1
    run_as_user: int = 10001
    # Rolling update: surge one new pod before removing an old one, so capacity never drops.
    rollout_max_surge: int = 1
    rollout_max_unavailable: int = 0
    # The internal NLB's target health check: a new IP target turns healthy after interval x threshold
    # (the pod's NLB readiness gate waits for it).
    nlb_health_check_interval_seconds: int = 10
    nlb_healthy_threshold: int = 3

    @property
    def nlb_registration_seconds(self) -> int:
        return self.nlb_health_check_interval_seconds * self.nlb_healthy_threshold

    @property
    def in_cluster_address(self) -> str:
        """The address Step Functions' callers use inside the cluster."""
        return f"{self.service_name}.{self.namespace}.svc.cluster.local:{self.http_port}"

    @property
    def cpu_limit(self) -> str:
        return scale_quantity(self.cpu_request, self.limit_factor)

    @property
    def memory_limit(self) -> str:
        return scale_quantity(self.memory_request, self.limit_factor)


@dataclass(frozen=True)
class AutoscalingConfig:
    hpa_name: str = "triton-hpa"
    # Two replicas on two GPU nodes: survives a node loss (99.9%) and absorbs a burst
    # while new capacity starts.
    min_replicas: int = 2
    max_replicas: int = 4
    # Primary signal: average Triton queue time per pipeline request, per pod (microseconds),
    # from the recording rule in cdk_app/scaling_signal.py via prometheus-adapter.
    queue_metric_name: str = "triton_queue_time_per_request_us"
    queue_time_target_us: int = 30_000
    # Secondary signal (the brief's): CPU utilisation of the requests.
    cpu_target_percent: int = 70
    scale_up_stabilization_seconds: int = 0
    scale_up_max_pods_per_period: int = 4
    scale_up_max_percent_per_period: int = 100
    scale_up_period_seconds: int = 15
    # Below the brief's 5 minutes from load end to scale-down, metric lag included
    # (docs/autoscaling.md: 180 s simulated to 331 s, 120 s to 271 s).
    scale_down_stabilization_seconds: int = 120
    scale_down_max_pods_per_period: int = 1
    scale_down_period_seconds: int = 60
    # Low-priority pause pods holding spare GPUs: evicted the moment a Triton pod needs one,
    # then the Cluster Autoscaler replaces the spare in the background.
    overprovisioning_placeholders: int = 1
    overprovisioning_priority: int = -10
    overprovisioning_priority_class: str = "radstream-overprovisioning"
    workload_priority_class: str = "radstream-inference"
    workload_priority: int = 1000
    # Cluster Autoscaler tuning.
    cluster_autoscaler_scan_interval_seconds: int = 10
    cluster_autoscaler_expander: str = "least-waste"
    cluster_autoscaler_scale_down_unneeded_seconds: int = 300
    cluster_autoscaler_scale_down_delay_after_add_seconds: int = 300


@dataclass(frozen=True)
class MonitoringConfig:
    """In-cluster Prometheus (scaling signal) and prometheus-adapter, pinned."""

    namespace: str = "monitoring"
    # The Kubernetes group whose members may read Prometheus through the API server's service proxy
    # (the scale-events hook's access entry carries it; cdk_app/autoscaling.py binds the Role).
    signal_readers_group: str = "radstream:scaling-signal-readers"
    # The newest release tag of prometheus-community/helm-charts that could be confirmed
    # (prometheus-29.27.0, 2026-08); 29.35.0 was in no public source. The values set here exist in
    # that chart's values.yaml.
    prometheus_chart: str = "29.27.0"
    prometheus_adapter_chart: str = "5.3.0"
    # 5 s scrape and evaluation (issue 15): the metrics path is most of the scale-up lag.
    # One Triton pod series set per scrape is cheap; the 1m window keeps 12 samples.
    scrape_interval_seconds: int = 5
    rule_evaluation_interval_seconds: int = 5
    rate_window: str = "1m"
    retention: str = "6h"


@dataclass(frozen=True)
class CapacityTimingConfig:
    """Timings the autoscaling simulation replays (sources in docs/autoscaling.md)."""

    # Triton refresh (2 s) + scrape (5 s) + rule evaluation (5 s), each at its worst. The adapter
    # adds no delay of its own: it queries Prometheus at the HPA's request (prometheus-adapter
    # pkg/custom-provider/provider.go, buildQuery: Query at pmodel.Now()); only its list of
    # series is cached (relisted periodically), which matters for new pods, not for the first
    # scale-up. (The 30 s before issue 15 counted 10 s scrape, 10 s evaluation, ~10 s adapter.)
    metrics_pipeline_delay_seconds: int = 12
    hpa_sync_seconds: int = 15
    # Scheduled -> Ready on a node that already has the image: load + warm-up.
    pod_startup_seconds: int = 20
    cluster_autoscaler_reaction_seconds: int = 15
    # New GPU node: EC2 launch, boot, NVIDIA driver and device plugin (brief: 3-7 min with pull).
    gpu_node_boot_seconds: int = 150
    # Cold pull of the ~15 GB Triton image on a fresh node.
    image_pull_seconds: int = 120

    @property
    def new_node_capacity_seconds(self) -> int:
        """From the load's onset to a pod serving on a node that did not exist: the HPA sees the signal
        (pipeline delay + one sync), the Cluster Autoscaler reacts, the node boots, pulls the image and
        the pod starts (332 s; docs/autoscaling.md's simulated sensitivity row gets its first new pod
        through a new node after 341 s: the retry budget covers both)."""
        return (
            self.metrics_pipeline_delay_seconds
            + self.hpa_sync_seconds
            + self.cluster_autoscaler_reaction_seconds
            + self.gpu_node_boot_seconds
            + self.image_pull_seconds
            + self.pod_startup_seconds
        )


@dataclass(frozen=True)
class RetryConfig:
    """One Step Functions retrier (``IntervalSeconds``, ``BackoffRate``, ``MaxDelaySeconds``,
    ``MaxAttempts``, ``JitterStrategy``). The waits are interval x rate^n, capped at max_delay,
    and with full jitter each is drawn uniformly from [0, that] (the Amazon States Language's
    ``JitterStrategy: FULL``)."""

    interval_seconds: int
    backoff_rate: float
    max_delay_seconds: int
    max_attempts: int
    full_jitter: bool = True

    def nominal_waits(self) -> list[float]:
        return [
            min(self.interval_seconds * self.backoff_rate**n, float(self.max_delay_seconds))
            for n in range(self.max_attempts)
        ]

    def jittered_total_lower_bound(self) -> float:
        """The total wait, full jitter included, that the retries reach with high probability: the
        mean (half the nominal sum) less three standard deviations (each wait uniform on [0, w]:
        variance w^2/12). Without jitter, the nominal sum."""
        waits = self.nominal_waits()
        if not self.full_jitter:
            return sum(waits)
        mean = sum(waits) / 2
        deviation = math.sqrt(sum(w * w for w in waits) / 12)
        return mean - 3 * deviation


# TritonUnavailable: every execution of a burst waits through a scale-up onto a new GPU node
# (capacity_timing.new_node_capacity_seconds, 332 s; 341 s simulated), desynchronised by full jitter.
TRITON_RETRY = RetryConfig(interval_seconds=5, backoff_rate=2.0, max_delay_seconds=60, max_attempts=22)
# StorageUnavailable (S3/KMS throttling, timeouts): the client already retried adaptively; a few more.
STORAGE_RETRY = RetryConfig(interval_seconds=2, backoff_rate=2.0, max_delay_seconds=30, max_attempts=5)
# Sandbox.Timedout / out of memory: a stuck or oversized invocation; twice more, then the Catch.
LAMBDA_CRASH_RETRY = RetryConfig(interval_seconds=5, backoff_rate=2.0, max_delay_seconds=30, max_attempts=2)


# What the hooks can be deployed as (cdk_app/hooks.py maps them to CDK's objects).
LAMBDA_PYTHON_RUNTIMES = ("python3.12",)
LAMBDA_ARCHITECTURES = ("arm64", "x86_64")
LAMBDA_MAX_TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class HooksConfig:
    """The Lambda hooks (health gate and canary, scale events, inference endpoint)
    and the Step Functions state machine that calls the endpoint."""

    metrics_namespace: str = "RadStream"
    # Python 3.12: tritonclient 2.51 needs numpy < 2, whose last line (1.26) stops at 3.12.
    python_runtime: str = "python3.12"
    # Graviton: cheaper per GB-second; the package's wheels are picked for it (cdk_app/lambda_bundling.py).
    lambda_architecture: str = "arm64"
    log_retention_days: int = 365
    # The gate's Lambda (and Trigger) timeout: Lambda's maximum; GateBudget must fit in it (checked at synth).
    health_gate_timeout_seconds: int = 900
    # The gate's and the canary's Triton calls (health and one small inference: milliseconds when healthy).
    gate_triton_timeout_seconds: int = 10
    # After the rollout, the gate retries the Triton checks until this deadline (a target just turned healthy).
    gate_triton_deadline_seconds: int = 90
    gate_triton_retry_seconds: int = 5
    # Calls of one Triton check: live, ready, the four models, the smoke inference (triton/health_check.py).
    gate_triton_calls: int = 7
    # Left for writing the report and the metrics after the last step.
    gate_report_margin_seconds: int = 30
    # A container counts as broken after this many restarts, or this many consecutive polls in back-off.
    gate_crash_restarts: int = 3
    gate_backoff_polls: int = 3
    canary_timeout_seconds: int = 50
    canary_triton_timeout_seconds: int = 5
    # A canary event older than this is dropped: a late Availability datapoint is a wrong one.
    canary_max_event_age_seconds: int = 60
    scale_events_timeout_seconds: int = 50
    # Scale-event dedup state: DynamoDB TTL, at least the API server's Event TTL (1 h) and the look-back.
    scale_events_state_ttl_seconds: int = 7200
    # One deadline per invocation: the S3 read, the one Triton call and the S3 write each have a budget
    # (inference_deadline_seconds), and the Lambda timeout exceeds their sum by a margin, so a slow
    # dependency surfaces as a typed, retried error and not as a Lambda timeout.
    inference_timeout_seconds: int = 120
    inference_margin_seconds: int = 10
    # S3 client: short timeouts, adaptive retries (botocore); a read or a write is two S3 calls.
    s3_connect_timeout_seconds: int = 1
    s3_read_timeout_seconds: int = 3
    s3_max_attempts: int = 3
    # Powertools re-reads the Triton address from SSM after this long (and at once after TritonUnavailable).
    triton_url_cache_seconds: int = 60
    # Component model versions (one metadata call each) cached per container for this long.
    model_versions_cache_seconds: int = 300
    triton_retry: RetryConfig = TRITON_RETRY
    storage_retry: RetryConfig = STORAGE_RETRY
    lambda_crash_retry: RetryConfig = LAMBDA_CRASH_RETRY
    inference_memory_mb: int = 1024
    inference_reserved_concurrency: int = 20
    health_gate_reserved_concurrency: int = 2
    # One canary a minute; a second would only publish a duplicate Availability.
    canary_reserved_concurrency: int = 1
    # One writer of the scale-events state at a time (the versioned write rejects a second anyway).
    scale_events_reserved_concurrency: int = 1
    triton_timeout_seconds: int = 30
    max_image_bytes: int = 32 * 1024 * 1024
    finding_threshold: float = 0.5
    results_prefix: str = "results"
    input_expiry_days: int = 90
    results_noncurrent_expiry_days: int = 30
    state_machine_name: str = "RadStreamInference"

    @property
    def reserved_concurrency_total(self) -> int:
        """What the stage's functions take out of the account's Lambda concurrency."""
        return (
            self.inference_reserved_concurrency
            + self.health_gate_reserved_concurrency
            + self.canary_reserved_concurrency
            + self.scale_events_reserved_concurrency
        )

    def triton_url_parameter(self, stage: str) -> str:
        return f"/radstream/{stage}/triton-url"

    def log_hash_key_secret(self, stage: str) -> str:
        """The stage's key for the keyed hash of study ids in logs (Secrets Manager)."""
        return f"radstream/{stage}/log-hash-key"

    @property
    def s3_phase_budget_seconds(self) -> int:
        """The longest a read (HEAD + GET) or a write (mask + summary) may take: two calls, each up to
        s3_max_attempts x (connect + read timeout) plus botocore's backoff (under 1 s x 2^attempt)."""
        per_call = self.s3_max_attempts * (self.s3_connect_timeout_seconds + self.s3_read_timeout_seconds)
        backoff = sum(1 << attempt for attempt in range(self.s3_max_attempts - 1))
        return 2 * (per_call + backoff)

    @property
    def inference_deadline_seconds(self) -> int:
        """The invocation's deadline: S3 read + Triton + S3 write."""
        return 2 * self.s3_phase_budget_seconds + self.triton_timeout_seconds


@dataclass(frozen=True)
class ObservabilityConfig:
    """CloudWatch: the collector, the dashboard, the alarms and who they notify.

    Every threshold names its source. Metric names and dimensions live in
    ``cdk_app/metric_catalog.py``, not here.
    """

    dashboard_name: str = "radstream-eks-dashboard"
    # Where the CloudWatch agent puts the Prometheus metrics it converts (the agent's default).
    prometheus_namespace: str = "ContainerInsights/Prometheus"
    # Two scrapes per one-minute CloudWatch period: a missed scrape still leaves a datapoint.
    scrape_interval_seconds: int = 30
    scrape_timeout_seconds: int = 10
    log_retention_days: int = 365
    # Who is told. Paging: the composite alarm (e-mail and a paging service's HTTPS endpoint);
    # warnings: every individual alarm. Empty by default: set them per stage.
    paging_emails: tuple[str, ...] = ()
    paging_https_endpoints: tuple[str, ...] = ()
    warning_emails: tuple[str, ...] = ()
    # Base of the runbook links in alarm descriptions and on the dashboard: the repository's
    # docs/runbook.md as a browsable https URL, or the repository-relative path.
    runbook_url: str = "docs/runbook.md"
    # Brief: error rate < 1 %; the issue: over 5 minutes.
    error_rate_percent: float = 1.0
    error_rate_window_seconds: int = 300
    # p99 of the pipeline above 1 s means a pod is past saturation: p99 0.79 s at the saturating
    # concurrency (2), 1.53 s at 4 (docs/measurements/pod_capacity.json); the simulated brief loads
    # stay under 0.3 s (docs/autoscaling.md). 3 of 5 minutes: one slow minute is not an incident.
    latency_p99_slo_ms: int = 1000
    latency_evaluation_minutes: int = 5
    latency_datapoints_to_alarm: int = 3
    # Brief: availability > 99.9 %, measured by the one-minute canary over one hour.
    availability_target_percent: float = 99.9
    availability_window_seconds: int = 3600
    # The issue: HPA at max replicas for 10 minutes while Triton's queue signal is above target.
    hpa_at_max_minutes: int = 10
    # The issue: GPU pods unschedulable for more than 2 minutes.
    gpu_pending_minutes: int = 2
    # Brief: autoscaling response < 2 minutes.
    time_to_scale_seconds: int = 120
    # Brief: pod restarts 0, so any restart is worth a warning.
    container_restarts_allowed: int = 0
    # Ready replicas below autoscaling.min_replicas for this long (a rollout replaces one pod at a time).
    ready_replicas_minutes: int = 3
    # No Triton metric for this long: the collector, the scrape or Triton is gone.
    heartbeat_minutes: int = 5


@dataclass(frozen=True)
class GateBudget:
    """The post-deploy gate's time budget, derived from the workload and capacity timings.

    A ``maxSurge`` rollout of ``max_replicas`` pods (the HPA may have scaled out) replaces them in
    ``waves = ceil(max_replicas / max_surge)``. The new image is pulled once on every GPU node in
    parallel (the prepull DaemonSet); a new GPU node boots only when no placeholder holds a spare GPU
    for the surge. Each wave then takes pod startup, NLB registration (the readiness gate turns True
    after the health check's interval x healthy threshold) and the old pod's termination grace period
    (its GPU is what the next wave runs on).
    """

    waves: int
    per_wave_seconds: int
    first_wave_extra_seconds: int
    rollout_seconds: int
    progress_deadline_seconds: int
    triton_seconds: int
    margin_seconds: int

    @property
    def total_seconds(self) -> int:
        return self.rollout_seconds + self.triton_seconds + self.margin_seconds

    def describe(self) -> str:
        return (
            f"rollout {self.rollout_seconds} s ({self.first_wave_extra_seconds} s + {self.waves} waves x "
            f"{self.per_wave_seconds} s) + Triton {self.triton_seconds} s + margin {self.margin_seconds} s "
            f"= {self.total_seconds} s"
        )


def gate_budget(config: PlatformConfig) -> GateBudget:
    workload, timing, hooks = config.workload, config.capacity_timing, config.hooks
    surge = max(workload.rollout_max_surge, 1)
    waves = -(-config.autoscaling.max_replicas // surge)
    per_wave = (
        timing.pod_startup_seconds + workload.nlb_registration_seconds + workload.termination_grace_period_seconds
    )
    needs_node = config.autoscaling.overprovisioning_placeholders < surge
    extra = timing.image_pull_seconds + (timing.gpu_node_boot_seconds if needs_node else 0)
    # The longest a healthy rollout goes without progress: one wave that also waits for a new node and the pull.
    progress_deadline = timing.gpu_node_boot_seconds + timing.image_pull_seconds + per_wave
    triton = hooks.gate_triton_deadline_seconds + hooks.gate_triton_calls * hooks.gate_triton_timeout_seconds
    return GateBudget(
        waves=waves,
        per_wave_seconds=per_wave,
        first_wave_extra_seconds=extra,
        rollout_seconds=extra + waves * per_wave,
        progress_deadline_seconds=progress_deadline,
        triton_seconds=triton,
        margin_seconds=hooks.gate_report_margin_seconds,
    )


@dataclass(frozen=True)
class PrometheusCollectorConfig:
    """The standalone CloudWatch agent that scrapes Triton (cdk_app/prometheus_collector.py).

    One replica, so every Triton pod is scraped exactly once. It runs in the add-on's
    ``amazon-cloudwatch`` namespace, which Triton's NetworkPolicy already admits on the
    metrics port. Sizes are those of AWS's reference manifest (prometheus-eks.yaml).
    """

    namespace: str = "amazon-cloudwatch"
    name: str = "cwagent-prometheus"
    service_account_name: str = "cwagent-prometheus"
    replicas: int = 1
    cpu_request: str = "200m"
    memory_request: str = "200Mi"
    cpu_limit: str = "1000m"
    memory_limit: str = "1000Mi"
    # The image declares no user; the agent writes only to the emptyDirs mounted for it, so any
    # unprivileged UID works (>= 10000: outside the node's users, checkov CKV_K8S_40).
    run_as_user: int = 10001
    # The agent flushes on SIGTERM; the reference manifest gives it 60 s.
    termination_grace_period_seconds: int = 60
    scratch_size_limit: str = "64Mi"

    def __post_init__(self) -> None:
        # Without a target allocator every replica scrapes every pod: counters would count twice.
        if self.replicas != 1:
            raise ConfigError(f"collector.replicas={self.replicas}: one agent must scrape each Triton pod once")


@dataclass(frozen=True)
class PipelineConfig:
    """The CodePipeline that deploys the stages (``cdk synth -c pipeline=true``)."""

    connection_arn: str | None = None
    repository: str | None = None  # owner/name
    branch: str = "main"
    stages: tuple[str, ...] = ("dev", "prod")
    approval_before: tuple[str, ...] = ("prod",)
    # The post-deploy burst load test (compressed 6x: 50 images in 10 s).
    loadtest_time_scale: int = 6
    loadtest_max_error_rate: float = 0.01
    loadtest_max_p99_ms: int = 2000
    # (stage, account) pairs (``-c stage_accounts=dev=111122223333,prod=444455556666``); a stage not
    # listed deploys into the pipeline's account, in the region of its configuration.
    stage_accounts: tuple[tuple[str, str], ...] = ()
    # CodeBuild sizes (compute types). The synth step runs the whole test suite, the real
    # Triton server included, before `cdk synth`: LARGE (8 vCPUs, 15 GB), not the default SMALL
    # (2 vCPUs, 3 GB). Asset publishing builds and pushes the ~15 GB Triton image: LARGE too.
    synth_compute_type: str = "LARGE"
    asset_publishing_compute_type: str = "LARGE"

    def stage_config(self, stage: str) -> PlatformConfig:
        """The stage's configuration with its account from ``stage_accounts``."""
        return load_config(stage, {"account": dict(self.stage_accounts).get(stage, "")})


# aws_codebuild.ComputeType members (BUILD_GENERAL1_<size> in the template).
CODEBUILD_COMPUTE_TYPES = ("SMALL", "MEDIUM", "LARGE", "X_LARGE", "X2_LARGE")
_CONNECTION_ARN = re.compile(
    r"^arn:aws[a-z-]*:(codestar-connections|codeconnections):[a-z0-9-]+:\d{12}:connection/[\w-]+$"
)
_REPOSITORY = re.compile(r"^[\w.-]+/[\w.-]+$")


def load_pipeline_config(overrides: Mapping[str, str] | None = None) -> PipelineConfig:
    """The pipeline's settings; the source connection is required (one line naming what is missing)."""
    overrides = overrides or {}
    config = PipelineConfig(
        connection_arn=overrides.get("connection_arn") or None,
        repository=overrides.get("repository") or None,
        branch=overrides.get("branch") or PipelineConfig.branch,
        stage_accounts=_stage_accounts(overrides.get("stage_accounts", "")),
    )
    _require(
        config.connection_arn is not None,
        "pipeline.connection_arn is required: pass -c connection_arn=arn:aws:codeconnections:<region>:<account>:"
        "connection/<id>",
    )
    _require(
        _CONNECTION_ARN.match(config.connection_arn or "") is not None,
        f"pipeline.connection_arn={config.connection_arn!r} is not a CodeConnections connection ARN",
    )
    _require(config.repository is not None, "pipeline.repository is required: pass -c repository=owner/name")
    _require(
        _REPOSITORY.match(config.repository or "") is not None,
        f"pipeline.repository={config.repository!r} is not owner/name",
    )
    for name in ("synth_compute_type", "asset_publishing_compute_type"):
        value = getattr(config, name)
        _require(value in CODEBUILD_COMPUTE_TYPES, f"pipeline.{name}={value!r} is not one of {CODEBUILD_COMPUTE_TYPES}")
    check_stages_can_share_accounts(config.stage_config(stage) for stage in config.stages)
    return config


def _stage_accounts(text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        stage, _, account = item.partition("=")
        _require(
            stage in STAGES and re.fullmatch(r"\d{12}", account) is not None,
            f"pipeline.stage_accounts: {item!r} is not <stage>=<12-digit account> (stages: {', '.join(STAGES)})",
        )
        pairs.append((stage, account))
    return tuple(pairs)


@dataclass(frozen=True)
class PlatformConfig:
    stage: str
    region: str = "us-east-1"
    account: str | None = None
    network: NetworkConfig = field(default_factory=NetworkConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    model_store: ModelStoreConfig = field(default_factory=ModelStoreConfig)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    autoscaling: AutoscalingConfig = field(default_factory=AutoscalingConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    capacity_timing: CapacityTimingConfig = field(default_factory=CapacityTimingConfig)
    hooks: HooksConfig = field(default_factory=HooksConfig)
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)
    collector: PrometheusCollectorConfig = field(default_factory=PrometheusCollectorConfig)

    @property
    def stack_name(self) -> str:
        return f"RadStream-{self.stage}"

    @property
    def physical_names(self) -> dict[str, str]:
        """The names that must be unique in an account and region, by what they name."""
        return {
            "CloudFormation stack": self.stack_name,
            "EKS cluster (its node groups and log groups follow it)": self.cluster.name,
            "ECR repository": self.registry.repository_name,
            "state machine": self.hooks.state_machine_name,
            "dashboard": self.observability.dashboard_name,
            "SSM parameter": self.hooks.triton_url_parameter(self.stage),
        }

    @property
    def triton(self) -> WorkloadConfig:
        return self.workload

    @property
    def preprocess_instances(self) -> int:
        """``study_preprocess`` instances per pod: one per vCPU of the GPU node (4 on a g5.xlarge).

        Preprocessing is single-threaded Python and NumPy per instance, and a pod has its
        node (and its one GPU) to itself, so one instance per vCPU lets a pod decode on
        every core while the ONNX models' instances wait on the GPU. With two instances a
        4-vCPU node left half its cores idle and its GPU underfed (issue 15,
        docs/performance.md). ``triton/model_repository/study_preprocess/config.pbtxt``
        must carry the same count (tests/unit/test_model_repository.py checks it).
        """
        return self.cluster.vcpus_per_gpu_node

    def validate(self) -> PlatformConfig:
        _validate(self)
        return self


def _seconds(duration: str) -> int:
    """A Prometheus duration such as "1m" or "30s" in seconds."""
    match = re.fullmatch(r"(\d+)([smh])", duration)
    if match is None:
        raise ConfigError(f"monitoring.rate_window={duration!r} is not a duration like 30s, 1m or 1h")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _validate_cidr(value: str, field_name: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as error:
        raise ConfigError(f"{field_name}: {value!r} is not a valid IPv4 CIDR ({error})") from None
    return network


def _validate_node_group(group: NodeGroupConfig, field_name: str) -> None:
    _require(bool(group.instance_types), f"{field_name}.instance_types must not be empty")
    _require(group.min_size >= 0, f"{field_name}.min_size={group.min_size} must be >= 0")
    _require(
        group.min_size <= group.max_size,
        f"{field_name}.min_size={group.min_size} is above {field_name}.max_size={group.max_size}",
    )
    _require(
        group.min_size <= group.desired_size <= group.max_size,
        f"{field_name}.desired_size={group.desired_size} is outside [{group.min_size}, {group.max_size}]",
    )
    _require(group.disk_size_gib >= 20, f"{field_name}.disk_size_gib={group.disk_size_gib} is below 20")


def _validate(config: PlatformConfig) -> None:
    _require(_NAME.match(config.stage) is not None, f"stage={config.stage!r} must be a DNS label")
    vpc = _validate_cidr(config.network.vpc_cidr, "network.vpc_cidr")
    _require(16 <= vpc.prefixlen <= 20, f"network.vpc_cidr={vpc} must be a /16 to /20")
    _require(
        config.network.flow_log_retention_days in LOG_RETENTION_DAYS,
        f"network.flow_log_retention_days={config.network.flow_log_retention_days} must be one of "
        f"{list(LOG_RETENTION_DAYS)}",
    )
    _require(config.network.max_azs >= 2, f"network.max_azs={config.network.max_azs} must be >= 2")
    az_ids = config.network.availability_zone_ids
    _require(
        len(az_ids) == config.network.max_azs and len(set(az_ids)) == len(az_ids),
        f"network.availability_zone_ids={list(az_ids)} must name {config.network.max_azs} distinct AZ IDs "
        "(network.max_azs)",
    )
    for az_id in az_ids:
        _require(
            re.fullmatch(r"[a-z]{2,5}\d-az\d+", az_id) is not None,
            f"network.availability_zone_ids: {az_id!r} is not an AZ ID like use1-az1",
        )
        _require(
            az_id not in EKS_UNSUPPORTED_AZ_IDS,
            f"network.availability_zone_ids: EKS does not support {az_id} (choose another AZ ID)",
        )

    cluster = config.cluster
    for index, cidr in enumerate(cluster.public_api_cidrs):
        network = _validate_cidr(cidr, f"cluster.public_api_cidrs[{index}]")
        _require(network.prefixlen > 0, f"cluster.public_api_cidrs[{index}]={cidr} would open the API to the internet")
    if config.stage == "prod":
        _require(
            not cluster.public_api_cidrs,
            f"cluster.public_api_cidrs={list(cluster.public_api_cidrs)}: the prod API endpoint is private only",
        )
    if cluster.admin_role_arn is not None:
        _require(
            _ROLE_ARN.match(cluster.admin_role_arn) is not None,
            f"cluster.admin_role_arn={cluster.admin_role_arn!r} is not an IAM role ARN",
        )
    _require(
        cluster.addon_resolve_conflicts in ("OVERWRITE", "PRESERVE", "NONE"),
        f"cluster.addon_resolve_conflicts={cluster.addon_resolve_conflicts!r} must be OVERWRITE, PRESERVE or NONE",
    )
    _validate_node_group(cluster.system_nodes, "cluster.system_nodes")
    _validate_node_group(cluster.gpu_nodes, "cluster.gpu_nodes")
    for instance_type in cluster.gpu_nodes.instance_types:
        _require(
            instance_type in GPU_INSTANCE_GPUS,
            f"cluster.gpu_nodes.instance_types: {instance_type!r} is not a known GPU instance type "
            f"(families: {', '.join(GPU_FAMILIES)})",
        )

    workload = config.workload
    for name in ("namespace", "deployment_name", "service_name", "service_account_name", "admin_key_secret_name"):
        value = getattr(workload, name)
        _require(_NAME.match(value) is not None, f"workload.{name}={value!r} is not a DNS label")
    ports = (workload.http_port, workload.grpc_port, workload.metrics_port)
    _require(len(set(ports)) == 3, f"workload ports {ports} must differ")
    _require(all(1 <= p <= 65535 for p in ports), f"workload ports {ports} must be 1-65535")
    quantity_value(workload.cpu_request, "workload.cpu_request")
    quantity_value(workload.memory_request, "workload.memory_request")
    _require(workload.limit_factor >= 1, f"workload.limit_factor={workload.limit_factor} must be >= 1")
    _require(workload.gpus_per_pod >= 1, f"workload.gpus_per_pod={workload.gpus_per_pod} must be >= 1")
    _require(
        workload.gpus_per_pod <= cluster.gpus_per_gpu_node,
        f"workload.gpus_per_pod={workload.gpus_per_pod} exceeds the {cluster.gpus_per_gpu_node} GPU(s) "
        f"of a {cluster.gpu_nodes.instance_types[0]} node",
    )
    drain_budget = workload.pre_stop_sleep_seconds + workload.triton_exit_timeout_seconds
    _require(
        workload.termination_grace_period_seconds > drain_budget,
        f"workload.termination_grace_period_seconds={workload.termination_grace_period_seconds} must exceed "
        f"pre_stop_sleep_seconds + triton_exit_timeout_seconds = {drain_budget}",
    )
    _require(
        workload.pdb_max_unavailable >= 1,
        f"workload.pdb_max_unavailable={workload.pdb_max_unavailable} would block every node drain",
    )

    scaling = config.autoscaling
    _require(scaling.min_replicas >= 1, f"autoscaling.min_replicas={scaling.min_replicas} must be >= 1")
    _require(
        scaling.min_replicas <= scaling.max_replicas,
        f"autoscaling.min_replicas={scaling.min_replicas} is above autoscaling.max_replicas={scaling.max_replicas}",
    )
    _require(
        1 <= scaling.cpu_target_percent <= 100,
        f"autoscaling.cpu_target_percent={scaling.cpu_target_percent} must be 1-100",
    )
    baseline = (scaling.min_replicas + scaling.overprovisioning_placeholders) * workload.gpus_per_pod
    _require(
        baseline <= cluster.max_gpus,
        f"autoscaling.min_replicas + autoscaling.overprovisioning_placeholders = {baseline} GPUs exceeds the GPU "
        f"node group's maximum of {cluster.max_gpus}: the spare capacity could never exist",
    )
    _require(
        scaling.overprovisioning_priority < 0 < scaling.workload_priority,
        "autoscaling.overprovisioning_priority must be negative and workload_priority positive, so that "
        "placeholders are always preempted first",
    )
    metric_lag = config.capacity_timing.metrics_pipeline_delay_seconds + _seconds(config.monitoring.rate_window)
    _require(
        scaling.scale_down_stabilization_seconds + metric_lag < 300,
        f"autoscaling.scale_down_stabilization_seconds={scaling.scale_down_stabilization_seconds} plus the "
        f"metric lag ({metric_lag} s: pipeline delay and rate window) reaches the brief's 5-minute scale-down target",
    )
    _require(scaling.queue_time_target_us > 0, "autoscaling.queue_time_target_us must be positive")
    hooks = config.hooks
    _validate_gate_budget(config)
    _validate_inference_budget(hooks, config.capacity_timing)
    _require(
        hooks.python_runtime in LAMBDA_PYTHON_RUNTIMES,
        f"hooks.python_runtime={hooks.python_runtime!r} must be one of {', '.join(LAMBDA_PYTHON_RUNTIMES)}",
    )
    _require(
        hooks.lambda_architecture in LAMBDA_ARCHITECTURES,
        f"hooks.lambda_architecture={hooks.lambda_architecture!r} must be one of {', '.join(LAMBDA_ARCHITECTURES)}",
    )
    _require(
        0.0 < hooks.finding_threshold < 1.0, f"hooks.finding_threshold={hooks.finding_threshold} must be in (0, 1)"
    )
    _validate_observability(config.observability)
    _require(
        128 <= config.registry.image_copy_memory_mb <= 10240,
        f"registry.image_copy_memory_mb={config.registry.image_copy_memory_mb} must be 128-10240 (Lambda's range)",
    )
    needed = scaling.max_replicas * workload.gpus_per_pod
    _require(
        needed <= cluster.max_gpus,
        f"autoscaling.max_replicas x workload.gpus_per_pod = {needed} GPUs exceeds the GPU node group's maximum "
        f"of {cluster.max_gpus} (cluster.gpu_nodes.max_size={cluster.gpu_nodes.max_size} x "
        f"{cluster.gpus_per_gpu_node} per {cluster.gpu_nodes.instance_types[0]}): those pods would never schedule",
    )


def _validate_inference_budget(hooks: HooksConfig, timing: CapacityTimingConfig) -> None:
    phase = hooks.s3_phase_budget_seconds
    needed = hooks.inference_deadline_seconds + hooks.inference_margin_seconds
    _require(
        hooks.inference_timeout_seconds > needed,
        f"hooks.inference_timeout_seconds={hooks.inference_timeout_seconds} must exceed S3 read ({phase} s) + "
        f"Triton (hooks.triton_timeout_seconds={hooks.triton_timeout_seconds}) + S3 write ({phase} s) + "
        f"hooks.inference_margin_seconds={hooks.inference_margin_seconds} = {needed} s, so the invocation's "
        "own deadline fires before Lambda's",
    )
    _require(hooks.inference_timeout_seconds <= 900, "hooks.inference_timeout_seconds must stay within Lambda's 900 s")
    for name in ("triton_retry", "storage_retry", "lambda_crash_retry"):
        retry: RetryConfig = getattr(hooks, name)
        _require(
            retry.interval_seconds >= 1 and retry.max_delay_seconds >= 1 and retry.max_attempts >= 0,
            f"hooks.{name}: interval_seconds and max_delay_seconds must be >= 1 s, max_attempts >= 0",
        )
        _require(retry.backoff_rate >= 1.0, f"hooks.{name}.backoff_rate={retry.backoff_rate} must be >= 1")
    capacity = timing.new_node_capacity_seconds
    reached = hooks.triton_retry.jittered_total_lower_bound()
    _require(
        reached >= capacity,
        f"hooks.triton_retry waits {reached:.0f} s in total (full jitter, mean less 3 standard deviations), "
        f"under the {capacity} s a scale-up onto a new GPU node takes (capacity_timing.new_node_capacity_seconds): "
        "executions would fail during a burst instead of waiting for capacity",
    )


def _validate_gate_budget(config: PlatformConfig) -> None:
    hooks, workload = config.hooks, config.workload
    _require(
        workload.rollout_max_surge >= 1 and workload.rollout_max_unavailable == 0,
        f"workload.rollout_max_surge={workload.rollout_max_surge} must be >= 1 and "
        f"workload.rollout_max_unavailable={workload.rollout_max_unavailable} 0: capacity must not drop in a rollout",
    )
    _require(
        hooks.health_gate_timeout_seconds <= LAMBDA_MAX_TIMEOUT_SECONDS,
        f"hooks.health_gate_timeout_seconds={hooks.health_gate_timeout_seconds} exceeds Lambda's "
        f"{LAMBDA_MAX_TIMEOUT_SECONDS} s",
    )
    budget = gate_budget(config)
    _require(
        budget.total_seconds <= hooks.health_gate_timeout_seconds,
        f"hooks.health_gate_timeout_seconds={hooks.health_gate_timeout_seconds} cannot hold the gate's budget: "
        f"{budget.describe()} (autoscaling.max_replicas={config.autoscaling.max_replicas}, "
        f"workload.rollout_max_surge={workload.rollout_max_surge}); raise max_surge or lower the timings",
    )
    _require(
        budget.progress_deadline_seconds < budget.rollout_seconds,
        f"the Deployment's progressDeadlineSeconds={budget.progress_deadline_seconds} must be below the gate's "
        f"rollout budget of {budget.rollout_seconds} s, so a stuck rollout is reported before the gate gives up",
    )
    canary_need = hooks.gate_triton_calls * hooks.canary_triton_timeout_seconds + hooks.gate_report_margin_seconds // 3
    _require(
        canary_need <= hooks.canary_timeout_seconds <= hooks.canary_max_event_age_seconds,
        f"hooks.canary_timeout_seconds={hooks.canary_timeout_seconds} must hold {hooks.gate_triton_calls} Triton calls "
        f"x hooks.canary_triton_timeout_seconds={hooks.canary_triton_timeout_seconds} plus a margin ({canary_need} s) "
        f"and stay within hooks.canary_max_event_age_seconds={hooks.canary_max_event_age_seconds}",
    )


def _is_https_url(value: str) -> bool:
    parsed = urllib.parse.urlsplit(value)
    return parsed.scheme == "https" and bool(parsed.hostname) and not any(c.isspace() for c in value)


def _validate_observability(observability: ObservabilityConfig) -> None:
    name = "observability"
    for index, email in enumerate((*observability.paging_emails, *observability.warning_emails)):
        _require(_EMAIL.match(email) is not None, f"{name}: {email!r} (subscription {index}) is not an e-mail address")
    for index, url in enumerate(observability.paging_https_endpoints):
        _require(_is_https_url(url), f"{name}.paging_https_endpoints[{index}]={url!r} is not an https:// URL")
    runbook = observability.runbook_url
    relative = not urllib.parse.urlsplit(runbook).scheme and not runbook.startswith("/") and " " not in runbook
    _require(
        _is_https_url(runbook) or relative,
        f"{name}.runbook_url={runbook!r} must be an https:// URL or a repository-relative path",
    )
    _require(
        _DASHBOARD_NAME.match(observability.dashboard_name) is not None,
        f"{name}.dashboard_name={observability.dashboard_name!r} may hold only letters, digits, - and _",
    )
    _require(
        observability.log_retention_days in LOG_RETENTION_DAYS,
        f"{name}.log_retention_days={observability.log_retention_days} must be one of {list(LOG_RETENTION_DAYS)}",
    )
    _require(
        10 <= observability.scrape_interval_seconds <= 60
        and 0 < observability.scrape_timeout_seconds <= observability.scrape_interval_seconds,
        f"{name}.scrape_interval_seconds={observability.scrape_interval_seconds} must be 10-60 s and the "
        f"scrape_timeout_seconds={observability.scrape_timeout_seconds} no longer",
    )
    _require(
        0 < observability.error_rate_percent < 100,
        f"{name}.error_rate_percent={observability.error_rate_percent} must be in (0, 100)",
    )
    _require(
        0 < observability.availability_target_percent < 100,
        f"{name}.availability_target_percent={observability.availability_target_percent} must be in (0, 100)",
    )
    _require(
        0 < observability.latency_datapoints_to_alarm <= observability.latency_evaluation_minutes,
        f"{name}.latency_datapoints_to_alarm={observability.latency_datapoints_to_alarm} must be 1 to "
        f"latency_evaluation_minutes={observability.latency_evaluation_minutes}",
    )
    for field_name in ("error_rate_window_seconds", "availability_window_seconds"):
        seconds = getattr(observability, field_name)
        _require(
            seconds % 60 == 0 and 60 <= seconds <= 86400,
            f"{name}.{field_name}={seconds} must be whole minutes, 1 minute to 1 day (a CloudWatch alarm period)",
        )
    for field_name in (
        "latency_p99_slo_ms",
        "hpa_at_max_minutes",
        "gpu_pending_minutes",
        "time_to_scale_seconds",
        "ready_replicas_minutes",
        "heartbeat_minutes",
    ):
        _require(getattr(observability, field_name) > 0, f"{name}.{field_name} must be positive")
    _require(
        observability.container_restarts_allowed >= 0,
        f"{name}.container_restarts_allowed={observability.container_restarts_allowed} must be >= 0",
    )


def _stage(stage: str, **settings: Any) -> PlatformConfig:
    """A stage whose account-wide names all carry the stage: two stages never collide in one
    account and region (the EKS cluster, and so its node groups and log groups, the ECR
    repository, the state machine, the dashboard; SSM paths and alarms already do)."""
    config = PlatformConfig(stage=stage, **settings)
    return replace(
        config,
        cluster=replace(config.cluster, name=f"radstream-{stage}"),
        registry=replace(config.registry, repository_name=f"radstream-triton-{stage}"),
        hooks=replace(config.hooks, state_machine_name=f"RadStreamInference-{stage}"),
        observability=replace(config.observability, dashboard_name=f"radstream-{stage}-eks-dashboard"),
    )


STAGES: dict[str, PlatformConfig] = {
    # dev: public API endpoint limited to the CIDRs given with -c public_api_cidrs=...
    "dev": _stage("dev"),
    # prod: private API endpoint only, NAT per AZ, two replicas minimum for availability.
    "prod": _stage(
        "prod",
        network=NetworkConfig(nat_gateways=2),
        cluster=replace(
            ClusterConfig(),
            gpu_nodes=replace(ClusterConfig().gpu_nodes, min_size=2, max_size=5, desired_size=2),
        ),
        autoscaling=AutoscalingConfig(min_replicas=2, max_replicas=5),
    ),
}


def check_stages_can_share_accounts(configs: Iterable[PlatformConfig]) -> None:
    """Refuses two stages that land in one account and region and share a physical name.

    A stage without an account deploys into the deploying (pipeline's) account.
    """
    seen: dict[tuple[str, str, str], str] = {}
    for config in configs:
        where = (config.account or "<deploying account>", config.region)
        for kind, name in config.physical_names.items():
            other = seen.setdefault((*where, name), config.stage)
            _require(
                other == config.stage,
                f"stages {other!r} and {config.stage!r} both deploy into account {where[0]} in {where[1]} with the "
                f"{kind} name {name!r}: give each stage its own account or its own names",
            )


def load_config(stage: str, overrides: Mapping[str, str] | None = None) -> PlatformConfig:
    """A stage's configuration with command-line overrides applied, validated.

    Overrides (from ``cdk -c key=value``): ``account``, ``region``,
    ``public_api_cidrs`` (comma-separated), ``admin_role_arn``, ``use_s3_models``.
    """
    try:
        config = STAGES[stage]
    except KeyError:
        raise ConfigError(f"stage={stage!r} is unknown; choose one of {', '.join(sorted(STAGES))}") from None
    overrides = overrides or {}
    if overrides.get("account"):
        config = replace(config, account=overrides["account"])
    if overrides.get("region"):
        config = replace(config, region=overrides["region"])
    cluster = config.cluster
    if overrides.get("public_api_cidrs") is not None:
        cidrs = tuple(c.strip() for c in str(overrides["public_api_cidrs"]).split(",") if c.strip())
        cluster = replace(cluster, public_api_cidrs=cidrs)
    if overrides.get("admin_role_arn"):
        cluster = replace(cluster, admin_role_arn=overrides["admin_role_arn"])
    config = replace(config, cluster=cluster)
    if overrides.get("use_s3_models") is not None:
        enabled = str(overrides["use_s3_models"]).lower() in ("1", "true", "yes")
        config = replace(config, model_store=replace(config.model_store, use_s3=enabled))
    return config.validate()
