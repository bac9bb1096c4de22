"""Scale-event metrics from the HPA, the Deployment, its pods, the scaling signal and the HPA's events: plain logic.

Counting each scale decision once. The authority is the HPA's own status, not its Events:

* a decision is a new ``status.lastScaleTime``; the controller writes it once per rescale, together
  with ``desiredReplicas`` (the new size). Up or down is the new ``desiredReplicas`` against the one
  the last run saw, cross-checked with the Deployment's ``spec.replicas`` (what the HPA wrote
  through the scale subresource);
* Events are reasons only. client-go's recorder (tools/record/events_cache.go) folds an identical
  event into the same object with ``count`` + 1 for as long as it is cached, re-creates it after
  the API server's Event TTL (1 h) with the count it still carries, rewrites the 11th similar event
  in 10 minutes as ``(combined from similar events): <message>``, and its spam filter drops events
  outright (token bucket per object). None of that changes what is counted here; an Event whose
  time matches the decision only names the reason (and the direction when the size did not
  change, e.g. up and back down between two runs). ``events.k8s.io/v1`` events (``note``,
  ``series``) are read the same way.

Time to scale, per scale-up: from the first rule evaluation at which the scaling signal crossed
its target (Prometheus, read through the API server's service proxy: the evaluations are 5 s
apart, CloudWatch's copy is 60 s) to the moment new capacity serves: the first added pod (the
serving pod beyond the replicas before the decision) Ready with every readiness gate True (the
AWS Load Balancer Controller's ``target-health.elbv2.k8s.aws/<binding>`` condition: its NLB
target is healthy). Its parts, which add up to it, are that pod's: signal-to-decision,
decision-to-scheduled, scheduled-to-Ready (containers ready), Ready-to-serving (NLB healthy).
``TimeToFullScaleSeconds`` runs to the ``target``-th pod serving (a node burst: the pod that
waited for a new node). A scale-up with no added pod serving by its deadline, or overtaken by a
scale-down first, publishes ``UnservedScaleUps`` once; a negative interval is an ordering
(clock) error: logged, counted in ``OrderingErrors``, never clamped to 0.

Restarts and pod startup times are counted once against the saved state, as before. A run
without saved state records a baseline and counts nothing.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from lambdas.common import eks_client
from lambdas.scale_events.kube import RESCALE_REASON, ScaleReader, SignalReader
from lambdas.scale_events.state import OpenScaleUp, PodMemory, ScaleState

GPU_RESOURCE = "nvidia.com/gpu"
# The HPA's message (horizontal.go: "New size: %d; reason: %s"), possibly behind the aggregator's prefix.
_RESCALE = re.compile(r"(?:\(combined from similar events\): )?New size: (\d+); reason: (.*)", re.DOTALL)
# Readiness gates the AWS Load Balancer Controller sets (pod readiness gate injection).
TARGET_HEALTH_PREFIX = "target-health.elbv2.k8s.aws/"
# Kubernetes times have second precision: a decision and its Event may be a second or two apart.
EVENT_MATCH_S = 2.0


@dataclass
class ScaleObservation:
    """What one run measured; the handler publishes it as metrics."""

    current_replicas: int | None = None
    desired_replicas: int | None = None
    ready_replicas: int | None = None
    scale_ups: int = 0
    scale_downs: int = 0
    unserved_scale_ups: int = 0
    ordering_errors: int = 0
    signal_unavailable: int = 0  # scale-ups timed from the decision: the signal could not be read
    time_to_scale_s: list[float] = field(default_factory=list)
    time_to_full_scale_s: list[float] = field(default_factory=list)
    signal_to_decision_s: list[float] = field(default_factory=list)
    decision_to_scheduled_s: list[float] = field(default_factory=list)
    scheduled_to_ready_s: list[float] = field(default_factory=list)
    ready_to_serving_s: list[float] = field(default_factory=list)
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


def rescale_direction(message: str | None) -> tuple[int, str] | None:
    """``(new size, "up" | "down")`` from the HPA's ``New size: N; reason: R`` message.

    The reasons are the HPA controller's (pkg/controller/podautoscaler/horizontal.go):
    "<metric> above target" when it raises the replicas, "All metrics below target" when it
    lowers them, and the min/max clamps. The aggregator's "(combined from similar events): "
    prefix is accepted.
    """
    match = _RESCALE.search(message or "")
    if match is None:
        return None
    size, reason = int(match.group(1)), match.group(2)
    if "above target" in reason or "below Spec.MinReplicas" in reason or "must be greater than 0" in reason:
        return size, "up"
    if "below target" in reason or "above Spec.MaxReplicas" in reason:
        return size, "down"
    return None


def event_message(event: Any) -> str | None:
    """core/v1 ``message`` or events.k8s.io/v1 ``note``."""
    return getattr(event, "message", None) or getattr(event, "note", None)


def event_time(event: Any) -> datetime | None:
    """When the event last occurred: core/v1 lastTimestamp, else the series, eventTime, the first time."""
    series = getattr(event, "series", None)
    candidates = (
        getattr(event, "last_timestamp", None),
        getattr(event, "deprecated_last_timestamp", None),
        getattr(series, "last_observed_time", None),
        getattr(event, "event_time", None),
        getattr(event, "first_timestamp", None),
        event.metadata.creation_timestamp,
    )
    return next((moment for moment in candidates if moment is not None), None)


def _condition_time(pod: Any, kind: str) -> datetime | None:
    for condition in (pod.status.conditions if pod.status is not None else None) or []:
        if condition.type == kind and condition.status == "True":
            return condition.last_transition_time  # type: ignore[no-any-return]
    return None


def pod_ready_time(pod: Any) -> datetime | None:
    return _condition_time(pod, "Ready")


def pod_serving_time(pod: Any) -> float | None:
    """When the pod began to serve: Ready and every readiness gate True (NLB target healthy), else None.

    The pod's Ready condition already waits for its gates (kubelet: Ready = ContainersReady and
    all readiness gates), so serving is the latest of Ready and the gates' own transitions.
    """
    ready = pod_ready_time(pod)
    if ready is None:
        return None
    moments = [epoch(ready)]
    for gate in (pod.spec.readiness_gates or []) if pod.spec is not None else []:
        passed = _condition_time(pod, gate.condition_type)
        if passed is None:
            return None
        moments.append(epoch(passed))
    return max(moments)


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


def signal_crossing(samples: Iterable[tuple[float, float]], target: float, decision: float) -> float | None:
    """The first evaluation of the above-target run that led to ``decision``: the latest crossing
    from below (or the first sample, if every sample up to the decision is above) at or before it."""
    crossing: float | None = None
    for at, value in sorted(samples):
        if at > decision:
            break
        if value > target:
            if crossing is None:
                crossing = at
        else:
            crossing = None
    return crossing


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
    deadline_s: float
    signal: SignalReader | None
    signal_target: float
    observation: ScaleObservation = field(default_factory=ScaleObservation)
    state: ScaleState = field(default_factory=ScaleState)
    scale_down_times: list[float] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.observation.notes.append(text)

    def interval(self, what: str, start: float, end: float) -> float | None:
        """``end - start`` in seconds, or None (logged, counted) when the order is wrong."""
        seconds = round(end - start, 3)
        if seconds < 0:
            self.observation.ordering_errors += 1
            self.note(f"ordering error: {what} ends {-seconds:g} s before it starts (clock skew or a stale read)")
            return None
        return seconds


def _read_replicas(run: _Run, hpa_name: str, deployment_name: str) -> tuple[Any, Any]:
    observation = run.observation
    hpa = None
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
        return hpa, None
    observation.ready_replicas = int(deployment.status.ready_replicas or 0) if deployment.status else 0
    return hpa, deployment


def _reason_at(events: Iterable[Any], hpa_name: str, decision: float) -> tuple[int, str] | None:
    """The direction an HPA rescale Event gives for the decision at ``decision`` (None when no Event matches:
    the spam filter may have dropped it, or it has expired)."""
    best: tuple[float, tuple[int, str]] | None = None
    for event in events:
        moment, involved = (
            event_time(event),
            getattr(event, "involved_object", None) or getattr(event, "regarding", None),
        )
        if event.reason != RESCALE_REASON or involved is None or involved.name != hpa_name or moment is None:
            continue
        parsed = rescale_direction(event_message(event))
        gap = abs(epoch(moment) - decision)
        if parsed is not None and gap <= EVENT_MATCH_S and (best is None or gap < best[0]):
            best = (gap, parsed)
    return None if best is None else best[1]


def _count_decision(run: _Run, hpa: Any, deployment: Any, events: list[Any], hpa_name: str) -> OpenScaleUp | None:
    """Count the HPA's latest decision once; return it if it is a scale-up to time."""
    status = hpa.status if hpa is not None else None
    if status is None:
        run.state.last_scale_time, run.state.desired = run.previous.last_scale_time, run.previous.desired
        return None
    last = epoch(status.last_scale_time) if status.last_scale_time is not None else None
    desired = int(status.desired_replicas or 0)
    run.state.last_scale_time, run.state.desired = last, desired
    spec_replicas = deployment.spec.replicas if deployment is not None and deployment.spec is not None else None
    if spec_replicas is not None and int(spec_replicas) != desired:
        run.note(f"deployment spec.replicas={spec_replicas} differs from the HPA's desiredReplicas={desired}")
    if run.baseline or last is None or last == run.previous.last_scale_time or last < run.window_start:
        return None
    before = run.previous.desired
    reason = _reason_at(events, hpa_name, last)
    if before is not None and desired > before:
        direction = "up"
    elif before is not None and desired < before:
        direction = "down"
    elif reason is not None:
        direction = reason[1]  # same size as last run's: up and back (or down and back) in between
    else:
        run.note(f"scale decision at {last:.0f} to {desired} replicas: direction unknown (no change, no event)")
        return None
    if reason is not None and reason[1] != direction:
        run.note(f"the HPA's event says {reason[1]} to {reason[0]}, its status {direction} to {desired}")
    if reason is None:
        run.note(f"scale decision at {last:.0f} has no matching event (dropped, expired or not yet listed)")
    if direction == "down":
        run.observation.scale_downs += 1
        run.scale_down_times.append(last)
        return None
    run.observation.scale_ups += 1
    signal_at = None
    if run.signal is not None:
        try:
            samples = run.signal.samples(last - run.deadline_s, last)
        except (eks_client.KubernetesUnavailable, eks_client.KubernetesAuthError) as error:
            run.observation.signal_unavailable += 1
            run.note(f"scaling signal unavailable ({error}): time to scale starts at the decision")
        else:
            signal_at = signal_crossing(samples, run.signal_target, last)
            if signal_at is None:
                run.note("the scaling signal was not above its target before the decision (CPU-driven?)")
    base = before if before is not None and before < desired else max(0, desired - 1)
    return OpenScaleUp(key=f"hpa:{last:.0f}", at=last, target=desired, signal_at=signal_at, base=base)


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
            startup = run.interval(f"pod {pod.metadata.name} created -> Ready", created, epoch(ready_at))
            if startup is not None:
                run.observation.pod_startup_s.append(startup)
            scheduled_at = _condition_time(fresh, "PodScheduled")
            if scheduled_at is not None:
                part = run.interval(f"pod {pod.metadata.name} scheduled -> Ready", epoch(scheduled_at), epoch(ready_at))
                if part is not None:
                    run.observation.pod_scheduled_to_ready_s.append(part)
            reported = True
    if ready_at is not None:
        reported = True  # ready before the window (or in a baseline run): nothing to publish
    run.state.pods[uid] = PodMemory(restarts=max(restarts, counted), startup_reported=reported, seen_at=run.now)


def _pods(run: _Run, pods: list[Any]) -> list[tuple[float, Any]]:
    """Gauges and once-only pod facts; returns (serving time, pod) of the live serving pods, in order."""
    observation = run.observation
    serving = []
    for pod in pods:
        if pod.metadata.deletion_timestamp is not None:
            continue
        if pod.status is not None and pod.status.phase == "Pending" and requests_gpu(pod):
            observation.pending_gpu_pods += 1
            observation.unschedulable_gpu_pods += int(is_unschedulable(pod))
        observation.crash_looping_pods += int(is_crash_looping(pod))
        served = pod_serving_time(pod)
        if served is not None:
            serving.append((served, pod))
        _pod_facts(run, pod)
    listed = {str(pod.metadata.uid) for pod in pods}
    for uid, memory in run.previous.pods.items():
        # A pod missing from one (cached) list is remembered for the window, then forgotten.
        if uid not in listed and uid not in run.state.pods and memory.seen_at >= run.window_start:
            run.state.pods[uid] = memory
    return sorted(serving, key=lambda pair: pair[0])


def _served(run: _Run, scale_up: OpenScaleUp, served_at: float, pod: Any) -> None:
    """Publish time to scale and its parts, from the first added pod to serve."""
    observation = run.observation
    start = scale_up.signal_at if scale_up.signal_at is not None else scale_up.at
    total = run.interval(f"scale-up to {scale_up.target}: signal -> serving", start, served_at)
    if total is None:
        return
    observation.time_to_scale_s.append(total)
    points: list[tuple[str, float | None]] = [("signal", scale_up.signal_at), ("decision", scale_up.at)]
    scheduled, containers = _condition_time(pod, "PodScheduled"), _condition_time(pod, "ContainersReady")
    points += [("scheduled", None if scheduled is None else epoch(scheduled))]
    points += [("Ready", None if containers is None else epoch(containers)), ("serving", served_at)]
    parts = {
        ("signal", "decision"): observation.signal_to_decision_s,
        ("decision", "scheduled"): observation.decision_to_scheduled_s,
        ("scheduled", "Ready"): observation.scheduled_to_ready_s,
        ("Ready", "serving"): observation.ready_to_serving_s,
    }
    for (first, first_at), (second, second_at) in itertools.pairwise(points):
        if first_at is None or second_at is None:
            continue
        seconds = run.interval(f"scale-up to {scale_up.target}: {first} -> {second}", first_at, second_at)
        if seconds is not None:
            parts[(first, second)].append(seconds)


def _time_to_scale(run: _Run, scale_ups: list[OpenScaleUp], serving: list[tuple[float, Any]]) -> None:
    """Publish each scale-up's milestones once; flag it once when its deadline passes with nothing added serving."""
    for scale_up in sorted(scale_ups, key=lambda s: s.at):
        start = scale_up.signal_at if scale_up.signal_at is not None else scale_up.at
        overtaken = any(down > scale_up.at for down in run.scale_down_times)
        if not overtaken and not scale_up.first_reported and len(serving) > scale_up.base:
            _served(run, scale_up, *serving[scale_up.base])  # late or not: published once
            scale_up = replace(scale_up, first_reported=True)
        if not overtaken and len(serving) >= scale_up.target:
            all_serving = serving[scale_up.target - 1][0]
            full = run.interval(f"scale-up to {scale_up.target}: signal -> all serving", start, all_serving)
            if full is not None:
                run.observation.time_to_full_scale_s.append(full)
            continue  # done
        late = overtaken or run.now - start > run.deadline_s
        if late and not scale_up.first_reported and not scale_up.unserved_reported:
            run.observation.unserved_scale_ups += 1
            why = "overtaken by a scale-down" if overtaken else f"nothing added serving {run.now - start:.0f} s on"
            run.note(f"scale-up to {scale_up.target} at {scale_up.at:.0f} unserved: {why}")
            scale_up = replace(scale_up, unserved_reported=True)
        if overtaken or scale_up.at < run.window_start:
            if not overtaken:
                run.note(f"scale-up to {scale_up.target} at {scale_up.at:.0f}: forgotten after the look-back")
            continue  # closed: flagged or timed once, nothing left to time
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
    deadline_s: float,
    signal: SignalReader | None = None,
    signal_target: float = 0.0,
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
        deadline_s=deadline_s,
        signal=signal,
        signal_target=signal_target,
    )
    run.state.updated_at = now_s
    run.observation.baseline = run.baseline
    hpa, deployment = _read_replicas(run, hpa_name, deployment_name)
    pods = reader.list_pods(namespace, _label_selector(deployment)) if deployment is not None else []
    events = reader.list_hpa_events(namespace, hpa_name)
    opened = _count_decision(run, hpa, deployment, events, hpa_name)
    serving = _pods(run, pods)
    _time_to_scale(run, [*run.previous.scale_ups, *([opened] if opened else [])], serving)
    return run.observation, run.state
