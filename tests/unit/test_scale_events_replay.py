"""Replay: the autoscaling simulator's node-burst timeline (shipped configuration) as the Kubernetes
objects the API server would hold each minute (HPA, Deployment, pods behind the NLB readiness gate,
the HPA's rescale Events, strictly schema-valid) and the Prometheus answers for the scaling signal,
fed minute by minute through the real handler with its DynamoDB state (moto). What it publishes
must be exactly the timeline's decisions, once, and a time to scale equal to the simulator's
"enough capacity after" within one HPA sync period."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import kubernetes_validate
import pytest
from moto import mock_aws

from cdk_app.autoscaling_sim.load import DEFAULT_CAPACITY_FILE, PodCapacity, profiles
from cdk_app.autoscaling_sim.scenarios import shipped, simulation_parameters
from cdk_app.autoscaling_sim.simulate import SimulationResult, Summary, simulate, summarise
from cdk_app.config import load_config
from lambdas.scale_events import handler
from lambdas.scale_events.config import ScaleEventsConfig
from lambdas.scale_events.state import DynamoStateStore
from tests.unit.lambdas import k8s_fixtures as fx
from tests.unit.lambdas import scale_fixtures as sf
from tests.unit.lambdas.test_health_check_handler import emf, values
from tests.unit.lambdas.test_scale_events_handler import ENV, TABLE

CONFIG = load_config("dev")
SIGNAL_ENV = {
    "SIGNAL_SERVICE": "monitoring/http:prometheus-server:80",
    "SIGNAL_QUERY": 'avg(radstream:triton_queue_time_per_request_us{namespace="radstream"})',
    "SIGNAL_TARGET": str(CONFIG.autoscaling.queue_time_target_us),
    "SIGNAL_STEP_SECONDS": str(CONFIG.monitoring.rule_evaluation_interval_seconds),
    "SCALE_UP_DEADLINE_SECONDS": str(CONFIG.observability.time_to_scale_seconds),
}
LAMBDA_CONFIG = ScaleEventsConfig.from_env({**ENV, **SIGNAL_ENV})
RUN_EVERY_S = 60


@pytest.fixture(scope="module")
def node_burst() -> tuple[SimulationResult, Summary]:
    capacity = PodCapacity.load(DEFAULT_CAPACITY_FILE)
    result = simulate(shipped(CONFIG), profiles(capacity)["node-burst"], capacity, simulation_parameters(CONFIG))
    return result, summarise(result)


def rescales(result: SimulationResult) -> list[Any]:
    return [d for d in result.decisions if d.rescale]


def snapshot(result: SimulationResult, now: float) -> sf.Snapshot:
    """What the API server holds at simulated second ``now``."""
    made = [d for d in rescales(result) if d.time <= now]
    sample = result.timeline[int(now)]
    last = made[-1] if made else None
    hpa = sf.hpa(
        current=sample.pods,
        desired=sample.desired,
        last_scale_s=last.time if last is not None else -3600,
    )
    pods = []
    for index, pod in enumerate(result.pods):
        if pod.created_at > now or (pod.deleted_at is not None and pod.deleted_at <= now):
            continue
        bound = pod.bound_at if pod.bound_at is not None and pod.bound_at <= now else None
        ready = pod.ready_at if pod.ready_at is not None and pod.ready_at <= now else None
        # The simulator's Ready is "receives traffic": the NLB readiness gate passes with it.
        pods.append(
            sf.pod(
                f"p{index:04d}", created_s=pod.created_at, scheduled_s=bound, containers_ready_s=ready, serving_s=ready
            )
        )
    # client-go's recorder: an identical message folds into the same Event (count + 1).
    events: dict[str, sf.Obj] = {}
    for decision in made:
        message = (decision.desired_replicas, decision.reason)
        key = f"r{decision.desired_replicas}{'u' if 'above' in decision.reason else 'd'}"
        before = events.get(key)
        events[key] = sf.rescale(
            key,
            size=message[0],
            reason=message[1],
            last_s=decision.time,
            count=1 if before is None else before["count"] + 1,
            first_s=None if before is None else decision.time,
        )
    return sf.Snapshot(
        hpa=hpa, deployment=sf.deployment(sample.desired, sample.ready), pods=pods, events=list(events.values())
    )


def signal_samples(result: SimulationResult) -> list[tuple[float, float]]:
    """The recorded signal: the simulator's queue signal at each HPA sync describes the window ending
    ``custom_metrics_delay_s`` earlier (scrape, rule evaluation, adapter); that is the evaluation time."""
    delay = result.parameters.custom_metrics_delay_s
    return [(fx.at(at - delay).timestamp(), queue) for at, queue, _cpu in result.signals if queue is not None]


@pytest.fixture(autouse=True)
def clean_metrics() -> Iterator[None]:
    yield
    handler.metrics.clear_metrics()
    handler.metrics.clear_default_dimensions()  # Powertools shares them across Metrics instances


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def replay(result: SimulationResult, client: Any, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    store = DynamoStateStore(client, TABLE, key="dev#radstream/triton-hpa", ttl_seconds=7200)
    signal = sf.RecordedSignal(signal_samples(result))
    documents = []
    end = int(result.load_end) + 600
    for now in range(result.onset - RUN_EVERY_S, end, RUN_EVERY_S):
        state = snapshot(result, now)
        handler.metrics.clear_metrics()
        handler.metrics.namespace = LAMBDA_CONFIG.metrics_namespace
        outcome = handler.run(
            LAMBDA_CONFIG, lambda s=state: sf.SnapshotReader(s), store, fx.at(now), signal_factory=lambda: signal
        )
        assert outcome["ok"], outcome
        handler.metrics.flush_metrics()
        [document] = emf(capsys.readouterr().out)
        documents.append(document)
    return documents


def total(documents: list[dict[str, Any]], name: str) -> list[float]:
    return [v for d in documents if name in d for v in values(d, name)]


def test_the_recorded_objects_are_schema_valid(node_burst: tuple[SimulationResult, Summary]) -> None:
    result, _ = node_burst
    for now in (result.onset, rescales(result)[0].time + 30, result.load_end + 300):
        for obj in snapshot(result, now).objects():
            kubernetes_validate.validate(obj, "1.36.0", strict=True)


def test_node_burst_replay_publishes_each_decision_once_and_the_simulators_time_to_capacity(
    node_burst: tuple[SimulationResult, Summary], table: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    result, summary = node_burst
    decisions = rescales(result)
    ups = [d for d in decisions if d.desired_replicas > d.current_replicas]
    downs = [d for d in decisions if d.desired_replicas < d.current_replicas]
    assert (len(ups), len(downs)) == (1, 2), "the timeline: one scale-up (2 -> 4), two one-pod scale-downs"
    documents = replay(result, table, capsys)
    assert all(d["Stage"] == "dev" for d in documents)
    counted = documents[1:]  # the first run records the baseline
    assert sum(total(counted, "ScaleUpEvents")) == len(ups)
    assert sum(total(counted, "ScaleDownEvents")) == len(downs)
    assert sum(total(counted, "UnservedScaleUps")) == 0
    assert sum(total(counted, "OrderingErrors")) == 0
    [time_to_scale] = total(counted, "TimeToScaleSeconds")
    assert summary.time_to_capacity_s is not None
    assert abs(time_to_scale - summary.time_to_capacity_s) <= CONFIG.capacity_timing.hpa_sync_seconds
    parts = [
        total(counted, name)
        for name in (
            "SignalToDecisionSeconds",
            "DecisionToScheduledSeconds",
            "ScheduledToReadySeconds",
            "ReadyToServingSeconds",
        )
    ]
    assert all(len(part) == 1 for part in parts)
    assert sum(part[0] for part in parts) == pytest.approx(time_to_scale)
    [full] = total(counted, "TimeToFullScaleSeconds")
    assert full > CONFIG.observability.time_to_scale_seconds, "the 4th pod waited for a new GPU node"
    print(
        f"replay: time to scale {time_to_scale:.0f} s (simulator: enough capacity after "
        f"{summary.time_to_capacity_s:.0f} s), parts {[p[0] for p in parts]}, all pods serving {full:.0f} s"
    )
