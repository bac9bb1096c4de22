"""The bounded rollout wait, on Kubernetes API objects (k8s_fixtures), with a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from lambdas.common import eks_client
from lambdas.health_check.errors import RolloutFailed, RolloutTimedOut
from lambdas.health_check.rollout import (
    BackoffTracker,
    RolloutPolicy,
    deployment_status,
    rollout_status,
    wait_for_rollout,
)
from tests.unit.lambdas import k8s_fixtures as fx

# (deployment or an error to raise, pods[, replica sets]); without replica sets: the newest one only.
Poll = tuple[Any, ...]


def broken_pods(pods: list[Any]) -> list[str]:
    """Broken on one look: the crash-loop restart rule alone (what a single poll can tell)."""
    return BackoffTracker(RolloutPolicy()).observe(pods)[0]


@dataclass
class Clock:
    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedReader:
    """Answers poll after poll from a script (the last entry repeats); an Exception is raised."""

    def __init__(self, *polls: Poll) -> None:
        self.polls = list(polls)
        self.calls: list[tuple[str, str, str]] = []

    def _current(self) -> Poll:
        return self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]

    def read_deployment(self, namespace: str, name: str) -> Any:
        self.calls.append(("deployment", namespace, name))
        self._poll = self._current()
        deployment = self._poll[0]
        if isinstance(deployment, Exception):
            raise deployment
        return fx.to_model(deployment)

    def list_pods(self, namespace: str, label_selector: str) -> list[Any]:
        self.calls.append(("pods", namespace, label_selector))
        return [fx.to_model(p) for p in self._poll[1]]

    def list_replica_sets(self, namespace: str, label_selector: str) -> list[Any]:
        self.calls.append(("replicasets", namespace, label_selector))
        replica_sets = self._poll[2] if len(self._poll) > 2 else [fx.replica_set()]
        return [fx.to_model(r) for r in replica_sets]


def _models(pods: list[dict[str, Any]]) -> list[Any]:
    return [fx.to_model(p) for p in pods]


def _wait(reader: ScriptedReader, clock: Clock, timeout_s: float = 60, poll_s: float = 5) -> Any:
    return wait_for_rollout(
        reader, fx.NAMESPACE, fx.DEPLOYMENT, timeout_s=timeout_s, poll_s=poll_s, clock=clock, sleep=clock.sleep
    )


# ---- status from objects -----------------------------------------------------------------------------


def _status(deployment: dict[str, Any], pods: list[dict[str, Any]], replica_sets: list[dict[str, Any]] | None = None):
    rs = [fx.replica_set()] if replica_sets is None else replica_sets
    return rollout_status(fx.to_model(deployment), _models(pods), _models(rs))


def test_a_finished_rollout_is_complete() -> None:
    status = _status(fx.deployment(), fx.steady_pods())
    assert status.complete
    assert status.message == f'deployment "{fx.DEPLOYMENT}" successfully rolled out: 2/2 replicas ready'
    assert (status.desired, status.updated, status.ready, status.available) == (2, 2, 2, 2)


# kubectl's own cases (kubernetes/kubectl pkg/polymorphichelpers/rollout_status_test.go,
# TestDeploymentStatusViewerStatus): generation, spec.replicas, status, message, done.
KUBECTL_CASES = [
    (
        0,
        1,
        {"observed": 1, "total": 1, "updated": 0, "available": 1},
        'Waiting for deployment "foo" rollout to finish: 0 out of 1 new replicas have been updated...',
        False,
    ),
    (
        1,
        1,
        {"observed": 1, "total": 2, "updated": 1, "available": 2},
        'Waiting for deployment "foo" rollout to finish: 1 old replicas are pending termination...',
        False,
    ),
    (
        1,
        2,
        {"observed": 1, "total": 2, "updated": 2, "available": 1},
        'Waiting for deployment "foo" rollout to finish: 1 of 2 updated replicas are available...',
        False,
    ),
    (1, 2, {"observed": 1, "total": 2, "updated": 2, "available": 2}, 'deployment "foo" successfully rolled out', True),
    (
        2,
        2,
        {"observed": 1, "total": 2, "updated": 2, "available": 2},
        "Waiting for deployment spec update to be observed...",
        False,
    ),
]


@pytest.mark.parametrize(("generation", "replicas", "status", "message", "done"), KUBECTL_CASES)
def test_kubectl_deployment_status_viewer_cases(
    generation: int, replicas: int, status: dict[str, int], message: str, done: bool
) -> None:
    obj = fx.deployment(replicas=replicas, generation=generation, ready=status["available"], **status)
    obj["metadata"]["name"] = "foo"
    verdict = deployment_status(fx.to_model(obj))
    assert (verdict.message, verdict.done, verdict.error) == (message, done, None)


def test_kubectl_fails_on_the_progress_deadline_only_once_the_spec_is_observed() -> None:
    current = fx.deployment(replicas=2, ready=1, progressing_reason="ProgressDeadlineExceeded")
    assert deployment_status(fx.to_model(current)).error == (
        f'deployment "{fx.DEPLOYMENT}" exceeded its progress deadline'
    )


def test_a_stale_progress_deadline_does_not_fail_a_fix_forward() -> None:
    """Defect 4: the previous rollout's ProgressDeadlineExceeded, with generation > observedGeneration
    (the controller has not yet seen the fix), is waited past, not reported."""
    stale = fx.deployment(generation=5, observed=4, revision=4, progressing_reason="ProgressDeadlineExceeded")
    status = _status(stale, fx.steady_pods())
    assert not status.deadline_exceeded
    assert status.message == "Waiting for deployment spec update to be observed..."
    clock = Clock()
    reader = ScriptedReader((stale, fx.steady_pods()), (fx.deployment(generation=5, observed=5), fx.steady_pods()))
    assert _wait(reader, clock).polls == 2


@pytest.mark.parametrize(
    ("deployment", "message"),
    [
        (fx.deployment(generation=4, observed=3), "Waiting for deployment spec update to be observed..."),
        (fx.deployment(replicas=2, updated=1, ready=2, total=3), "1 out of 2 new replicas have been updated..."),
        (fx.deployment(replicas=2, updated=2, ready=2, total=3), "1 old replicas are pending termination..."),
        (fx.deployment(replicas=4, updated=4, ready=2, available=2), "2 of 4 updated replicas are available..."),
    ],
)
def test_an_unfinished_rollout_says_what_it_waits_for(deployment: dict[str, Any], message: str) -> None:
    status = _status(deployment, fx.steady_pods())
    assert not status.complete
    assert status.message.endswith(message)


def test_a_crash_looping_pod_is_reported_with_its_restarts_and_last_exit() -> None:
    problems = broken_pods(_models([*fx.steady_pods(), fx.crash_looping_pod(restarts=7)]))
    assert problems == [
        f"pod {fx.DEPLOYMENT}-5d8f7c9b6d-crash container triton: CrashLoopBackOff (7 restarts, last exit 1 Error)"
    ]


def test_a_pending_gpu_pod_and_a_terminating_pod_are_not_broken() -> None:
    terminating = fx.crash_looping_pod()
    terminating["metadata"]["deletionTimestamp"] = fx.ts(60)
    assert broken_pods(_models([fx.pending_gpu_pod(), terminating])) == []


def test_ready_replicas_do_not_hide_a_crash_looping_pod() -> None:
    status = _status(fx.deployment(), [*fx.steady_pods(), fx.crash_looping_pod()])
    assert not status.complete
    assert status.broken_pods


def test_an_old_replica_set_pod_in_back_off_does_not_fail_a_fix_forward() -> None:
    """Defect 4: revision 3's pod crash-loops (9 restarts) while revision 4, the fix, rolls out."""
    old = fx.old_replica_set_crash_looping_pod()
    rolling = fx.deployment(replicas=2, updated=2, ready=2, total=3, revision=4)
    replica_sets = fx.replica_sets_of_fix_forward()
    clock = Clock()
    reader = ScriptedReader(
        (rolling, [*fx.steady_pods(), old], replica_sets),
        (rolling, [*fx.steady_pods(), old], replica_sets),
        (fx.deployment(revision=4), fx.steady_pods(), replica_sets),
    )
    result = _wait(reader, clock)
    assert result.status.complete
    assert result.polls == 3


def test_a_single_transient_image_pull_back_off_is_waited_out() -> None:
    """Defect 4: the first ImagePullBackOff of a new pod (no restart) is not a verdict."""
    pulling = fx.image_pull_backoff_pod()
    in_progress = fx.deployment(replicas=2, updated=1, ready=2, total=3)
    clock = Clock()
    reader = ScriptedReader(
        (in_progress, [*fx.steady_pods(), pulling]),
        (
            in_progress,
            [*fx.steady_pods(), fx.pod(pulling["metadata"]["name"], uid=fx.UID_PULL, created_s=-20, scheduled_s=-19)],
        ),
        (fx.deployment(), fx.steady_pods()),
    )
    assert _wait(reader, clock).status.complete


def test_an_image_pull_back_off_seen_in_repeated_polls_fails_the_wait() -> None:
    clock = Clock()
    in_progress = fx.deployment(replicas=2, updated=1, ready=2, total=3)
    reader = ScriptedReader((in_progress, [*fx.steady_pods(), fx.image_pull_backoff_pod()]))
    with pytest.raises(RolloutFailed, match="ImagePullBackOff \\(0 restarts\\)"):
        _wait(reader, clock, poll_s=5)
    assert clock.sleeps == [5, 5], "broken after the third consecutive poll in back-off"


def test_pods_without_the_nlb_readiness_gate_are_reported_as_unverified() -> None:
    """Pods created before the NLB's TargetGroupBinding (a cluster's first deploy) carry no gate: the
    rollout is judged without it and says so; the gate's Triton step then proves a healthy target."""
    pods = [
        fx.pod(
            f"{fx.DEPLOYMENT}-5d8f7c9b6d-nogat",
            uid=fx.UID_A,
            created_s=-60,
            scheduled_s=-59,
            ready_s=-30,
            target_health=None,
        ),
        fx.steady_pods()[1],
    ]
    status = _status(fx.deployment(), pods)
    assert status.complete
    (note,) = status.notes
    assert note.startswith(f"pod {fx.DEPLOYMENT}-5d8f7c9b6d-nogat has no target-health.elbv2.k8s.aws/ readiness gate")
    assert _status(fx.deployment(), fx.steady_pods()).notes == ()


def test_a_pod_of_the_newest_replica_set_must_be_known_when_target_health_is_required() -> None:
    status = _status(fx.deployment(), fx.steady_pods(), replica_sets=[])
    assert not status.complete
    assert status.message == "the newest ReplicaSet's pods are not known yet"
    relaxed = rollout_status(
        fx.to_model(fx.deployment()), _models(fx.steady_pods()), [], policy=RolloutPolicy(require_target_health=False)
    )
    assert relaxed.complete


def test_a_target_still_initial_in_the_nlb_keeps_the_rollout_waiting() -> None:
    """Defect 3: the gate condition False (Elb.InitialHealthChecking): the pod is not Ready, nor the rollout."""
    initial = fx.pod(
        f"{fx.DEPLOYMENT}-5d8f7c9b6d-initl",
        uid=fx.UID_B,
        created_s=-60,
        scheduled_s=-59,
        ready_s=-30,
        target_health="False",
        target_reason="Elb.InitialHealthChecking",
    )
    conditions = {c.type: c.status for c in fx.to_model(initial).status.conditions}
    assert conditions["Ready"] == "False", "Ready is False while the gate is"
    # Even if the Deployment's counters were already up to date, the gate's condition decides.
    status = _status(fx.deployment(), [fx.steady_pods()[0], initial])
    assert not status.complete
    assert status.message == (
        f"pod {fx.DEPLOYMENT}-5d8f7c9b6d-initl is not a healthy NLB target yet "
        f"({fx.TARGET_HEALTH_CONDITION}: Elb.InitialHealthChecking)"
    )


# ---- the wait ------------------------------------------------------------------------------------------


def test_wait_polls_until_the_rollout_completes() -> None:
    clock = Clock()
    in_progress = fx.deployment(replicas=4, updated=4, ready=2, available=2)
    pods = [*fx.steady_pods(), *fx.scale_up_new_pods(ready=False)]
    reader = ScriptedReader(
        (in_progress, pods),
        (in_progress, pods),
        (fx.deployment(replicas=4), [*fx.steady_pods(), *fx.scale_up_new_pods(True)]),
    )
    result = _wait(reader, clock)
    assert result.status.complete
    assert result.polls == 3
    assert result.elapsed_s == 10.0
    assert clock.sleeps == [5, 5]
    assert ("pods", fx.NAMESPACE, fx.SELECTOR) in reader.calls, "pods selected by the Deployment's selector"
    assert ("replicasets", fx.NAMESPACE, fx.SELECTOR) in reader.calls


def test_a_crash_looping_pod_fails_the_wait_at_once() -> None:
    clock = Clock()
    reader = ScriptedReader((fx.deployment(ready=1, available=1), [fx.steady_pods()[0], fx.crash_looping_pod()]))
    with pytest.raises(RolloutFailed, match="CrashLoopBackOff \\(5 restarts, last exit 1 Error\\)"):
        _wait(reader, clock)
    assert clock.sleeps == [], "no time spent waiting for a pod that will not recover"


def test_progress_deadline_exceeded_fails_the_wait_at_once() -> None:
    clock = Clock()
    reader = ScriptedReader((fx.deployment(ready=1, progressing_reason="ProgressDeadlineExceeded"), fx.steady_pods()))
    with pytest.raises(RolloutFailed, match="exceeded its progress deadline: ReplicaSet .* has timed out progressing"):
        _wait(reader, clock)


def test_a_rollout_stuck_on_a_pending_gpu_pod_times_out_within_its_bound() -> None:
    clock = Clock()
    pods = [fx.steady_pods()[0], fx.pending_gpu_pod()]
    reader = ScriptedReader((fx.deployment(replicas=2, updated=2, ready=1, total=2), pods))
    with pytest.raises(
        RolloutTimedOut, match=r"not rolled out after 30.0 s \(limit 30 s\): .* 1 of 2 updated replicas are available"
    ):
        _wait(reader, clock, timeout_s=30, poll_s=7)
    assert sum(clock.sleeps) == 30
    assert max(clock.sleeps) <= 7


def test_a_slow_api_is_retried_until_it_answers() -> None:
    clock = Clock()
    slow = eks_client.KubernetesUnavailable("read deployment radstream/triton-inference-server: ReadTimeoutError")
    reader = ScriptedReader((slow, []), (slow, []), (fx.deployment(), fx.steady_pods()))
    assert _wait(reader, clock).polls == 3


def test_an_api_that_never_answers_times_out_with_the_last_error() -> None:
    clock = Clock()
    slow = eks_client.KubernetesUnavailable("read deployment radstream/triton-inference-server: ReadTimeoutError")
    with pytest.raises(RolloutTimedOut, match="ReadTimeoutError"):
        _wait(ScriptedReader((slow, [])), clock, timeout_s=20)


def test_a_deployment_not_yet_visible_is_waited_for() -> None:
    clock = Clock()
    missing = eks_client.KubernetesNotFound("read deployment radstream/triton-inference-server: HTTP 404 Not Found")
    reader = ScriptedReader((missing, []), (fx.deployment(), fx.steady_pods()))
    assert _wait(reader, clock).polls == 2


def test_an_auth_error_is_not_retried() -> None:
    clock = Clock()
    denied = eks_client.KubernetesAuthError("read deployment radstream/triton-inference-server: HTTP 403 Forbidden")
    with pytest.raises(eks_client.KubernetesAuthError):
        _wait(ScriptedReader((denied, [])), clock)
    assert clock.sleeps == []
