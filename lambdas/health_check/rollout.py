"""Wait, bounded, for a Deployment's rollout to complete, the way ``kubectl rollout status`` judges it.

``deployment_status`` is a port of kubectl's ``DeploymentStatusViewer.Status``
(kubernetes/kubectl, ``pkg/polymorphichelpers/rollout_status.go``), in its order:

1. ``metadata.generation > status.observedGeneration``: the controller has not seen the latest
   spec yet, so nothing in ``status`` (conditions included) describes it: wait.
2. Only then a ``Progressing`` condition with reason ``ProgressDeadlineExceeded`` fails the rollout
   (a stale condition left by the previous failed rollout cannot fail a fix-forward).
3. ``updatedReplicas < spec.replicas``, ``replicas > updatedReplicas`` (old replicas pending
   termination), ``availableReplicas < updatedReplicas``: wait, with kubectl's messages.
4. Otherwise the rollout is complete.

On top of kubectl, two checks that matter behind an NLB with IP targets:

* Broken pods are judged only in the Deployment's newest ReplicaSet (the one whose
  ``deployment.kubernetes.io/revision`` equals the Deployment's), so an old-ReplicaSet pod still in
  back-off during a fix-forward does not fail the fix; and only after *repeated* back-off: a
  container restarted at least ``crash_restarts`` times, or seen in back-off in
  ``backoff_polls`` consecutive polls (a first transient ``ImagePullBackOff`` is waited out).
* With ``require_target_health`` every pod of the newest ReplicaSet that carries the AWS Load
  Balancer Controller's readiness gate (``target-health.elbv2.k8s.aws/<binding>``, injected when the
  namespace has ``elbv2.k8s.aws/pod-readiness-gate-inject: enabled``) must have that condition True:
  the pod is registered and healthy in the NLB's target group, not ``initial`` or ``draining``.
  The webhook injects the gate only into pods created after the NLB's TargetGroupBinding exists, so
  on a cluster's very first deploy the pods may have none: then the rollout is judged without it,
  the report says so (``notes``), and the gate's Triton step, retried through the NLB, is what
  proves a healthy target. Every later rollout's pods carry the gate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lambdas.common.eks_client import KubernetesNotFound, KubernetesUnavailable
from lambdas.health_check.errors import RolloutFailed, RolloutTimedOut
from lambdas.health_check.kube import KubernetesReader, selector_string

# Waiting reasons of a container that is backing off or cannot start.
BROKEN_WAITING_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
    }
)
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
POD_TEMPLATE_HASH = "pod-template-hash"
# The AWS Load Balancer Controller's pod readiness gate (docs: deploy/pod_readiness_gate).
TARGET_HEALTH_PREFIX = "target-health.elbv2.k8s.aws/"
# kubectl's TimedOutReason (k8s.io/kubectl/pkg/util/deployment).
TIMED_OUT_REASON = "ProgressDeadlineExceeded"


@dataclass(frozen=True)
class RolloutPolicy:
    """When a back-off counts as broken, and whether NLB target health is required."""

    crash_restarts: int = 3
    backoff_polls: int = 3
    require_target_health: bool = True


@dataclass(frozen=True)
class RolloutStatus:
    desired: int
    updated: int
    ready: int
    available: int
    total: int
    complete: bool
    message: str
    broken_pods: tuple[str, ...] = ()
    deadline_exceeded: bool = False
    backing_off: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RolloutResult:
    status: RolloutStatus
    elapsed_s: float
    polls: int


@dataclass(frozen=True)
class DeploymentStatus:
    """kubectl's answer: a message, done or not, and the error it returns (progress deadline)."""

    message: str
    done: bool
    error: str | None = None


def deployment_status(deployment: Any) -> DeploymentStatus:
    """kubectl's DeploymentStatusViewer.Status (revision 0), on a kubernetes client V1Deployment."""
    name = deployment.metadata.name
    spec, status = deployment.spec, deployment.status
    generation = int(deployment.metadata.generation or 0)
    observed = int((status.observed_generation if status else None) or 0)
    if generation > observed:
        return DeploymentStatus("Waiting for deployment spec update to be observed...", False)
    updated = int((status.updated_replicas if status else None) or 0)
    total = int((status.replicas if status else None) or 0)
    available = int((status.available_replicas if status else None) or 0)
    progressing = _condition(deployment, "Progressing")
    if progressing is not None and progressing.reason == TIMED_OUT_REASON:
        return DeploymentStatus("", False, f'deployment "{name}" exceeded its progress deadline')
    waiting = f'Waiting for deployment "{name}" rollout to finish:'
    if spec.replicas is not None and updated < int(spec.replicas):
        return DeploymentStatus(f"{waiting} {updated} out of {spec.replicas} new replicas have been updated...", False)
    if total > updated:
        return DeploymentStatus(f"{waiting} {total - updated} old replicas are pending termination...", False)
    if available < updated:
        return DeploymentStatus(f"{waiting} {available} of {updated} updated replicas are available...", False)
    return DeploymentStatus(f'deployment "{name}" successfully rolled out', True)


def _condition(deployment: Any, kind: str) -> Any:
    conditions = (deployment.status.conditions if deployment.status is not None else None) or []
    for condition in conditions:
        if condition.type == kind:
            return condition
    return None


def _annotations(obj: Any) -> dict[str, str]:
    return dict(obj.metadata.annotations or {})


def newest_template_hash(deployment: Any, replica_sets: Sequence[Any]) -> str | None:
    """The ``pod-template-hash`` of the Deployment's newest ReplicaSet: the one owned by the Deployment
    whose revision annotation equals the Deployment's (the controller keeps the two in step);
    None when it cannot be told yet (the controller has not written the revision)."""
    revision = _annotations(deployment).get(REVISION_ANNOTATION)
    if revision is None:
        return None
    uid = deployment.metadata.uid
    for replica_set in replica_sets:
        owners = replica_set.metadata.owner_references or []
        if uid is not None and not any(owner.uid == uid and owner.controller for owner in owners):
            continue
        if _annotations(replica_set).get(REVISION_ANNOTATION) == revision:
            labels = replica_set.metadata.labels or {}
            return labels.get(POD_TEMPLATE_HASH)
    return None


def _live(pods: Sequence[Any]) -> list[Any]:
    return [pod for pod in pods if pod.metadata.deletion_timestamp is None and pod.status is not None]


def newest_pods(pods: Sequence[Any], template_hash: str | None) -> list[Any]:
    """The live pods of the newest ReplicaSet (none when it is not known yet)."""
    if template_hash is None:
        return []
    return [pod for pod in _live(pods) if (pod.metadata.labels or {}).get(POD_TEMPLATE_HASH) == template_hash]


def _backoff_detail(pod_name: str, status: Any) -> tuple[str, str, int] | None:
    """(key, description, restarts) of a container in back-off, or None."""
    state = status.state
    waiting = state.waiting if state is not None else None
    if waiting is None or waiting.reason not in BROKEN_WAITING_REASONS:
        return None
    restarts = int(status.restart_count or 0)
    detail = f"pod {pod_name} container {status.name}: {waiting.reason} ({restarts} restarts"
    terminated = status.last_state.terminated if status.last_state is not None else None
    if terminated is not None:
        detail += f", last exit {terminated.exit_code} {terminated.reason or ''}".rstrip()
    return f"{pod_name}/{status.name}/{waiting.reason}", detail + ")", restarts


@dataclass
class BackoffTracker:
    """Counts, per container and waiting reason, the consecutive polls it was seen backing off."""

    policy: RolloutPolicy = field(default_factory=RolloutPolicy)
    seen: dict[str, int] = field(default_factory=dict)

    def observe(self, pods: Sequence[Any]) -> tuple[list[str], list[str]]:
        """(broken, backing off) lines for these pods; updates the counts."""
        broken: list[str] = []
        backing_off: list[str] = []
        current: dict[str, int] = {}
        for pod in _live(pods):
            statuses = [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]
            for status in statuses:
                found = _backoff_detail(pod.metadata.name, status)
                if found is None:
                    continue
                key, detail, restarts = found
                current[key] = self.seen.get(key, 0) + 1
                repeated = restarts >= self.policy.crash_restarts or current[key] >= self.policy.backoff_polls
                (broken if repeated else backing_off).append(detail)
        self.seen = current
        return broken, backing_off


def target_health(pods: Sequence[Any]) -> tuple[str | None, list[str]]:
    """(why the newest pods are not yet healthy NLB targets or None, notes on pods without the gate)."""
    notes: list[str] = []
    for pod in pods:
        gates = [
            gate.condition_type
            for gate in (pod.spec.readiness_gates or [])
            if gate.condition_type.startswith(TARGET_HEALTH_PREFIX)
        ]
        if not gates:
            notes.append(
                f"pod {pod.metadata.name} has no {TARGET_HEALTH_PREFIX} readiness gate (created before the NLB's "
                "TargetGroupBinding, or the namespace lacks elbv2.k8s.aws/pod-readiness-gate-inject=enabled): "
                "its NLB target health is not verified here"
            )
            continue
        conditions = {c.type: c for c in (pod.status.conditions or [])}
        for gate in gates:
            condition = conditions.get(gate)
            if condition is None or condition.status != "True":
                reason = (condition.reason or condition.message or condition.status) if condition else "not set"
                return f"pod {pod.metadata.name} is not a healthy NLB target yet ({gate}: {reason})", notes
    return None, notes


def rollout_status(
    deployment: Any,
    pods: Sequence[Any],
    replica_sets: Sequence[Any] = (),
    *,
    policy: RolloutPolicy | None = None,
    tracker: BackoffTracker | None = None,
) -> RolloutStatus:
    """Where the rollout stands: kubectl's verdict, then the newest pods' back-off and NLB target health."""
    policy = policy or RolloutPolicy()
    tracker = tracker or BackoffTracker(policy)
    spec, status = deployment.spec, deployment.status
    desired = 1 if spec.replicas is None else int(spec.replicas)
    counts = (
        int((status.updated_replicas if status else None) or 0),
        int((status.ready_replicas if status else None) or 0),
        int((status.available_replicas if status else None) or 0),
        int((status.replicas if status else None) or 0),
    )
    newest = newest_pods(pods, newest_template_hash(deployment, replica_sets))
    broken, backing_off = tracker.observe(newest)

    notes: list[str] = []

    def result(complete: bool, message: str, deadline_exceeded: bool = False) -> RolloutStatus:
        return RolloutStatus(
            desired, *counts, complete, message, tuple(broken), deadline_exceeded, tuple(backing_off), tuple(notes)
        )

    verdict = deployment_status(deployment)
    if verdict.error is not None:
        progressing = _condition(deployment, "Progressing")
        detail = f": {progressing.message}" if progressing is not None and progressing.message else ""
        return result(False, f"{verdict.error}{detail}", deadline_exceeded=True)
    if not verdict.done:
        return result(False, verdict.message)
    if broken:
        return result(False, "rolled out, but pods of the newest ReplicaSet are failing")
    if policy.require_target_health:
        if not newest:
            return result(False, "the newest ReplicaSet's pods are not known yet")
        problem, notes = target_health(newest)
        if problem is not None:
            return result(False, problem)
    return result(True, f"{verdict.message}: {counts[1]}/{desired} replicas ready")


def wait_for_rollout(
    reader: KubernetesReader,
    namespace: str,
    name: str,
    *,
    timeout_s: float,
    poll_s: float,
    policy: RolloutPolicy | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RolloutResult:
    """Poll until the rollout completes; raise RolloutFailed or RolloutTimedOut with the reason.

    A slow or briefly unreachable API (KubernetesUnavailable) and a Deployment not yet
    visible (KubernetesNotFound) are retried until the deadline; auth errors propagate.
    """
    policy = policy or RolloutPolicy()
    tracker = BackoffTracker(policy)
    started = clock()
    deadline = started + timeout_s
    polls = 0
    last = "no answer from the Kubernetes API yet"
    while True:
        polls += 1
        try:
            deployment = reader.read_deployment(namespace, name)
            selector = selector_string(deployment.spec.selector.match_labels)
            replica_sets = reader.list_replica_sets(namespace, selector)
            pods = reader.list_pods(namespace, selector)
        except (KubernetesUnavailable, KubernetesNotFound) as error:
            last = str(error)
        else:
            status = rollout_status(deployment, pods, replica_sets, policy=policy, tracker=tracker)
            elapsed = round(clock() - started, 3)
            if status.complete:
                return RolloutResult(status=status, elapsed_s=elapsed, polls=polls)
            if status.broken_pods:
                raise RolloutFailed(f"deployment {namespace}/{name}: {'; '.join(status.broken_pods)}")
            if status.deadline_exceeded:
                raise RolloutFailed(f"deployment {namespace}/{name}: {status.message}")
            last = status.message
            if status.backing_off:
                last += f" (backing off: {'; '.join(status.backing_off)})"
        remaining = deadline - clock()
        if remaining <= 0:
            raise RolloutTimedOut(
                f"deployment {namespace}/{name} not rolled out after {round(clock() - started, 1)} s "
                f"(limit {timeout_s:g} s): {last}"
            )
        sleep(min(poll_s, remaining))
