"""Scale-event logic on Kubernetes API objects: scale-up, scale-down, a crash-looping pod, a
pending GPU pod, counting once across runs, a pod vanishing mid-read, a slow API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lambdas.common import eks_client
from lambdas.scale_events.collector import ScaleObservation, collect, rescale_direction
from lambdas.scale_events.errors import StateUnreadable
from lambdas.scale_events.state import OpenScaleUp, PodMemory, ScaleState
from tests.unit.lambdas import k8s_fixtures as fx

LOOKBACK = 900.0


class FakeScaleReader:
    """Answers like the API server would (k8s_fixtures.route), as client models; 404 -> KubernetesNotFound."""

    def __init__(self, cluster: fx.Cluster, fail: dict[str, Exception] | None = None) -> None:
        self.cluster = cluster
        self.fail = fail or {}
        self.calls: list[str] = []

    def _get(self, call: str, path: str, **query: str) -> Any:
        self.calls.append(call)
        if call in self.fail:
            raise self.fail[call]
        status, body = fx.route(self.cluster, path, {k: [v] for k, v in query.items()})
        if status == 404:
            raise eks_client.KubernetesNotFound(f"{call}: HTTP 404 Not Found")
        return body

    def read_hpa(self, namespace: str, name: str) -> Any:
        path = f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/{name}"
        return fx.to_model(self._get("read_hpa", path))

    def read_deployment(self, namespace: str, name: str) -> Any:
        return fx.to_model(self._get("read_deployment", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"))

    def list_pods(self, namespace: str, label_selector: str) -> list[Any]:
        body = self._get("list_pods", f"/api/v1/namespaces/{namespace}/pods", labelSelector=label_selector)
        return [fx.to_model(item) for item in body["items"]]

    def read_pod(self, namespace: str, name: str) -> Any:
        return fx.to_model(self._get("read_pod", f"/api/v1/namespaces/{namespace}/pods/{name}"))

    def list_hpa_events(self, namespace: str, hpa_name: str) -> list[Any]:
        selector = (
            f"involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name={hpa_name},reason=SuccessfulRescale"
        )
        body = self._get("list_hpa_events", f"/api/v1/namespaces/{namespace}/events", fieldSelector=selector)
        return [fx.to_model(item) for item in body["items"]]


def run(
    cluster: fx.Cluster,
    previous: ScaleState | None,
    at_s: float,
    *,
    fail: dict[str, Exception] | None = None,
    time_left: Callable[[], float] | None = None,
) -> tuple[ScaleObservation, ScaleState, FakeScaleReader]:
    reader = FakeScaleReader(cluster, fail)
    observation, state = collect(
        reader,
        namespace=fx.NAMESPACE,
        deployment_name=fx.DEPLOYMENT,
        hpa_name=fx.HPA,
        previous=previous,
        now=fx.at(at_s),
        lookback_s=LOOKBACK,
        time_left=time_left,
    )
    # Every run's state goes through SSM as JSON: make the tests do the same.
    return observation, ScaleState.from_json(state.to_json()), reader


def steady_baseline(at_s: float = -60) -> ScaleState:
    observation, state, _ = run(fx.Cluster(), None, at_s)
    assert observation.baseline
    return state


def scale_up_cluster(ready: bool) -> fx.Cluster:
    return fx.Cluster(
        deployment=fx.deployment(replicas=4, updated=4, ready=4 if ready else 2),
        hpa=fx.hpa(current=2 if not ready else 4, desired=4),
        pods=[*fx.steady_pods(), *fx.scale_up_new_pods(ready=ready)],
        events=[fx.scale_up_event()],
    )


# ---- message parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("New size: 4; reason: cpu resource utilization (percentage of request) above target", (4, "up")),
        ("New size: 3; reason: pods metric triton_queue_time_per_request_us above target", (3, "up")),
        ("New size: 2; reason: All metrics below target", (2, "down")),
        ("New size: 2; reason: Current number of replicas below Spec.MinReplicas", (2, "up")),
        ("New size: 4; reason: Current number of replicas above Spec.MaxReplicas", (4, "down")),
        ("Scaled up replica set triton-inference-server-5d8f7c9b6d from 2 to 4", None),
        (None, None),
    ],
)
def test_rescale_direction(message: str | None, expected: tuple[int, str] | None) -> None:
    assert rescale_direction(message) == expected


# ---- the first run -----------------------------------------------------------------------------------------


def test_a_run_without_state_records_a_baseline_and_counts_nothing() -> None:
    cluster = scale_up_cluster(ready=True)
    cluster.pods.append(fx.crash_looping_pod())
    observation, state, _ = run(cluster, None, 60)
    assert observation.baseline
    assert (observation.scale_ups, observation.container_restarts) == (0, 0)
    assert observation.pod_startup_s == [] and observation.time_to_scale_s == []
    # ...but gauges are read as in every run.
    assert (observation.current_replicas, observation.desired_replicas, observation.ready_replicas) == (4, 4, 4)
    assert observation.crash_looping_pods == 1
    assert state.events == {fx.EVENT_UP: (1, fx.at(0).timestamp())}
    assert state.pods[fx.UID_CRASH].restarts == 5
    assert all(state.pods[uid].startup_reported for uid in (fx.UID_A, fx.UID_B, fx.UID_C, fx.UID_D))


# ---- scale-up ---------------------------------------------------------------------------------------------


def test_scale_up_counts_once_and_times_the_new_capacity() -> None:
    state = steady_baseline()

    # HPA raised 2 -> 4 at T0; the two new pods are scheduled but not Ready yet.
    observation, state, _ = run(scale_up_cluster(ready=False), state, 20)
    assert (observation.scale_ups, observation.scale_downs) == (1, 0)
    assert (observation.current_replicas, observation.desired_replicas) == (2, 4)
    assert observation.time_to_scale_s == []
    assert observation.pod_startup_s == []
    assert state.scale_ups == [OpenScaleUp(key=f"{fx.EVENT_UP}:1", at=fx.at(0).timestamp(), target=4)]

    # Both Ready (29 s and 42 s after T0): time-to-scale is when the 4th replica turned Ready.
    observation, state, reader = run(scale_up_cluster(ready=True), state, 60)
    assert observation.scale_ups == 0, "the same event, already counted"
    assert observation.time_to_scale_s == [42.0]
    assert sorted(observation.pod_startup_s) == [28.0, 41.0]  # created -> Ready
    assert sorted(observation.pod_scheduled_to_ready_s) == [27.0, 39.0]
    assert state.scale_ups == []
    assert reader.calls.count("read_pod") == 2, "each new pod confirmed once before its startup is recorded"

    # The next minute, nothing happened: nothing is counted again.
    observation, state, reader = run(scale_up_cluster(ready=True), state, 120)
    assert (observation.scale_ups, observation.container_restarts) == (0, 0)
    assert observation.time_to_scale_s == [] and observation.pod_startup_s == []
    assert "read_pod" not in reader.calls


def test_a_repeated_rescale_folded_into_the_same_event_counts_its_new_occurrence() -> None:
    state = steady_baseline()
    _, state, _ = run(scale_up_cluster(ready=True), state, 60)
    cluster = scale_up_cluster(ready=True)
    cluster.events = [fx.rescale_event(fx.EVENT_UP, new_size=4, reason=fx.SCALE_UP_REASON, at_s=90, count=2, first_s=0)]
    observation, state, _ = run(cluster, state, 120)
    assert observation.scale_ups == 1
    assert state.events[fx.EVENT_UP] == (2, fx.at(90).timestamp())
    observation, _, _ = run(cluster, state, 180)
    assert observation.scale_ups == 0


def test_a_scale_up_outrun_by_a_scale_down_is_not_timed() -> None:
    state = steady_baseline()
    _, state, _ = run(scale_up_cluster(ready=False), state, 20)
    cluster = scale_up_cluster(ready=False)
    cluster.events.append(fx.scale_down_event(at_s=300))
    observation, state, _ = run(cluster, state, 320)
    assert observation.scale_downs == 1
    assert observation.time_to_scale_s == []
    assert state.scale_ups == []
    assert any("superseded by a scale-down" in note for note in observation.notes)


def test_a_scale_up_never_served_is_dropped_after_the_look_back_window() -> None:
    state = steady_baseline()
    _, state, _ = run(scale_up_cluster(ready=False), state, 20)
    observation, state, _ = run(scale_up_cluster(ready=False), state, LOOKBACK + 30)
    assert state.scale_ups == []
    assert observation.time_to_scale_s == []
    assert any("not served within the look-back window" in note for note in observation.notes)


# ---- scale-down --------------------------------------------------------------------------------------------


def test_scale_down_counts_once() -> None:
    state = steady_baseline()
    _, state, _ = run(scale_up_cluster(ready=True), state, 60)
    cluster = fx.Cluster(
        deployment=fx.deployment(replicas=3),
        hpa=fx.hpa(current=4, desired=3, last_scale_s=400),
        pods=[*fx.steady_pods(), fx.scale_up_new_pods(ready=True)[0]],
        events=[fx.scale_up_event(), fx.scale_down_event(at_s=400)],
    )
    observation, state, _ = run(cluster, state, 420)
    assert (observation.scale_ups, observation.scale_downs) == (0, 1)
    assert (observation.current_replicas, observation.desired_replicas, observation.ready_replicas) == (4, 3, 3)
    assert fx.UID_D in state.pods, "a pod gone from the list is remembered for the window"
    observation, state, _ = run(cluster, state, 480)
    assert observation.scale_downs == 0
    # Once the window has passed, the event and the vanished pod are forgotten, and not counted.
    observation, state, _ = run(cluster, state, 400 + LOOKBACK + 1)
    assert observation.scale_downs == 0
    assert state.events == {}
    assert fx.UID_D not in state.pods


def test_events_older_than_the_look_back_window_are_ignored() -> None:
    observation, state, _ = run(fx.Cluster(events=[fx.scale_up_event()]), ScaleState(), LOOKBACK + 1)
    assert observation.scale_ups == 0
    assert state.events == {}


# ---- a crash-looping pod ------------------------------------------------------------------------------------


def test_restarts_of_a_crash_looping_pod_count_once() -> None:
    cluster = fx.Cluster(pods=[*fx.steady_pods(), fx.crash_looping_pod(restarts=5)])
    _, state, _ = run(cluster, None, 0)
    cluster.pods[-1] = fx.crash_looping_pod(restarts=7)
    observation, state, _ = run(cluster, state, 60)
    assert observation.container_restarts == 2
    assert observation.crash_looping_pods == 1
    assert state.pods[fx.UID_CRASH] == PodMemory(restarts=7, startup_reported=False, seen_at=fx.at(60).timestamp())
    observation, state, _ = run(cluster, state, 120)
    assert observation.container_restarts == 0
    assert observation.crash_looping_pods == 1, "a gauge: reported every run"


def test_a_new_pod_already_restarting_counts_its_restarts() -> None:
    observation, _, _ = run(fx.Cluster(pods=[fx.crash_looping_pod(restarts=3)]), ScaleState(), 0)
    assert observation.container_restarts == 3


def test_restarts_of_a_pod_older_than_the_window_are_history() -> None:
    old = fx.crash_looping_pod(restarts=40)
    old["metadata"]["creationTimestamp"] = fx.ts(-LOOKBACK - 600)
    observation, state, _ = run(fx.Cluster(pods=[old]), ScaleState(), 0)
    assert observation.container_restarts == 0
    assert state.pods[fx.UID_CRASH].restarts == 40


# ---- a pending GPU pod ---------------------------------------------------------------------------------------


def test_a_pending_gpu_pod_is_reported_every_run() -> None:
    cpu_only = fx.pod(f"{fx.DEPLOYMENT}-5d8f7c9b6d-cpuxx", uid=fx.UID_C, created_s=5, unschedulable=True)
    for container in cpu_only["spec"]["containers"]:
        for amounts in container["resources"].values():
            amounts.pop(fx.GPU)
    cluster = fx.Cluster(pods=[*fx.steady_pods(), fx.pending_gpu_pod(), cpu_only])
    for previous in (None, ScaleState()):
        observation, _, _ = run(cluster, previous, 30)
        assert (observation.pending_gpu_pods, observation.unschedulable_gpu_pods) == (1, 1)
        assert observation.pod_startup_s == []


# ---- a pod vanishing mid-read ----------------------------------------------------------------------------------


def test_a_pod_that_vanishes_before_its_confirming_read_is_skipped_not_lost() -> None:
    state = steady_baseline()
    cluster = scale_up_cluster(ready=True)
    vanishing = cluster.pods[2]["metadata"]["name"]
    cluster.vanished = {vanishing}
    observation, state, _ = run(cluster, state, 60)
    assert observation.pod_startup_s == [41.0], "only the pod that still exists"
    assert fx.UID_C not in state.pods
    assert any(f"pod {vanishing} vanished" in note for note in observation.notes)
    # Had it not really gone (a stale list), the next run records it, once.
    cluster.vanished = set()
    observation, state, _ = run(cluster, state, 120)
    assert observation.pod_startup_s == [28.0]
    observation, state, _ = run(cluster, state, 180)
    assert observation.pod_startup_s == []


def test_a_pod_replaced_under_the_same_name_is_not_confirmed() -> None:
    state = steady_baseline()
    cluster = scale_up_cluster(ready=True)
    reader_cluster = scale_up_cluster(ready=True)
    reader_cluster.pods[2]["metadata"]["uid"] = "6f1d2a7c-0000-4000-8000-0000000000ff"

    class Replaced(FakeScaleReader):
        def read_pod(self, namespace: str, name: str) -> Any:
            self.cluster = reader_cluster
            try:
                return super().read_pod(namespace, name)
            finally:
                self.cluster = cluster

    reader = Replaced(cluster)
    observation, _ = collect(
        reader,
        namespace=fx.NAMESPACE,
        deployment_name=fx.DEPLOYMENT,
        hpa_name=fx.HPA,
        previous=state,
        now=fx.at(60),
        lookback_s=LOOKBACK,
    )
    assert observation.pod_startup_s == [41.0]
    assert any("was replaced or is terminating" in note for note in observation.notes)


def test_a_missing_hpa_or_deployment_is_noted_not_fatal() -> None:
    observation, _, reader = run(fx.Cluster(hpa=None, deployment=None), ScaleState(), 0)
    assert observation.current_replicas is None and observation.ready_replicas is None
    assert "list_pods" not in reader.calls
    assert observation.notes[:2] == [
        f"hpa {fx.NAMESPACE}/{fx.HPA} not found",
        f"deployment {fx.NAMESPACE}/{fx.DEPLOYMENT} not found",
    ]


# ---- a slow API -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["read_hpa", "read_deployment", "list_pods", "list_hpa_events"])
def test_a_slow_api_fails_the_whole_run(call: str) -> None:
    slow = eks_client.KubernetesUnavailable(f"{call}: ReadTimeoutError: Read timed out. (read timeout=5)")
    with pytest.raises(eks_client.KubernetesUnavailable, match="ReadTimeoutError"):
        run(scale_up_cluster(ready=True), ScaleState(), 60, fail={call: slow})


def test_a_slow_confirming_read_defers_the_pod_to_the_next_run() -> None:
    state = steady_baseline()
    slow = eks_client.KubernetesUnavailable("read pod: ReadTimeoutError")
    observation, state, _ = run(scale_up_cluster(ready=True), state, 60, fail={"read_pod": slow})
    assert observation.pod_startup_s == []
    assert observation.time_to_scale_s == [42.0], "the scale-up itself does not need the confirmation"
    observation, state, _ = run(scale_up_cluster(ready=True), state, 120)
    assert sorted(observation.pod_startup_s) == [28.0, 41.0]


def test_a_run_short_of_time_defers_the_confirming_reads() -> None:
    state = steady_baseline()
    observation, _, reader = run(scale_up_cluster(ready=True), state, 60, time_left=lambda: 3.0)
    assert "read_pod" not in reader.calls
    assert observation.pod_startup_s == []
    assert sum("deferred to the next run (time budget)" in note for note in observation.notes) == 2


# ---- the state -------------------------------------------------------------------------------------------------


def test_state_round_trips_through_json() -> None:
    state = ScaleState(
        events={fx.EVENT_UP: (2, 1.5)},
        pods={fx.UID_A: PodMemory(3, True, 9.0)},
        scale_ups=[OpenScaleUp("k:1", 2.0, 4)],
        updated_at=10.0,
    )
    assert ScaleState.from_json(state.to_json()) == state


@pytest.mark.parametrize("text", ["", "[]", '{"v": 2}', '{"v": 1, "events": {"u": [1]}, "pods": {}, "scale_ups": []}'])
def test_an_unreadable_state_is_a_typed_error(text: str) -> None:
    with pytest.raises(StateUnreadable):
        ScaleState.from_json(text)
