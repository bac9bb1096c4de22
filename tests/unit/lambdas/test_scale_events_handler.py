"""The scale-events handler: EMF metrics (with the Stage dimension), DynamoDB state (moto: versioned
conditional writes, a lost race), failures, the real reader."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambdas.common import eks_client
from lambdas.common.env import ConfigurationError
from lambdas.scale_events import handler
from lambdas.scale_events.config import ScaleEventsConfig
from lambdas.scale_events.errors import InvalidEventError, StateConflict, StateError
from lambdas.scale_events.kube import ApiScaleReader, parse_range_answer
from lambdas.scale_events.state import DynamoStateStore, Loaded, ScaleState
from tests.unit.lambdas import k8s_fixtures as fx
from tests.unit.lambdas.test_health_check_handler import SCHEDULED, Context, emf, metric_names, values
from tests.unit.lambdas.test_scale_events_collector import FakeScaleReader, scale_up_cluster, steady_cluster

REPO_ROOT = Path(__file__).resolve().parents[3]
TABLE = "radstream-dev-scale-events-state"
ENV = {
    "CLUSTER_NAME": "radstream-cluster",
    "CLUSTER_ENDPOINT": "https://ABCDEF.gr7.us-east-1.eks.amazonaws.com",
    "CLUSTER_CA": "Y2E=",
    "AWS_REGION": "us-east-1",
    "NAMESPACE": fx.NAMESPACE,
    "DEPLOYMENT_NAME": fx.DEPLOYMENT,
    "HPA_NAME": fx.HPA,
    "METRICS_NAMESPACE": "RadStream/Hooks",
    "STAGE": "dev",
    "STATE_TABLE_NAME": TABLE,
}
CONFIG = ScaleEventsConfig.from_env(ENV)
CONTEXT = Context(
    function_name="radstream-scale-events",
    invoked_function_arn="arn:aws:lambda:us-east-1:111122223333:function:radstream-scale-events",
)


class MemoryStore:
    def __init__(self, text: str | None = None, fail_save: bool = False) -> None:
        self.text = text
        self.version = 0 if text is None else 1
        self.fail_save = fail_save
        self.saves = 0

    def load(self) -> Loaded:
        if self.text is None:
            return Loaded(None, 0)
        try:
            return Loaded(ScaleState.from_json(self.text), self.version)
        except StateError:
            return Loaded(None, self.version)

    def save(self, state: ScaleState, expected_version: int, now: float) -> None:
        if self.fail_save:
            raise StateError(f"cannot save the state to {TABLE}: ThrottlingException")
        if expected_version != self.version:
            raise StateConflict(f"state version {expected_version} was overwritten by another run")
        self.saves += 1
        self.version += 1
        self.text = state.to_json()


@pytest.fixture(autouse=True)
def clean_metrics() -> Iterator[None]:
    handler.metrics.clear_metrics()
    handler.metrics.namespace = CONFIG.metrics_namespace
    yield
    handler.metrics.clear_metrics()
    handler.metrics.clear_default_dimensions()  # Powertools shares them across Metrics instances


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {**ENV, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def _flush(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    handler.metrics.flush_metrics()
    [document] = emf(capsys.readouterr().out)
    return document


# ---- configuration and events -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["HPA_NAME", "STATE_TABLE_NAME", "STAGE", "CLUSTER_CA", "METRICS_NAMESPACE"])
def test_a_missing_variable_is_named(name: str) -> None:
    with pytest.raises(ConfigurationError, match=f"environment variable {name} is not set"):
        ScaleEventsConfig.from_env({k: v for k, v in ENV.items() if k != name})


def test_the_look_back_window_must_cover_two_runs() -> None:
    with pytest.raises(ConfigurationError, match="LOOKBACK_SECONDS=60 must be at least 120"):
        ScaleEventsConfig.from_env({**ENV, "LOOKBACK_SECONDS": "60"})


@pytest.mark.parametrize("event", [SCHEDULED, {}, None])
def test_scheduled_and_manual_events_are_accepted(event: Any) -> None:
    handler.validate_event(event)


@pytest.mark.parametrize("event", [[], {"source": "aws.s3"}, {**SCHEDULED, "detail-type": "Object Created"}])
def test_other_events_are_rejected(event: Any) -> None:
    with pytest.raises(InvalidEventError):
        handler.validate_event(event)


# ---- runs ---------------------------------------------------------------------------------------------------


def test_a_first_run_publishes_gauges_only(capsys: pytest.CaptureFixture[str]) -> None:
    store = MemoryStore()
    cluster = fx.Cluster(pods=[*fx.steady_pods(), fx.pending_gpu_pod()])
    result = handler.run(CONFIG, lambda: FakeScaleReader(cluster), store, fx.at(60))
    assert result["ok"] and result["baseline"]
    assert store.saves == 1
    document = _flush(capsys)
    assert metric_names(document) == {
        "CurrentReplicas",
        "DesiredReplicas",
        "ReadyReplicas",
        "PendingGpuPods",
        "UnschedulableGpuPods",
        "CrashLoopingPods",
    }
    assert values(document, "PendingGpuPods") == [1.0]
    assert document["service"] == "radstream-scale-events"
    assert document["Stage"] == "dev"
    assert [sorted(d) for d in document["_aws"]["CloudWatchMetrics"][0]["Dimensions"]] == [["Stage", "service"]]


def test_scale_up_metrics_across_runs(capsys: pytest.CaptureFixture[str]) -> None:
    store = MemoryStore()
    handler.run(CONFIG, lambda: FakeScaleReader(steady_cluster()), store, fx.at(-60))
    _flush(capsys)

    handler.run(CONFIG, lambda: FakeScaleReader(scale_up_cluster(ready=False)), store, fx.at(20))
    document = _flush(capsys)
    assert values(document, "ScaleUpEvents") == [1.0]
    assert values(document, "ScaleDownEvents") == [0.0]
    assert (values(document, "CurrentReplicas"), values(document, "DesiredReplicas")) == ([2.0], [4.0])
    assert "TimeToScaleSeconds" not in document

    handler.run(CONFIG, lambda: FakeScaleReader(scale_up_cluster(ready=True)), store, fx.at(60))
    document = _flush(capsys)
    assert values(document, "ScaleUpEvents") == [0.0]
    assert values(document, "TimeToScaleSeconds") == [29.0]
    assert values(document, "TimeToFullScaleSeconds") == [42.0]
    assert sorted(values(document, "PodStartupSeconds")) == [28.0, 41.0]
    assert sorted(values(document, "PodScheduledToReadySeconds")) == [27.0, 39.0]
    units = {m["Name"]: m["Unit"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units["TimeToScaleSeconds"] == "Seconds" and units["ScaleUpEvents"] == "Count"


def test_a_slow_api_publishes_a_collection_failure_and_saves_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    store = MemoryStore(ScaleState().to_json())
    slow = eks_client.KubernetesUnavailable("list pods in radstream: ReadTimeoutError: Read timed out.")
    reader = FakeScaleReader(scale_up_cluster(ready=True), fail={"list_pods": slow})
    result = handler.run(CONFIG, lambda: reader, store, fx.at(60))
    assert result == {"ok": False, "reason": "list pods in radstream: ReadTimeoutError: Read timed out."}
    assert store.saves == 0
    document = _flush(capsys)
    assert metric_names(document) == {"CollectionFailures"}


def test_nothing_is_published_when_the_state_cannot_be_saved(capsys: pytest.CaptureFixture[str]) -> None:
    store = MemoryStore(ScaleState().to_json(), fail_save=True)
    result = handler.run(CONFIG, lambda: FakeScaleReader(scale_up_cluster(ready=True)), store, fx.at(60))
    assert result["ok"] is False and "ThrottlingException" in result["reason"]
    assert metric_names(_flush(capsys)) == {"CollectionFailures"}


def test_an_unreadable_state_starts_a_new_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    store = MemoryStore('{"v": 1, "events": {}}')  # what the SSM-era version wrote
    result = handler.run(CONFIG, lambda: FakeScaleReader(scale_up_cluster(ready=True)), store, fx.at(60))
    assert result["ok"] and result["baseline"]
    assert "ScaleUpEvents" not in metric_names(_flush(capsys))
    assert store.load().state is not None


def test_the_handler_counts_once_with_its_state_in_dynamodb(
    aws: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three invocations through the real handler, DynamoDB (moto) holding the state: the scale-up once."""
    clusters = iter([steady_cluster(), scale_up_cluster(ready=False), scale_up_cluster(ready=False)])
    monkeypatch.setattr(handler, "build_reader", lambda config: FakeScaleReader(next(clusters)))
    minutes = iter([fx.at(-60), fx.at(20), fx.at(80)])
    monkeypatch.setattr(handler, "utc_now", lambda: next(minutes))
    published = []
    for _ in range(3):
        result = handler.handler(SCHEDULED, CONTEXT)
        assert result["ok"]
        [document] = emf(capsys.readouterr().out)
        assert document["Stage"] == "dev"
        published.append(values(document, "ScaleUpEvents") if "ScaleUpEvents" in document else None)
    assert published == [None, [1.0], [0.0]]
    [item] = aws.scan(TableName=TABLE)["Items"]
    assert item["version"] == {"N": "3"}
    assert int(item["expires_at"]["N"]) >= fx.at(80).timestamp() + 3600, "outlives the Event TTL"
    assert ScaleState.from_json(item["state"]["S"]).last_scale_time == fx.at(0).timestamp()


def _store(client: Any) -> DynamoStateStore:
    return DynamoStateStore(client, TABLE, key="dev#radstream/triton-hpa", ttl_seconds=7200)


def test_dynamodb_store_round_trip_with_versions(aws: Any) -> None:
    store = _store(aws)
    assert store.load() == Loaded(None, 0)
    state = ScaleState(last_scale_time=2.0, desired=4, updated_at=3.0)
    store.save(state, 0, now=10.0)
    assert store.load() == Loaded(state, 1)
    store.save(state, 1, now=70.0)
    assert store.load().version == 2


def test_a_run_that_lost_the_race_saves_and_publishes_nothing(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Two deliveries of the same minute (a retry, a duplicate): both load version 1, the first saves and
    publishes the scale-up; the second's conditional write fails and it publishes nothing."""
    store = _store(aws)
    handler.run(CONFIG, lambda: FakeScaleReader(steady_cluster()), store, fx.at(-60))
    _flush(capsys)

    class Slow:
        """The second run's store: loads now, saves after the first run has saved."""

        def __init__(self) -> None:
            self.loaded = store.load()

        def load(self) -> Loaded:
            return self.loaded

        def save(self, state: ScaleState, expected_version: int, now: float) -> None:
            store.save(state, expected_version, now)

    second = Slow()
    first = handler.run(CONFIG, lambda: FakeScaleReader(scale_up_cluster(ready=False)), store, fx.at(20))
    assert first["ok"] and first["scale_ups"] == 1
    assert values(_flush(capsys), "ScaleUpEvents") == [1.0]
    lost = handler.run(CONFIG, lambda: FakeScaleReader(scale_up_cluster(ready=False)), second, fx.at(21))
    assert lost["ok"] is False and "overwritten by another run" in lost["reason"]
    handler.metrics.flush_metrics()
    assert emf(capsys.readouterr().out) == [], "no metric at all: not the scale-up again, not a failure"
    assert store.load().version == 2


def test_a_first_save_loses_to_another_first_save(aws: Any) -> None:
    store = _store(aws)
    store.save(ScaleState(updated_at=1.0), 0, now=1.0)
    with pytest.raises(StateConflict):
        store.save(ScaleState(updated_at=2.0), 0, now=2.0)


def test_dynamodb_failures_are_state_errors(aws: Any) -> None:
    store = DynamoStateStore(aws, "no-such-table", key="k", ttl_seconds=7200)
    with pytest.raises(StateError):
        store.load()
    with pytest.raises(StateError):
        store.save(ScaleState(), 0, now=1.0)


@pytest.mark.parametrize("ttl", ["600", "3599"])
def test_the_state_ttl_must_outlive_the_event_ttl(ttl: str) -> None:
    with pytest.raises(ConfigurationError, match="Event TTL"):
        ScaleEventsConfig.from_env({**ENV, "STATE_TTL_SECONDS": ttl})


def test_the_signal_settings_come_all_or_none() -> None:
    with pytest.raises(ConfigurationError, match="or none of them"):
        ScaleEventsConfig.from_env({**ENV, "SIGNAL_QUERY": "avg(x)"})
    config = ScaleEventsConfig.from_env(
        {
            **ENV,
            "SIGNAL_SERVICE": "monitoring/http:prometheus-server:80",
            "SIGNAL_QUERY": "avg(x)",
            "SIGNAL_TARGET": "30000",
            "SIGNAL_STEP_SECONDS": "10",
        }
    )
    assert config.signal is not None and config.signal.target == 30000.0


def test_a_prometheus_error_answer_is_unavailable() -> None:
    with pytest.raises(eks_client.KubernetesUnavailable):
        parse_range_answer({"status": "error", "errorType": "bad_data", "error": "parse error"})
    assert parse_range_answer({"status": "success", "data": {"resultType": "matrix", "result": []}}) == []


# ---- the real reader (kubernetes client) against a loopback API server ------------------------------------------


def _real_reader(server: fx.FakeApiServer, timeout_s: float = 5) -> ApiScaleReader:
    return ApiScaleReader(eks_client.build_api_client(server.url, None, lambda: "k8s-aws-v1.t"), timeout_s)


def test_the_real_reader_reads_what_the_collector_needs() -> None:
    cluster = scale_up_cluster(ready=True)
    cluster.events.append(fx.rescale_event("9e0f1a2b-0000-4000-8000-0000000000f0", new_size=9, reason="x", at_s=5))
    cluster.events[-1]["involvedObject"]["name"] = "another-hpa"
    with fx.FakeApiServer(cluster).running() as server:
        reader = _real_reader(server)
        assert reader.read_hpa(fx.NAMESPACE, fx.HPA).status.desired_replicas == 4
        events = reader.list_hpa_events(fx.NAMESPACE, fx.HPA)
        assert [e.metadata.uid for e in events] == [fx.EVENT_UP]
        pods = reader.list_pods(fx.NAMESPACE, fx.SELECTOR)
        assert len(pods) == 4
        assert reader.read_pod(fx.NAMESPACE, pods[0].metadata.name).metadata.uid == pods[0].metadata.uid
    paths = {path: query for path, _, query in cluster.requests}
    assert paths[f"/api/v1/namespaces/{fx.NAMESPACE}/pods"]["resourceVersion"] == ["0"]
    assert paths[f"/api/v1/namespaces/{fx.NAMESPACE}/events"]["fieldSelector"] == [
        f"involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name={fx.HPA},reason=SuccessfulRescale"
    ]


def test_the_real_reader_maps_a_vanished_pod_to_not_found() -> None:
    cluster = scale_up_cluster(ready=True)
    name = cluster.pods[2]["metadata"]["name"]
    cluster.vanished = {name}
    with (
        fx.FakeApiServer(cluster).running() as server,
        pytest.raises(eks_client.KubernetesNotFound, match=f"read pod radstream/{name}: HTTP 404"),
    ):
        _real_reader(server).read_pod(fx.NAMESPACE, name)


def test_the_real_reader_bounds_a_slow_api() -> None:
    cluster = fx.Cluster(delay_s=3.0)
    with fx.FakeApiServer(cluster).running() as server:
        started = time.monotonic()
        with pytest.raises(eks_client.KubernetesUnavailable, match="read hpa radstream/triton-hpa"):
            _real_reader(server, timeout_s=0.3).read_hpa(fx.NAMESPACE, fx.HPA)
        assert time.monotonic() - started < 2.0


def test_a_full_run_over_the_real_reader(capsys: pytest.CaptureFixture[str]) -> None:
    store = MemoryStore(ScaleState(last_scale_time=-3600.0, desired=2).to_json())
    with fx.FakeApiServer(scale_up_cluster(ready=True)).running() as server:
        result = handler.run(CONFIG, lambda: _real_reader(server), store, fx.at(60))
    assert result["ok"] and result["scale_ups"] == 1 and result["time_to_scale_s"] == [29.0]
    assert sorted(values(_flush(capsys), "PodStartupSeconds")) == [28.0, 41.0]
