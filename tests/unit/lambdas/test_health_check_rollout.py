"""The bounded rollout wait, on Kubernetes API objects (k8s_fixtures), with a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from lambdas.common import eks_client
from lambdas.health_check.errors import RolloutFailed, RolloutTimedOut
from lambdas.health_check.rollout import broken_pods, rollout_status, wait_for_rollout
from tests.unit.lambdas import k8s_fixtures as fx

Poll = tuple[dict[str, Any] | Exception, list[dict[str, Any]]]


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
        deployment, _ = self._poll
        if isinstance(deployment, Exception):
            raise deployment
        return fx.to_model(deployment)

    def list_pods(self, namespace: str, label_selector: str) -> list[Any]:
        self.calls.append(("pods", namespace, label_selector))
        return [fx.to_model(p) for p in self._poll[1]]


def _models(pods: list[dict[str, Any]]) -> list[Any]:
    return [fx.to_model(p) for p in pods]


def _wait(reader: ScriptedReader, clock: Clock, timeout_s: float = 60, poll_s: float = 5) -> Any:
    return wait_for_rollout(
        reader, fx.NAMESPACE, fx.DEPLOYMENT, timeout_s=timeout_s, poll_s=poll_s, clock=clock, sleep=clock.sleep
    )


# ---- status from objects -----------------------------------------------------------------------------


def test_a_finished_rollout_is_complete() -> None:
    status = rollout_status(fx.to_model(fx.deployment()), _models(fx.steady_pods()))
    assert status.complete
    assert status.message == "2/2 replicas ready, rollout complete"
    assert (status.desired, status.updated, status.ready, status.available) == (2, 2, 2, 2)


@pytest.mark.parametrize(
    ("deployment", "message"),
    [
        (fx.deployment(generation=4, observed=3), "waiting for the deployment spec update to be observed"),
        (fx.deployment(replicas=2, updated=1, ready=2, total=3), "1 of 2 replicas updated"),
        (fx.deployment(replicas=2, updated=2, ready=2, total=3), "1 old replicas pending termination"),
        (fx.deployment(replicas=4, updated=4, ready=2, available=2), "2 of 4 updated replicas ready (2 available)"),
    ],
)
def test_an_unfinished_rollout_says_what_it_waits_for(deployment: dict[str, Any], message: str) -> None:
    status = rollout_status(fx.to_model(deployment), _models(fx.steady_pods()))
    assert not status.complete
    assert status.message == message


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
    status = rollout_status(fx.to_model(fx.deployment()), _models([*fx.steady_pods(), fx.crash_looping_pod()]))
    assert not status.complete
    assert status.broken_pods


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


def test_a_crash_looping_pod_fails_the_wait_at_once() -> None:
    clock = Clock()
    reader = ScriptedReader((fx.deployment(ready=1, available=1), [fx.steady_pods()[0], fx.crash_looping_pod()]))
    with pytest.raises(RolloutFailed, match="CrashLoopBackOff \\(5 restarts, last exit 1 Error\\)"):
        _wait(reader, clock)
    assert clock.sleeps == [], "no time spent waiting for a pod that will not recover"


def test_progress_deadline_exceeded_fails_the_wait_at_once() -> None:
    clock = Clock()
    reader = ScriptedReader((fx.deployment(ready=1, progressing_reason="ProgressDeadlineExceeded"), fx.steady_pods()))
    with pytest.raises(RolloutFailed, match="progress deadline exceeded: ReplicaSet .* has timed out progressing"):
        _wait(reader, clock)


def test_a_rollout_stuck_on_a_pending_gpu_pod_times_out_within_its_bound() -> None:
    clock = Clock()
    pods = [fx.steady_pods()[0], fx.pending_gpu_pod()]
    reader = ScriptedReader((fx.deployment(replicas=2, updated=2, ready=1, total=2), pods))
    with pytest.raises(
        RolloutTimedOut, match=r"not rolled out after 30.0 s \(limit 30 s\): 1 of 2 updated replicas ready"
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
