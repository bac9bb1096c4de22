"""The scenarios: the shipped configuration (read from the rendered objects) against the brief's baseline.

The shipped scenario reads everything from the objects CDK applies
(``cdk_app.k8s_workload.build_workload_objects``), or from the rendered
``k8s_manifests/hpa.yaml``: the HPA as a Kubernetes dict, the Triton
Deployment's requests, limits, GPUs and termination timings, the placeholder
Deployment's replicas and PriorityClass, and whether a DaemonSet holds the
Triton image on every GPU node. Timings come from ``config.capacity_timing``,
the node group from ``config.cluster.gpu_nodes``, the Cluster Autoscaler's
settings from ``config.autoscaling``.

The baseline is the brief's original design: ``triton-hpa`` with 1 to 5
replicas on CPU 70 % and no ``behavior`` (Kubernetes' defaults), a GPU node
group of 1 to 4 nodes, no placeholders and no image pre-pull.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cdk_app.autoscaling_sim.cluster import ClusterParams
from cdk_app.autoscaling_sim.hpa import milli_value
from cdk_app.autoscaling_sim.simulate import Scenario, SimulationParameters
from cdk_app.config import PlatformConfig
from cdk_app.k8s_workload import build_workload_objects

#: Any pinned tag: the simulation only needs to recognise the Triton image in other objects.
SIMULATION_IMAGE = "radstream-triton:autoscaling-simulation"
#: The brief's baseline (docs/brief.md): HPA 1-5 replicas at CPU 70 %, node autoscaling 1 to 4 nodes.
BASELINE_MIN_REPLICAS = 1
BASELINE_MAX_REPLICAS = 5
BASELINE_CPU_TARGET = 70
BASELINE_NODE_MIN = 1
BASELINE_NODE_MAX = 4
#: The targets the guide asks to try.
CPU_TARGETS = (60, 70, 80)
#: A what-if for the scale-down target: the shipped HPA with this scale-down stabilization window.
WHAT_IF_SCALE_DOWN_WINDOW_S = 120


def simulation_parameters(config: PlatformConfig, seed: int = 7) -> SimulationParameters:
    timing = config.capacity_timing
    return SimulationParameters(
        hpa_sync_s=timing.hpa_sync_seconds,
        custom_metrics_delay_s=float(timing.metrics_pipeline_delay_seconds),
        custom_metrics_window_s=_duration_seconds(config.monitoring.rate_window),
        seed=seed,
    )


def _duration_seconds(text: str) -> float:
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    return float(text[:-1]) * units[text[-1]]


def _by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj.get("kind") == kind]


def _containers(pod_spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]


def cluster_params_from_objects(config: PlatformConfig, objects: list[dict[str, Any]]) -> ClusterParams:
    """The cluster model for the objects CDK applies."""
    workload, scaling, timing = config.workload, config.autoscaling, config.capacity_timing
    (triton,) = [d for d in _by_kind(objects, "Deployment") if d["metadata"]["name"] == workload.deployment_name]
    pod_spec = triton["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    resources = container["resources"]
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    priorities = {obj["metadata"]["name"]: int(obj["value"]) for obj in _by_kind(objects, "PriorityClass")}
    placeholders = [
        d
        for d in _by_kind(objects, "Deployment")
        if d["spec"]["template"]["spec"].get("priorityClassName") == scaling.overprovisioning_priority_class
    ]
    placeholder_count = sum(int(d["spec"].get("replicas", 1)) for d in placeholders)
    prepull = any(
        c.get("image") == container["image"]
        for ds in _by_kind(objects, "DaemonSet")
        for c in _containers(ds["spec"]["template"]["spec"])
    )
    return ClusterParams(
        gpus_per_node=config.cluster.gpus_per_gpu_node,
        node_min=config.cluster.gpu_nodes.min_size,
        node_max=config.cluster.gpu_nodes.max_size,
        gpus_per_pod=int(resources["limits"]["nvidia.com/gpu"]),
        cpu_request_millicores=milli_value(resources["requests"]["cpu"]),
        cpu_limit_millicores=milli_value(resources["limits"]["cpu"]),
        node_boot_s=float(timing.gpu_node_boot_seconds),
        image_pull_s=float(timing.image_pull_seconds),
        pod_startup_s=float(timing.pod_startup_seconds),
        ca_reaction_s=float(timing.cluster_autoscaler_reaction_seconds),
        ca_scan_interval_s=float(scaling.cluster_autoscaler_scan_interval_seconds),
        ca_unneeded_s=float(scaling.cluster_autoscaler_scale_down_unneeded_seconds),
        ca_delay_after_add_s=float(scaling.cluster_autoscaler_scale_down_delay_after_add_seconds),
        pre_stop_s=float(pre_stop[-1]) if pre_stop and pre_stop[-1].isdigit() else 0.0,
        termination_grace_s=float(pod_spec.get("terminationGracePeriodSeconds", 30)),
        placeholders=placeholder_count,
        placeholder_priority=priorities.get(scaling.overprovisioning_priority_class, scaling.overprovisioning_priority),
        workload_priority=priorities.get(pod_spec.get("priorityClassName", ""), 0),
        prepull_daemonset=prepull,
    )


def load_hpa_manifest(path: Path) -> dict[str, Any]:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    (hpa,) = [doc for doc in documents if doc.get("kind") == "HorizontalPodAutoscaler"]
    return dict(hpa)


def shipped(config: PlatformConfig, hpa: Mapping[str, Any] | None = None) -> Scenario:
    """The configuration as shipped: the HPA dict (given, or built) and the objects around it."""
    objects = build_workload_objects(config, SIMULATION_IMAGE)
    if hpa is None:
        (hpa,) = _by_kind(objects, "HorizontalPodAutoscaler")
    return Scenario("shipped", f"shipped ({describe_hpa(hpa)})", hpa, cluster_params_from_objects(config, objects))


def with_cpu_target(hpa: Mapping[str, Any], target: int) -> dict[str, Any]:
    """A copy of ``hpa`` whose CPU Utilization target is ``target`` percent."""
    changed = copy.deepcopy(dict(hpa))
    for metric in changed["spec"]["metrics"]:
        if metric.get("type") == "Resource" and metric["resource"]["name"] == "cpu":
            metric["resource"]["target"] = {"type": "Utilization", "averageUtilization": target}
    return changed


def with_scale_down_window(hpa: Mapping[str, Any], seconds: int) -> dict[str, Any]:
    """A copy of ``hpa`` whose scale-down stabilization window is ``seconds``."""
    changed = copy.deepcopy(dict(hpa))
    behavior = changed["spec"].setdefault("behavior", {})
    behavior.setdefault("scaleDown", {})["stabilizationWindowSeconds"] = seconds
    return changed


def baseline_hpa(cpu_target: int = BASELINE_CPU_TARGET) -> dict[str, Any]:
    """The brief's ``triton-hpa``: CPU only, 1 to 5 replicas, no behavior."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "triton-hpa", "namespace": "radstream"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "triton-inference-server"},
            "minReplicas": BASELINE_MIN_REPLICAS,
            "maxReplicas": BASELINE_MAX_REPLICAS,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu_target}},
                }
            ],
        },
    }


def baseline(config: PlatformConfig, cpu_target: int = BASELINE_CPU_TARGET) -> Scenario:
    shipped_cluster = shipped(config).cluster
    cluster = ClusterParams(
        **{
            **shipped_cluster.__dict__,
            "node_min": BASELINE_NODE_MIN,
            "node_max": BASELINE_NODE_MAX,
            "placeholders": 0,
            "prepull_daemonset": False,
        }
    )
    name = "baseline" if cpu_target == BASELINE_CPU_TARGET else f"baseline-cpu{cpu_target}"
    hpa = baseline_hpa(cpu_target)
    return Scenario(name, f"brief baseline ({describe_hpa(hpa)})", hpa, cluster)


def describe_hpa(hpa: Mapping[str, Any]) -> str:
    spec = hpa.get("spec", hpa)
    parts = []
    for metric in spec.get("metrics", []):
        if metric.get("type") == "Resource":
            target = metric["resource"]["target"]
            value = target.get("averageUtilization", target.get("averageValue"))
            parts.append(f"{metric['resource']['name']} {value}{'%' if 'averageUtilization' in target else ''}")
        elif metric.get("type") == "Pods":
            parts.append(f"queue {metric['pods']['target']['averageValue']} us")
    behavior = "behavior" if spec.get("behavior") else "default behavior"
    return f"{' + '.join(parts)}, min {spec.get('minReplicas', 1)}, max {spec['maxReplicas']}, {behavior}"


def all_scenarios(config: PlatformConfig, hpa: Mapping[str, Any] | None = None) -> list[Scenario]:
    """Shipped and baseline first, then each at the CPU targets the guide asks to try, then the what-if."""
    ship = shipped(config, hpa)
    scenarios = [ship, baseline(config)]
    for target in CPU_TARGETS:
        if target != BASELINE_CPU_TARGET:
            scenarios.append(baseline(config, target))
    cpu_bound = baseline(config)
    scenarios.append(
        dataclasses.replace(
            cpu_bound,
            name="baseline-cpubound",
            title="sensitivity: brief baseline, pod CPU-bound (100 % of request when saturated)",
            cpu_at_saturation_percent=100.0,
        )
    )
    for target in CPU_TARGETS:
        variant = with_cpu_target(ship.hpa, target)
        if variant != ship.hpa:
            scenarios.append(Scenario(f"shipped-cpu{target}", f"shipped, CPU {target}%", variant, ship.cluster))
    window = WHAT_IF_SCALE_DOWN_WINDOW_S
    what_if = with_scale_down_window(ship.hpa, window)
    if what_if != ship.hpa:
        title = f"what-if: shipped, scale-down window {window} s"
        scenarios.append(Scenario(f"shipped-down{window}", title, what_if, ship.cluster))
    return scenarios
