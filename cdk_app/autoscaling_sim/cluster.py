"""The cluster under the HPA: GPU nodes, the Triton Deployment, placeholders and the Cluster Autoscaler.

Second by second:

* **Deployment controller**: keeps ``replicas`` Triton pods, deleting the least
  useful first on scale-down (ReplicaSet ranking: unscheduled, then not Ready,
  then the newest).
* **Scheduler**: binds pending pods by priority to a Ready node with a free GPU,
  preferring nodes that hold the image (ImageLocality). When none is free, a
  Triton pod preempts a placeholder of lower priority and binds once it is gone.
* **Kubelet**: a bound pod pulls the image unless its node has it (the prepull
  DaemonSet starts the pull as a node joins), then starts; Triton is Ready
  ``pod_startup_s`` after its container starts. A deleted Triton pod leaves the
  endpoints at once and frees its GPU after the preStop sleep and the drain of
  its accepted requests (at most the termination grace period).
* **Cluster Autoscaler**: a pod unschedulable for ``ca_reaction_s`` (scan
  interval plus decision, config ``cluster_autoscaler_reaction_seconds``) makes
  it launch enough GPU nodes, up to the group's maximum; a node joins
  ``node_boot_s`` later. Pods below ``--expendable-pods-priority-cutoff`` (-10)
  never trigger a scale-up. A node without GPU pods for ``ca_unneeded_s``, and
  ``ca_delay_after_add_s`` after the last scale-up, is removed (not below the
  group's minimum).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from cdk_app.autoscaling_sim.hpa import GO_ZERO_TIME, Pod
from cdk_app.autoscaling_sim.load import STARTUP_CPU_MILLICORES, PodCapacity, PodServer

PodKind = Literal["triton", "placeholder"]
#: cluster-autoscaler's default --expendable-pods-priority-cutoff.
EXPENDABLE_PODS_PRIORITY_CUTOFF = -10
#: Container creation for an image already on the node (placeholders run the tiny pause image).
CONTAINER_CREATE_S = 1.0


@dataclass(frozen=True)
class ClusterParams:
    gpus_per_node: int
    node_min: int
    node_max: int
    gpus_per_pod: int
    cpu_request_millicores: int
    cpu_limit_millicores: int
    node_boot_s: float
    image_pull_s: float
    pod_startup_s: float
    ca_reaction_s: float
    ca_scan_interval_s: float
    ca_unneeded_s: float
    ca_delay_after_add_s: float
    pre_stop_s: float
    termination_grace_s: float
    placeholders: int
    placeholder_priority: int
    workload_priority: int
    #: A DaemonSet pulls the Triton image onto every GPU node as it joins.
    prepull_daemonset: bool
    #: Seconds a preempted placeholder takes to go (terminationGracePeriodSeconds: 0 and pause's SIGTERM exit).
    preemption_s: float = 1.0


@dataclass
class Node:
    name: str
    gpus: int
    launched_at: float
    ready_at: float
    image_at: float | None = None
    removed_at: float | None = None
    empty_since: float | None = None

    def ready(self, now: float) -> bool:
        return self.ready_at <= now and self.removed_at is None


@dataclass
class SimPod:
    name: str
    kind: PodKind
    priority: int
    gpus: int
    created_at: float
    node: str | None = None
    bound_at: float | None = None
    running_at: float | None = None
    ready_at: float | None = None
    deleted_at: float | None = None
    gone_at: float | None = None
    nominated_node: str | None = None
    unschedulable_since: float | None = None
    server: PodServer | None = None

    def is_ready(self, now: float) -> bool:
        return self.ready_at is not None and self.ready_at <= now and self.deleted_at is None

    def is_running(self, now: float) -> bool:
        return self.running_at is not None and self.running_at <= now

    def holds_gpu(self, now: float) -> bool:
        return self.node is not None and (self.gone_at is None or self.gone_at > now)


@dataclass
class Cluster:
    params: ClusterParams
    capacity: PodCapacity
    replicas: int
    nodes: list[Node] = field(default_factory=list)
    pods: list[SimPod] = field(default_factory=list)
    last_scale_up: float = -math.inf
    _serial: int = 0

    @classmethod
    def warm(cls, params: ClusterParams, capacity: PodCapacity, replicas: int, now: float = 0.0) -> Cluster:
        """The steady state before the load: pods Ready on their nodes, placeholders on spare nodes."""
        cluster = cls(params, capacity, replicas)
        gpus_needed = (replicas + params.placeholders) * params.gpus_per_pod
        count = min(params.node_max, max(params.node_min, math.ceil(gpus_needed / params.gpus_per_node)))
        long_ago = now - 3600.0
        for _ in range(count):
            node = cluster._new_node(long_ago, long_ago)
            # Pulled by the prepull DaemonSet, or by the Triton pod that once ran there (min nodes).
            node.image_at = long_ago if params.prepull_daemonset else None
        for _ in range(replicas):
            cluster._create("triton", long_ago)
        for _ in range(params.placeholders):
            cluster._create("placeholder", long_ago)
        cluster._schedule(long_ago)
        for pod in cluster.pods:
            if pod.node is not None:
                pod.running_at = pod.ready_at = long_ago
                node = cluster.node(pod.node)
                if pod.kind == "triton":
                    node.image_at = long_ago
                    pod.server = PodServer(pod.name, capacity, now)
        return cluster

    # -- queries

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def live_nodes(self) -> list[Node]:
        return [node for node in self.nodes if node.removed_at is None]

    def triton_pods(self) -> list[SimPod]:
        return [pod for pod in self.pods if pod.kind == "triton" and pod.gone_at is None]

    def ready_servers(self, now: float) -> list[PodServer]:
        return [pod.server for pod in self.triton_pods() if pod.is_ready(now) and pod.server is not None]

    def free_gpus(self, node: Node, now: float) -> int:
        used = sum(pod.gpus for pod in self.pods if pod.node == node.name and pod.holds_gpu(now))
        reserved = sum(pod.gpus for pod in self.pods if pod.nominated_node == node.name and pod.node is None)
        return node.gpus - used - reserved

    def hpa_pods(self, now: float) -> list[Pod]:
        """The Triton pods as the HPA's pod lister sees them."""
        result = []
        for pod in self.pods:
            if pod.kind != "triton" or (pod.gone_at is not None and pod.gone_at <= now):
                continue
            started = pod.is_running(now)
            ready = pod.is_ready(now)
            result.append(
                Pod(
                    name=pod.name,
                    phase="Running" if started else "Pending",
                    ready=ready if pod.bound_at is not None else None,
                    # The Ready condition turns False when the kubelet starts the pod, True when Ready.
                    ready_transition_time=(pod.ready_at if ready and pod.ready_at is not None else pod.bound_at)
                    or GO_ZERO_TIME,
                    start_time=pod.bound_at,
                    deleting=pod.deleted_at is not None,
                    requests_milli={"cpu": self.params.cpu_request_millicores},
                )
            )
        return result

    def cpu_millicores(self, pod: SimPod, end: float, window: float) -> float:
        """What metrics-server reports for the pod over ``(end - window, end]``."""
        if pod.server is not None and pod.ready_at is not None and pod.ready_at <= end - window:
            used = pod.server.cpu_millicores(end, window)
        else:
            used = STARTUP_CPU_MILLICORES
        return min(used, float(self.params.cpu_limit_millicores))

    def gpus(self, now: float) -> int:
        return sum(node.gpus for node in self.live_nodes() if node.launched_at <= now)

    # -- the step

    def step(self, now: float) -> None:
        self._reconcile_deployment(now)
        self._reconcile_placeholders(now)
        self._schedule(now)
        self._start_containers(now)
        self._cluster_autoscaler(now)

    def _new_node(self, launched_at: float, ready_at: float) -> Node:
        self._serial += 1
        node = Node(f"gpu-node-{self._serial}", self.params.gpus_per_node, launched_at, ready_at)
        if self.params.prepull_daemonset:
            node.image_at = ready_at + self.params.image_pull_s
        self.nodes.append(node)
        return node

    def _create(self, kind: PodKind, now: float) -> SimPod:
        self._serial += 1
        priority = self.params.workload_priority if kind == "triton" else self.params.placeholder_priority
        pod = SimPod(f"{kind}-{self._serial}", kind, priority, self.params.gpus_per_pod, now)
        self.pods.append(pod)
        return pod

    def _delete(self, pod: SimPod, now: float) -> None:
        pod.deleted_at = now
        pod.nominated_node = None
        if pod.node is None:
            pod.gone_at = now
        elif pod.kind == "placeholder":
            pod.gone_at = now + self.params.preemption_s
        else:
            drain = pod.server.drained_at() - now if pod.server is not None else 0.0
            pod.gone_at = now + min(self.params.termination_grace_s, max(self.params.pre_stop_s, drain))

    def _reconcile_deployment(self, now: float) -> None:
        live = [pod for pod in self.triton_pods() if pod.deleted_at is None]
        for _ in range(self.replicas - len(live)):
            self._create("triton", now)
        if len(live) > self.replicas:
            # ReplicaSet deletion ranking: unscheduled < scheduled, not running < running, not ready < ready,
            # then the newest first.
            ranked = sorted(
                live,
                key=lambda p: (p.node is not None, p.is_running(now), p.is_ready(now), -p.created_at),
            )
            for pod in ranked[: len(live) - self.replicas]:
                self._delete(pod, now)

    def _reconcile_placeholders(self, now: float) -> None:
        live = [p for p in self.pods if p.kind == "placeholder" and p.deleted_at is None]
        for _ in range(self.params.placeholders - len(live)):
            self._create("placeholder", now)

    def _schedule(self, now: float) -> None:
        pending = [p for p in self.pods if p.node is None and p.deleted_at is None]
        pending.sort(key=lambda p: (-p.priority, p.created_at))
        for pod in pending:
            if pod.nominated_node is not None:
                node = self.node(pod.nominated_node)
                if node.removed_at is None and self._fits(pod, node, now, nominated=True):
                    self._bind(pod, node, now)
                continue
            candidates = [n for n in self.live_nodes() if n.ready(now) and self._fits(pod, n, now)]
            if candidates:
                # ImageLocality: prefer a node that already has (or is pulling) the image.
                candidates.sort(key=lambda n: (n.image_at is None, n.image_at or 0.0, n.launched_at))
                self._bind(pod, candidates[0], now)
                continue
            if pod.unschedulable_since is None:
                pod.unschedulable_since = now
            if pod.kind == "triton":
                self._preempt_for(pod, now)

    def _fits(self, pod: SimPod, node: Node, now: float, nominated: bool = False) -> bool:
        free = self.free_gpus(node, now) + (pod.gpus if nominated else 0)
        return free >= pod.gpus

    def _preempt_for(self, pod: SimPod, now: float) -> None:
        """DefaultPreemption: evict a lower-priority pod that frees a GPU for ``pod``."""
        victims = [
            p
            for p in self.pods
            if p.node is not None and p.deleted_at is None and p.priority < pod.priority and p.kind == "placeholder"
        ]
        for victim in victims:
            node = self.node(victim.node or "")
            if not node.ready(now):
                continue
            self._delete(victim, now)
            pod.nominated_node = node.name
            return

    def _bind(self, pod: SimPod, node: Node, now: float) -> None:
        pod.node = node.name
        pod.bound_at = now
        pod.nominated_node = None
        pod.unschedulable_since = None
        if pod.kind == "placeholder":
            pod.running_at = pod.ready_at = now + CONTAINER_CREATE_S
            return
        if node.image_at is None:
            node.image_at = now + self.params.image_pull_s
        image_ready = max(now, node.image_at)
        pod.running_at = image_ready + CONTAINER_CREATE_S
        pod.ready_at = pod.running_at + self.params.pod_startup_s

    def _start_containers(self, now: float) -> None:
        for pod in self.pods:
            starting = pod.kind == "triton" and pod.server is None and pod.deleted_at is None
            if starting and pod.ready_at is not None and pod.ready_at <= now:
                pod.server = PodServer(pod.name, self.capacity, pod.ready_at)

    def _cluster_autoscaler(self, now: float) -> None:
        if now % self.params.ca_scan_interval_s != 0:
            return
        params = self.params
        waiting = [
            p
            for p in self.pods
            if p.node is None
            and p.deleted_at is None
            and p.nominated_node is None
            and p.unschedulable_since is not None
            and now - p.unschedulable_since >= params.ca_reaction_s
            and p.priority >= EXPENDABLE_PODS_PRIORITY_CUTOFF
        ]
        live = self.live_nodes()
        if waiting:
            booting_gpus = sum(n.gpus for n in live if not n.ready(now))
            demand = sum(p.gpus for p in waiting) - booting_gpus
            wanted = min(params.node_max - len(live), math.ceil(demand / params.gpus_per_node))
            for _ in range(max(0, wanted)):
                self._new_node(now, now + params.node_boot_s)
                self.last_scale_up = now
        # Scale-down of empty nodes.
        live = self.live_nodes()
        removable = len(live) - params.node_min
        for node in live:
            busy = any(
                p.node == node.name and p.holds_gpu(now) and p.priority >= EXPENDABLE_PODS_PRIORITY_CUTOFF
                for p in self.pods
            )
            if busy or not node.ready(now):
                node.empty_since = None
                continue
            if node.empty_since is None:
                node.empty_since = now
            unneeded = now - node.empty_since >= params.ca_unneeded_s
            if unneeded and now - self.last_scale_up >= params.ca_delay_after_add_s and removable > 0:
                node.removed_at = now
                removable -= 1
                for pod in self.pods:
                    if pod.node == node.name and pod.gone_at is None:
                        pod.gone_at = now
