"""Wait, bounded, for a Deployment's rollout to complete, the way ``kubectl rollout status`` judges it.

Complete means: the controller has observed the latest spec, every desired replica runs the
new template (updated = desired), no old replica is left, and ready = available = desired.
The wait fails at once, without using up its time, when the Deployment reports
ProgressDeadlineExceeded or a pod is crash-looping or cannot start its image.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lambdas.common.eks_client import KubernetesNotFound, KubernetesUnavailable
from lambdas.health_check.errors import RolloutFailed, RolloutTimedOut
from lambdas.health_check.kube import KubernetesReader, selector_string

# Waiting reasons a pod does not recover from by waiting.
BROKEN_WAITING_REASONS = frozenset(
    {"CrashLoopBackOff", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "CreateContainerConfigError"}
)


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RolloutResult:
    status: RolloutStatus
    elapsed_s: float
    polls: int


def _container_problem(pod_name: str, status: Any) -> str | None:
    state = status.state
    waiting = state.waiting if state is not None else None
    if waiting is None or waiting.reason not in BROKEN_WAITING_REASONS:
        return None
    detail = f"pod {pod_name} container {status.name}: {waiting.reason} ({status.restart_count or 0} restarts"
    terminated = status.last_state.terminated if status.last_state is not None else None
    if terminated is not None:
        detail += f", last exit {terminated.exit_code} {terminated.reason or ''}".rstrip()
    return detail + ")"


def broken_pods(pods: Sequence[Any]) -> list[str]:
    """One line per container that is crash-looping or cannot start, for pods not being deleted."""
    problems = []
    for pod in pods:
        if pod.metadata.deletion_timestamp is not None or pod.status is None:
            continue
        statuses = [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]
        for status in statuses:
            problem = _container_problem(pod.metadata.name, status)
            if problem is not None:
                problems.append(problem)
    return problems


def _condition(deployment: Any, kind: str) -> Any:
    conditions = (deployment.status.conditions if deployment.status is not None else None) or []
    for condition in conditions:
        if condition.type == kind:
            return condition
    return None


def rollout_status(deployment: Any, pods: Sequence[Any]) -> RolloutStatus:
    """Where the rollout stands, from the Deployment and its pods (kubernetes client models)."""
    spec, status = deployment.spec, deployment.status
    desired = 1 if spec.replicas is None else int(spec.replicas)
    updated = int(status.updated_replicas or 0) if status else 0
    ready = int(status.ready_replicas or 0) if status else 0
    available = int(status.available_replicas or 0) if status else 0
    total = int(status.replicas or 0) if status else 0
    problems = tuple(broken_pods(pods))

    def result(complete: bool, message: str, deadline_exceeded: bool = False) -> RolloutStatus:
        return RolloutStatus(desired, updated, ready, available, total, complete, message, problems, deadline_exceeded)

    progressing = _condition(deployment, "Progressing")
    if progressing is not None and progressing.reason == "ProgressDeadlineExceeded":
        message = f"progress deadline exceeded: {progressing.message or ''}".strip()
        return result(False, message, deadline_exceeded=True)
    generation = deployment.metadata.generation
    observed = status.observed_generation if status else None
    if generation is not None and (observed is None or observed < generation):
        message = "waiting for the deployment spec update to be observed"
    elif updated < desired:
        message = f"{updated} of {desired} replicas updated"
    elif total > updated:
        message = f"{total - updated} old replicas pending termination"
    elif available < updated or ready < desired:
        message = f"{ready} of {desired} updated replicas ready ({available} available)"
    elif problems:
        message = f"{desired} of {desired} replicas ready, but pods are failing"
    else:
        return result(True, f"{ready}/{desired} replicas ready, rollout complete")
    return result(False, message)


def wait_for_rollout(
    reader: KubernetesReader,
    namespace: str,
    name: str,
    *,
    timeout_s: float,
    poll_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RolloutResult:
    """Poll until the rollout completes; raise RolloutFailed or RolloutTimedOut with the reason.

    A slow or briefly unreachable API (KubernetesUnavailable) and a Deployment not yet
    visible (KubernetesNotFound) are retried until the deadline; auth errors propagate.
    """
    started = clock()
    deadline = started + timeout_s
    polls = 0
    last = "no answer from the Kubernetes API yet"
    while True:
        polls += 1
        try:
            deployment = reader.read_deployment(namespace, name)
            selector = selector_string(deployment.spec.selector.match_labels)
            pods = reader.list_pods(namespace, selector)
        except (KubernetesUnavailable, KubernetesNotFound) as error:
            last = str(error)
        else:
            status = rollout_status(deployment, pods)
            elapsed = round(clock() - started, 3)
            if status.complete:
                return RolloutResult(status=status, elapsed_s=elapsed, polls=polls)
            if status.broken_pods:
                raise RolloutFailed(f"deployment {namespace}/{name}: {'; '.join(status.broken_pods)}")
            if status.deadline_exceeded:
                raise RolloutFailed(f"deployment {namespace}/{name}: {status.message}")
            last = status.message
        remaining = deadline - clock()
        if remaining <= 0:
            raise RolloutTimedOut(
                f"deployment {namespace}/{name} not rolled out after {round(clock() - started, 1)} s "
                f"(limit {timeout_s:g} s): {last}"
            )
        sleep(min(poll_s, remaining))
