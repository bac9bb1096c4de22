"""Scale-event logic on Kubernetes API objects: decisions counted once from the HPA's status whatever the
event recorder did (folded, re-created, combined, events.k8s.io series, dropped), time to scale from the
signal to NLB-healthy pods and its parts, unserved scale-ups, ordering errors, restarts, pending GPU pods,
a pod vanishing mid-read, a slow API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lambdas.common import eks_client
from lambdas.scale_events.collector import ScaleObservation, collect, rescale_direction, signal_crossing
from lambdas.scale_events.errors import StateUnreadable
from lambdas.scale_events.kube import SignalReader
from lambdas.scale_events.state import OpenScaleUp, PodMemory, ScaleState
from tests.unit.lambdas import k8s_fixtures as fx
from tests.unit.lambdas import scale_fixtures as sf

LOOKBACK = 900.0
DEADLINE = 120.0
TARGET_US = 30_000.0


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
        deadline_s=DEADLINE,
        time_left=time_left,
    )
    # Every run's state is saved as JSON: make the tests do the same.
    return observation, ScaleState.from_json(state.to_json()), reader


def steady_baseline(at_s: float = -60) -> ScaleState:
    observation, state, _ = run(steady_cluster(), None, at_s)
    assert observation.baseline
    return state


def steady_cluster() -> fx.Cluster:
    """Two replicas; the HPA last scaled an hour before T0."""
    return fx.Cluster(hpa=fx.hpa(current=2, desired=2, last_scale_s=-3600))


def scale_up_cluster(ready: bool) -> fx.Cluster:
    """The HPA raised 2 -> 4 at T0 (status.lastScaleTime), with its Event; pods without readiness gates."""
    return fx.Cluster(
        deployment=fx.deployment(replicas=4, updated=4, ready=4 if ready else 2),
        hpa=fx.hpa(current=2 if not ready else 4, desired=4, last_scale_s=0),
        pods=[*fx.steady_pods(), *fx.scale_up_new_pods(ready=ready)],
        events=[fx.scale_up_event()],
    )


def replay(
    snapshots: list[tuple[float, sf.Snapshot]],
    *,
    signal: SignalReader | None = None,
    previous: ScaleState | None = None,
) -> tuple[list[ScaleObservation], ScaleState]:
    """Run the collector over recorded API snapshots, one run per (seconds after T0, snapshot)."""
    observations = []
    state = previous
    for at_s, snapshot in snapshots:
        observation, new_state = collect(
            sf.SnapshotReader(snapshot),
            namespace=fx.NAMESPACE,
            deployment_name=fx.DEPLOYMENT,
            hpa_name=fx.HPA,
            previous=state,
            now=fx.at(at_s),
            lookback_s=LOOKBACK,
            deadline_s=DEADLINE,
            signal=signal,
            signal_target=TARGET_US,
        )
        observations.append(observation)
        state = ScaleState.from_json(new_state.to_json())
    assert state is not None
    return observations, state


def totals(observations: list[ScaleObservation]) -> tuple[int, int, int]:
    return (
        sum(o.scale_ups for o in observations),
        sum(o.scale_downs for o in observations),
        sum(o.unserved_scale_ups for o in observations),
    )


UP = fx.QUEUE_SCALE_UP_REASON
DOWN = fx.SCALE_DOWN_REASON


def at_size(replicas: int, last_scale_s: float, events: list[sf.Obj] | None = None) -> sf.Snapshot:
    """The HPA settled at ``replicas`` (all serving), last scaled at ``last_scale_s``."""
    pods = sf.steady()
    for index in range(replicas - 2):
        suffix = f"n{index:04d}"
        pods.append(sf.pod(suffix, created_s=-600, scheduled_s=-599, containers_ready_s=-570, serving_s=-560))
    return sf.Snapshot(
        hpa=sf.hpa(current=replicas, desired=replicas, last_scale_s=last_scale_s),
        deployment=sf.deployment(replicas, replicas),
        pods=pods,
        events=events or [],
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
        ("(combined from similar events): New size: 3; reason: All metrics below target", (3, "down")),
        ("(combined from similar events): New size: 4; reason: cpu resource utilization above target", (4, "up")),
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
    assert (observation.current_replicas, observation.desired_replicas, observation.ready_replicas) == (4, 4, 4)
    assert observation.crash_looping_pods == 1
    assert (state.last_scale_time, state.desired) == (fx.at(0).timestamp(), 4)
    assert state.pods[fx.UID_CRASH].restarts == 5


# ---- counting each decision once (defects 1 and 2) ----------------------------------------------------------


def test_scale_up_counts_once_and_times_the_new_capacity() -> None:
    state = steady_baseline()
    observation, state, _ = run(scale_up_cluster(ready=False), state, 20)
    assert (observation.scale_ups, observation.scale_downs) == (1, 0)
    assert observation.time_to_scale_s == []
    assert [s.target for s in state.scale_ups] == [4]
    # No readiness gate and no signal reader here: serving = Ready, the clock starts at the decision.
    observation, state, reader = run(scale_up_cluster(ready=True), state, 60)
    assert observation.scale_ups == 0, "the same decision, already counted"
    assert observation.time_to_scale_s == [29.0], "the first added pod serving"
    assert observation.time_to_full_scale_s == [42.0], "all four serving"
    assert sorted(observation.pod_startup_s) == [28.0, 41.0]
    assert state.scale_ups == []
    assert reader.calls.count("read_pod") == 2
    observation, state, reader = run(scale_up_cluster(ready=True), state, 120)
    assert (observation.scale_ups, observation.container_restarts) == (0, 0)
    assert observation.time_to_scale_s == [] and observation.pod_startup_s == []


def test_a_new_event_uid_is_not_credited_with_its_whole_count() -> None:
    """The issue's run: a scale-up whose Event (first seen now) carries count 2 is one decision, not two."""
    state = steady_baseline()
    cluster = scale_up_cluster(ready=True)
    cluster.events = [fx.rescale_event(fx.EVENT_UP, new_size=4, reason=UP, at_s=0, count=2, first_s=-1800)]
    observation, _, _ = run(cluster, state, 30)
    assert observation.scale_ups == 1


def test_the_same_event_with_count_plus_one_an_hour_apart_counts_each_decision_once() -> None:
    """client-go folds an identical rescale into the same Event (same UID, count + 1) for as long as the
    object lives (up to the Event TTL, 1 h); the state's 15-minute memory forgot the UID in between."""
    first = sf.rescale("up", size=4, reason=UP, last_s=0)
    down = sf.rescale("down", size=2, reason=DOWN, last_s=1800)
    folded = sf.rescale("up", size=4, reason=UP, last_s=3600, count=2, first_s=0)
    runs = [
        (-60, at_size(2, -7200)),
        (60, at_size(4, 0, [first])),
        (1860, at_size(2, 1800, [first, down])),
        (3660, at_size(4, 3600, [down, folded])),
        (3720, at_size(4, 3600, [down, folded])),
    ]
    observations, _ = replay(runs)
    assert [(o.scale_ups, o.scale_downs) for o in observations[1:]] == [(1, 0), (0, 1), (1, 0), (0, 0)]


def test_an_event_recreated_after_the_ttl_with_its_carried_count_counts_once() -> None:
    """After the API server deletes the Event (TTL), the recorder's cache still holds its count: the
    patch gets 404 and it creates the Event again, a new UID, with count + 1."""
    recreated = sf.rescale("up-again", size=4, reason=UP, last_s=7200, count=3, first_s=7200)
    runs = [(7100, at_size(2, 3600)), (7230, at_size(4, 7200, [recreated])), (7290, at_size(4, 7200, [recreated]))]
    observations, _ = replay(runs)
    assert totals(observations[1:]) == (1, 0, 0)


def test_a_combined_message_gives_the_direction_when_the_size_came_back() -> None:
    """Up 2 -> 3, down, up to 3 again between two runs: desiredReplicas is 3 both times; the one decision
    the status shows is named by the aggregated Event "(combined from similar events): New size: 3 ..."."""
    combined = sf.rescale("cmb", size=3, reason=UP, last_s=50, count=1, first_s=50, combined=True)
    runs = [(0, at_size(3, -300)), (60, at_size(3, 50, [combined]))]
    observations, _ = replay(runs)
    assert totals(observations[1:]) == (1, 0, 0)
    assert not any("direction unknown" in note for note in observations[1].notes)


def test_an_events_k8s_io_series_is_read_too() -> None:
    series = sf.series_event("ser", size=3, reason=DOWN, first_s=-900, last_s=50, count=4)
    runs = [(0, at_size(3, -300)), (60, at_size(3, 50, [series]))]
    observations, _ = replay(runs)
    assert totals(observations[1:]) == (0, 1, 0)


def test_a_scale_up_whose_event_was_dropped_is_still_counted() -> None:
    """The recorder's spam filter (a token bucket per object) may drop an Event: the status still counts."""
    runs = [(-60, at_size(2, -3600)), (30, at_size(4, 10, []))]
    observations, _ = replay(runs)
    assert totals(observations[1:]) == (1, 0, 0)
    assert any("no matching event" in note for note in observations[1].notes)


def test_a_deployment_scaled_behind_the_hpas_back_is_noted_not_counted() -> None:
    snapshot = at_size(2, -3600)
    snapshot.deployment = sf.deployment(3, 2)
    observations, _ = replay([(-60, at_size(2, -3600)), (0, snapshot)])
    assert totals(observations[1:]) == (0, 0, 0)
    assert any("differs from the HPA's desiredReplicas" in note for note in observations[1].notes)


# ---- time to scale: signal -> NLB-healthy pods, and its parts (defect 4) --------------------------------------


def _burst_snapshot(serving_c: float | None, serving_d: float | None) -> sf.Snapshot:
    """2 -> 4 at T0; pods c, d scheduled at 2 and 3 s, containers ready 29 and 42 s, NLB healthy when given."""
    new = [
        sf.pod("ccccc", created_s=1, scheduled_s=2, containers_ready_s=29, serving_s=serving_c),
        sf.pod("ddddd", created_s=1, scheduled_s=3, containers_ready_s=42, serving_s=serving_d),
    ]
    serving = 2 + sum(1 for s in (serving_c, serving_d) if s is not None)
    return sf.Snapshot(
        hpa=sf.hpa(current=2, desired=4, last_scale_s=0),
        deployment=sf.deployment(4, serving),
        pods=[*sf.steady(), *new],
        events=[sf.rescale("up", size=4, reason=UP, last_s=0)],
    )


def _signal(crossing_s: float) -> sf.RecordedSignal:
    """Rule evaluations every 10 s: below target until ``crossing_s``, above from then on."""
    return sf.RecordedSignal(
        [(fx.at(t).timestamp(), 12_000.0 if t < crossing_s else 55_000.0) for t in range(-300, 300, 10)]
    )


def test_time_to_scale_runs_from_the_signal_crossing_to_nlb_healthy_pods_and_its_parts_add_up() -> None:
    signal = _signal(crossing_s=-40)
    runs = [(-60, at_size(2, -3600)), (30, _burst_snapshot(None, None)), (90, _burst_snapshot(45, 58))]
    observations, state = replay(runs, signal=signal)
    served = observations[2]
    assert served.time_to_scale_s == [85.0], "-40 s (signal above target) to 45 s (1st added pod's NLB target healthy)"
    assert served.time_to_full_scale_s == [98.0], "to 58 s: the 4th pod's NLB target healthy"
    parts = (
        served.signal_to_decision_s,
        served.decision_to_scheduled_s,
        served.scheduled_to_ready_s,
        served.ready_to_serving_s,
    )
    assert parts == ([40.0], [2.0], [27.0], [16.0])
    assert sum(p[0] for p in parts) == served.time_to_scale_s[0]
    assert state.scale_ups == []
    assert signal.calls == [(fx.at(0).timestamp() - DEADLINE, fx.at(0).timestamp())], "read once, at the decision"


def test_a_pod_ready_but_not_yet_registered_with_the_nlb_does_not_serve() -> None:
    runs = [(-60, at_size(2, -3600)), (50, _burst_snapshot(None, None)), (70, _burst_snapshot(None, 65))]
    observations, state = replay(runs, signal=_signal(-40))
    assert observations[1].time_to_scale_s == [], "containers ready at 29 and 42 s, no NLB target healthy yet"
    assert observations[2].time_to_scale_s == [105.0] and observations[2].ready_to_serving_s == [23.0]
    assert observations[2].time_to_full_scale_s == []
    assert [s.target for s in state.scale_ups] == [4]


def test_a_refused_signal_read_times_from_the_decision_and_says_so() -> None:
    class Refused:
        def samples(self, start: float, end: float) -> list[tuple[float, float]]:
            raise eks_client.KubernetesAuthError("query the scaling signal: HTTP 403 Forbidden")

    observations, _ = replay(
        [(-60, at_size(2, -3600)), (30, _burst_snapshot(None, None)), (90, _burst_snapshot(45, 58))],
        signal=Refused(),
    )
    assert observations[1].signal_unavailable == 1
    assert observations[2].time_to_scale_s == [45.0] and observations[2].signal_to_decision_s == []


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([(0, 1.0), (10, 5.0), (20, 6.0)], 10.0),
        ([(0, 5.0), (10, 1.0), (20, 5.0), (30, 6.0)], 20.0),  # the latest crossing before the decision
        ([(0, 5.0), (10, 6.0)], 0.0),  # above since the window began
        ([(0, 1.0), (10, 2.0)], None),  # never above: a CPU-driven decision
        ([(0, 1.0), (40, 5.0)], None),  # crossed only after the decision
    ],
)
def test_signal_crossing(samples: list[tuple[float, float]], expected: float | None) -> None:
    assert signal_crossing(samples, 4.0, decision=30.0) == expected


def test_a_negative_interval_is_an_ordering_error_not_zero() -> None:
    """A pod Ready before it was scheduled (skewed clocks): logged and counted, never published as 0."""
    state = steady_baseline()
    skewed = fx.pod(f"{fx.DEPLOYMENT}-5d8f7c9b6d-skewd", uid=fx.UID_C, created_s=1, scheduled_s=30, ready_s=25)
    cluster = steady_cluster()
    cluster.pods.append(skewed)
    observation, _, _ = run(cluster, state, 60)
    assert observation.pod_scheduled_to_ready_s == []
    assert observation.ordering_errors == 1
    assert any("ordering error" in note for note in observation.notes)


# ---- unserved scale-ups (defect 3) -------------------------------------------------------------------------


def test_a_scale_up_not_served_by_its_deadline_is_published_once_then_timed_when_served() -> None:
    state = steady_baseline()
    observation, state, _ = run(scale_up_cluster(ready=False), state, 60)
    assert observation.unserved_scale_ups == 0
    observation, state, _ = run(scale_up_cluster(ready=False), state, DEADLINE + 30)
    assert observation.unserved_scale_ups == 1
    assert any("unserved" in note for note in observation.notes)
    observation, state, _ = run(scale_up_cluster(ready=False), state, DEADLINE + 90)
    assert observation.unserved_scale_ups == 0, "flagged once"
    late = scale_up_cluster(ready=True)
    late.pods[-2] = fx.pod(f"{fx.DEPLOYMENT}-5d8f7c9b6d-ccccc", uid=fx.UID_C, created_s=1, scheduled_s=2, ready_s=200)
    late.pods[-1] = fx.pod(f"{fx.DEPLOYMENT}-5d8f7c9b6d-ddddd", uid=fx.UID_D, created_s=1, scheduled_s=3, ready_s=210)
    observation, state, _ = run(late, state, 240)
    assert observation.time_to_scale_s == [200.0], "published late: the alarm already fired on the unserved one"
    assert observation.time_to_full_scale_s == [210.0]
    assert state.scale_ups == []


def test_a_scale_up_never_served_is_flagged_then_forgotten() -> None:
    state = steady_baseline()
    observations = []
    for at_s in range(20, int(LOOKBACK) + 121, 60):
        observation, state, _ = run(scale_up_cluster(ready=False), state, at_s)
        observations.append(observation)
    assert sum(o.unserved_scale_ups for o in observations) == 1
    assert state.scale_ups == []
    assert all(o.time_to_scale_s == [] for o in observations)


def test_a_scale_up_overtaken_by_a_scale_down_is_published_as_unserved() -> None:
    state = steady_baseline()
    _, state, _ = run(scale_up_cluster(ready=False), state, 20)
    cluster = scale_up_cluster(ready=False)
    cluster.hpa = fx.hpa(current=4, desired=3, last_scale_s=100)
    cluster.events.append(fx.scale_down_event(at_s=100))
    observation, state, _ = run(cluster, state, 110)
    assert (observation.scale_downs, observation.unserved_scale_ups) == (1, 1)
    assert observation.time_to_scale_s == []
    assert state.scale_ups == []


# ---- restarts ------------------------------------------------------------------------------------------------


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
        deadline_s=DEADLINE,
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
    assert observation.time_to_scale_s == [29.0], "the scale-up itself does not need the confirmation"
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
        last_scale_time=5.0,
        desired=4,
        pods={fx.UID_A: PodMemory(restarts=2, startup_reported=True, seen_at=3.0)},
        scale_ups=[OpenScaleUp("hpa:5", 5.0, 4, signal_at=-35.0, unserved_reported=True, base=2, first_reported=True)],
        updated_at=6.0,
    )
    assert ScaleState.from_json(state.to_json()) == state


@pytest.mark.parametrize("text", ["", "[]", '{"v": 1, "events": {}}', '{"v": 2, "hpa": [1]}'])
def test_an_unreadable_state_is_a_typed_error(text: str) -> None:
    with pytest.raises(StateUnreadable):
        ScaleState.from_json(text)
