"""Scale-event metrics from the HPA, the Deployment, its pods and the HPA's events: plain logic.

Counting once (no double counting across invocations): the counters (scale-up and scale-down
events, container restarts) and the once-per-thing values (pod startup time, time-to-scale)
are derived against ``ScaleState``, what earlier runs already counted:

* an HPA ``SuccessfulRescale`` event counts for the increase of its ``count`` over the count
  already recorded for its UID; Kubernetes keeps folding a repeated identical rescale into the
  same Event object, so UID + count identifies each occurrence;
* a pod's restarts count for the increase of its restart total over the recorded one;
* a pod's startup time is published once per pod UID;
* only what happened within the look-back window is counted or remembered, so the state
  stays small and an object that falls out of the window cannot be counted again.

A run without saved state (first run, or a state this version cannot read) records a
baseline and counts nothing: the cost is one minute without counters, never a double count.

Gauges (replicas, pending GPU pods, crash-looping pods) are read fresh every run.
A pod that vanishes between the list and its confirming read (404) is skipped: nothing is
recorded for it, so nothing is counted twice if it were to be listed again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lambdas.common import eks_client
from lambdas.scale_events.kube import RESCALE_REASON, ScaleReader
from lambdas.scale_events.state import OpenScaleUp, PodMemory, ScaleState

GPU_RESOURCE = "nvidia.com/gpu"
_RESCALE = re.compile(r"New size: (\d+); reason: (.*)", re.DOTALL)


@dataclass
class ScaleObservation:
    """What one run measured; the handler publishes it as metrics."""

    current_replicas: int | None = None
    desired_replicas: int | None = None
    ready_replicas: int | None = None
    scale_ups: int = 0
    scale_downs: int = 0
    time_to_scale_s: list[float] = field(default_factory=list)
    pod_startup_s: list[float] = field(default_factory=list)
    pod_scheduled_to_ready_s: list[float] = field(default_factory=list)
    pending_gpu_pods: int = 0
    unschedulable_gpu_pods: int = 0
    crash_looping_pods: int = 0
    container_restarts: int = 0
    baseline: bool = False
    notes: list[str] = field(default_factory=list)


def epoch(moment: datetime) -> float:
    return moment.timestamp()


def _duration(start: float, end: float) -> float:
    """Seconds from ``start`` to ``end``; never negative (Kubernetes times have second precision)."""
    return round(max(0.0, end - start), 3)


def rescale_direction(message: str | None) -> tuple[int, str] | None:
    """``(new size, "up" | "down")`` from the HPA's ``New size: N; reason: R`` message.

    The reasons are the HPA controller's (pkg/controller/podautoscaler/horizontal.go):
    "<metric> above target" when it raises the replicas, "All metrics below target" when it
    lowers them, and the min/max clamps.
    """
    match = _RESCALE.match(message or "")
    if match is None:
        return None
    size, reason = int(match.group(1)), match.group(2)
    if "above target" in reason or "below Spec.MinReplicas" in reason or "must be greater than 0" in reason:
        return size, "up"
    if "below target" in reason or "above Spec.MaxReplicas" in reason:
        return size, "down"
    return None


def event_time(event: Any) -> datetime | None:
    """When the event last occurred (core/v1 lastTimestamp, else eventTime or the series)."""
    series = getattr(event, "series", None)
    candidates = (
        event.last_timestamp,
        getattr(series, "last_observed_time", None),
        event.event_time,
        event.first_timestamp,
        event.metadata.creation_timestamp,
    )
    return next((moment for moment in candidates if moment is not None), None)


def event_count(event: Any) -> int:
    series = getattr(event, "series", None)
    return int(event.count or getattr(series, "count", None) or 1)


def _condition_time(pod: Any, kind: str) -> datetime | None:
    for condition in (pod.status.conditions if pod.status is not None else None) or []:
        if condition.type == kind and condition.status == "True":
            return condition.last_transition_time  # type: ignore[no-any-return]
    return None


def pod_ready_time(pod: Any) -> datetime | None:
    return _condition_time(pod, "Ready")


def _containers(pod: Any) -> list[Any]:
    return [*(pod.spec.init_containers or []), *(pod.spec.containers or [])]


def _statuses(pod: Any) -> list[Any]:
    if pod.status is None:
        return []
    return [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]


def requests_gpu(pod: Any) -> bool:
    for container in _containers(pod):
        resources = container.resources
        for amounts in (resources.requests, resources.limits) if resources is not None else ():
            if amounts and str(amounts.get(GPU_RESOURCE, "0")) not in ("0", ""):
                return True
    return False


def is_unschedulable(pod: Any) -> bool:
    for condition in (pod.status.conditions if pod.status is not None else None) or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return True
    return False


def is_crash_looping(pod: Any) -> bool:
    return any(
        s.state is not None and s.state.waiting is not None and s.state.waiting.reason == "CrashLoopBackOff"
        for s in _statuses(pod)
    )


def restart_total(pod: Any) -> int:
    return sum(int(s.restart_count or 0) for s in _statuses(pod))


def _label_selector(deployment: Any) -> str:
    labels = deployment.spec.selector.match_labels or {}
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


@dataclass
class _Run:
    reader: ScaleReader
    namespace: str
    previous: ScaleState
    baseline: bool
    window_start: float
    now: float
    time_left: Callable[[], float] | None
    call_budget_s: float
    observation: ScaleObservation = field(default_factory=ScaleObservation)
    state: ScaleState = field(default_factory=ScaleState)
    scale_down_times: list[float] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.observation.notes.append(text)


def _read_replicas(run: _Run, hpa_name: str, deployment_name: str) -> Any:
    observation = run.observation
    try:
        hpa = run.reader.read_hpa(run.namespace, hpa_name)
    except eks_client.KubernetesNotFound:
        run.note(f"hpa {run.namespace}/{hpa_name} not found")
    else:
        if hpa.status is not None:
            observation.current_replicas = int(hpa.status.current_replicas or 0)
            observation.desired_replicas = int(hpa.status.desired_replicas or 0)
    try:
        deployment = run.reader.read_deployment(run.namespace, deployment_name)
    except eks_client.KubernetesNotFound:
        run.note(f"deployment {run.namespace}/{deployment_name} not found")
        return None
    observation.ready_replicas = int(deployment.status.ready_replicas or 0) if deployment.status else 0
    return deployment


def _count_events(run: _Run, events: Iterable[Any], hpa_name: str) -> list[OpenScaleUp]:
    opened: list[OpenScaleUp] = []
    timed = []
    for event in events:
        moment = event_time(event)
        involved = event.involved_object
        if event.reason != RESCALE_REASON or involved is None or involved.name != hpa_name or moment is None:
            continue
        if epoch(moment) >= run.window_start:
            timed.append((epoch(moment), event))
    for at, event in sorted(timed, key=lambda pair: pair[0]):
        uid, count = str(event.metadata.uid), event_count(event)
        counted = run.previous.events.get(uid, (0, 0.0))[0]
        run.state.events[uid] = (max(count, counted), at)
        new = count - counted
        if new <= 0 or run.baseline:
            continue
        parsed = rescale_direction(event.message)
        if parsed is None:
            run.note(f"unclassified rescale event {uid}: {event.message!r}")
            continue
        size, direction = parsed
        if direction == "up":
            run.observation.scale_ups += new
            opened.append(OpenScaleUp(key=f"{uid}:{count}", at=at, target=size))
        else:
            run.observation.scale_downs += new
            run.scale_down_times.append(at)
    # Events already counted that the list no longer shows stay remembered for the window.
    for uid, (count, at) in run.previous.events.items():
        if uid not in run.state.events and at >= run.window_start:
            run.state.events[uid] = (count, at)
    return opened


def _confirm(run: _Run, pod: Any) -> Any | None:
    """A consistent re-read of ``pod`` before recording a once-only fact; None if it vanished."""
    name, uid = pod.metadata.name, pod.metadata.uid
    if run.time_left is not None and run.time_left() < 2 * run.call_budget_s:
        run.note(f"pod {name}: deferred to the next run (time budget)")
        return None
    try:
        fresh = run.reader.read_pod(run.namespace, name)
    except eks_client.KubernetesNotFound:
        run.note(f"pod {name} vanished before it could be confirmed")
        return None
    except eks_client.KubernetesUnavailable as error:
        run.note(f"pod {name}: deferred to the next run ({error})")
        return None
    if fresh.metadata.uid != uid or fresh.metadata.deletion_timestamp is not None:
        run.note(f"pod {name} was replaced or is terminating")
        return None
    return fresh


def _pod_facts(run: _Run, pod: Any) -> None:
    """Restarts and startup time of one pod, counted once, recorded in the new state."""
    uid = str(pod.metadata.uid)
    memory = run.previous.pods.get(uid)
    created = epoch(pod.metadata.creation_timestamp)
    restarts, ready_at = restart_total(pod), pod_ready_time(pod)
    if memory is not None:
        counted = memory.restarts
    else:  # first sight: restarts of a pod older than the window are history, not news
        counted = 0 if created >= run.window_start and not run.baseline else restarts
    reported = memory.startup_reported if memory is not None else False
    startup_due = not reported and ready_at is not None and epoch(ready_at) >= run.window_start and not run.baseline
    if restarts > counted or startup_due:
        fresh = _confirm(run, pod)
        if fresh is None:
            if memory is not None:
                run.state.pods[uid] = memory  # unchanged: counted again by a later run, not lost
            return
        restarts, ready_at = restart_total(fresh), pod_ready_time(fresh)
        run.observation.container_restarts += max(0, restarts - counted)
        if startup_due and ready_at is not None:
            run.observation.pod_startup_s.append(_duration(created, epoch(ready_at)))
            scheduled_at = _condition_time(fresh, "PodScheduled")
            if scheduled_at is not None:
                run.observation.pod_scheduled_to_ready_s.append(_duration(epoch(scheduled_at), epoch(ready_at)))
            reported = True
    if ready_at is not None:
        reported = True  # ready before the window (or in a baseline run): nothing to publish
    run.state.pods[uid] = PodMemory(restarts=max(restarts, counted), startup_reported=reported, seen_at=run.now)


def _pods(run: _Run, pods: list[Any]) -> list[float]:
    """Gauges and once-only pod facts; returns the Ready times of the live pods."""
    observation = run.observation
    ready_times = []
    for pod in pods:
        if pod.metadata.deletion_timestamp is not None:
            continue
        if pod.status is not None and pod.status.phase == "Pending" and requests_gpu(pod):
            observation.pending_gpu_pods += 1
            observation.unschedulable_gpu_pods += int(is_unschedulable(pod))
        observation.crash_looping_pods += int(is_crash_looping(pod))
        ready_at = pod_ready_time(pod)
        if ready_at is not None:
            ready_times.append(epoch(ready_at))
        _pod_facts(run, pod)
    listed = {str(pod.metadata.uid) for pod in pods}
    for uid, memory in run.previous.pods.items():
        # A pod missing from one (cached) list is remembered for the window, then forgotten.
        if uid not in listed and uid not in run.state.pods and memory.seen_at >= run.window_start:
            run.state.pods[uid] = memory
    return sorted(ready_times)


def _time_to_scale(run: _Run, scale_ups: list[OpenScaleUp], ready_times: list[float]) -> None:
    """Publish each scale-up once enough replicas are Ready; keep it open until then."""
    for scale_up in sorted(scale_ups, key=lambda s: s.at):
        if scale_up.at < run.window_start:
            run.note(f"scale-up to {scale_up.target} at {scale_up.at:.0f} not served within the look-back window")
            continue
        if any(down > scale_up.at for down in run.scale_down_times):
            run.note(f"scale-up to {scale_up.target} superseded by a scale-down")
            continue
        if len(ready_times) >= scale_up.target:
            served_at = ready_times[scale_up.target - 1]
            run.observation.time_to_scale_s.append(_duration(scale_up.at, served_at))
        else:
            run.state.scale_ups.append(scale_up)


def collect(
    reader: ScaleReader,
    *,
    namespace: str,
    deployment_name: str,
    hpa_name: str,
    previous: ScaleState | None,
    now: datetime,
    lookback_s: float,
    time_left: Callable[[], float] | None = None,
    call_budget_s: float = 5.0,
) -> tuple[ScaleObservation, ScaleState]:
    """One run: read the cluster, measure against ``previous``; return what to publish and the new state.

    Raises eks_client's KubernetesUnavailable (slow or unreachable API) or KubernetesAuthError
    when a list/read the whole run needs fails: then nothing is published or saved.
    """
    now_s = epoch(now)
    run = _Run(
        reader=reader,
        namespace=namespace,
        previous=previous or ScaleState(),
        baseline=previous is None,
        window_start=now_s - lookback_s,
        now=now_s,
        time_left=time_left,
        call_budget_s=call_budget_s,
    )
    run.state.updated_at = now_s
    run.observation.baseline = run.baseline
    deployment = _read_replicas(run, hpa_name, deployment_name)
    pods = reader.list_pods(namespace, _label_selector(deployment)) if deployment is not None else []
    opened = _count_events(run, reader.list_hpa_events(namespace, hpa_name), hpa_name)
    ready_times = _pods(run, pods)
    _time_to_scale(run, [*run.previous.scale_ups, *opened], ready_times)
    return run.observation, run.state
