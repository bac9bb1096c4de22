"""The scale-events handler: EMF metrics, SSM state (moto), failures, the real reader."""

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
from lambdas.scale_events.errors import InvalidEventError, StateError
from lambdas.scale_events.kube import ApiScaleReader
from lambdas.scale_events.state import ScaleState, SsmStateStore
from tests.unit.lambdas import k8s_fixtures as fx
from tests.unit.lambdas.test_health_check_handler import SCHEDULED, Context, emf, metric_names, values
from tests.unit.lambdas.test_scale_events_collector import FakeScaleReader, scale_up_cluster

REPO_ROOT = Path(__file__).resolve().parents[3]
PARAMETER = "/radstream/dev/scale-events-state"
ENV = {
    "CLUSTER_NAME": "radstream-cluster",
    "CLUSTER_ENDPOINT": "https://ABCDEF.gr7.us-east-1.eks.amazonaws.com",
    "CLUSTER_CA": "Y2E=",
    "AWS_REGION": "us-east-1",
    "NAMESPACE": fx.NAMESPACE,
    "DEPLOYMENT_NAME": fx.DEPLOYMENT,
    "HPA_NAME": fx.HPA,
    "METRICS_NAMESPACE": "RadStream/Hooks",
    "STATE_PARAMETER_NAME": PARAMETER,
}
CONFIG = ScaleEventsConfig.from_env(ENV)
CONTEXT = Context(
    function_name="radstream-scale-events",
    invoked_function_arn="arn:aws:lambda:us-east-1:111122223333:function:radstream-scale-events",
)


class MemoryStore:
    def __init__(self, text: str | None = None, fail_save: bool = False) -> None:
        self.text = text
        self.fail_save = fail_save
        self.saves = 0

    def load(self) -> ScaleState | None:
        return None if self.text is None else ScaleState.from_json(self.text)

    def save(self, state: ScaleState) -> None:
        if self.fail_save:
            raise StateError(f"cannot save SSM parameter {PARAMETER}: ThrottlingException")
        self.saves += 1
        self.text = state.to_json()


@pytest.fixture(autouse=True)
def clean_metrics() -> Iterator[None]:
    handler.metrics.clear_metrics()
    handler.metrics.namespace = CONFIG.metrics_namespace
    yield
    handler.metrics.clear_metrics()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {**ENV, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.client("ssm", region_name="us-east-1")


def _flush(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    handler.metrics.flush_metrics()
    [document] = emf(capsys.readouterr().out)
    return document


# ---- configuration and events -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["HPA_NAME", "STATE_PARAMETER_NAME", "CLUSTER_CA", "METRICS_NAMESPACE"])
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


def test_scale_up_metrics_across_runs(capsys: pytest.CaptureFixture[str]) -> None:
    store = MemoryStore()
    handler.run(CONFIG, lambda: FakeScaleReader(fx.Cluster()), store, fx.at(-60))
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
    assert values(document, "TimeToScaleSeconds") == [42.0]
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
    store = MemoryStore('{"v": 99}')
    result = handler.run(CONFIG, lambda: FakeScaleReader(scale_up_cluster(ready=True)), store, fx.at(60))
    assert result["ok"] and result["baseline"]
    assert "ScaleUpEvents" not in metric_names(_flush(capsys))
    assert store.load() is not None


def test_the_handler_counts_once_with_its_state_in_ssm(
    aws: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two invocations through the real handler, SSM (moto) holding the state: the scale-up once."""
    clusters = iter([fx.Cluster(), scale_up_cluster(ready=False), scale_up_cluster(ready=False)])
    monkeypatch.setattr(handler, "build_reader", lambda config: FakeScaleReader(next(clusters)))
    minutes = iter([fx.at(-60), fx.at(20), fx.at(80)])
    monkeypatch.setattr(handler, "utc_now", lambda: next(minutes))
    published = []
    for _ in range(3):
        result = handler.handler(SCHEDULED, CONTEXT)
        assert result["ok"]
        [document] = emf(capsys.readouterr().out)
        published.append(values(document, "ScaleUpEvents") if "ScaleUpEvents" in document else None)
    assert published == [None, [1.0], [0.0]]
    saved = aws.get_parameter(Name=PARAMETER)["Parameter"]
    assert saved["Type"] == "String"
    assert fx.EVENT_UP in ScaleState.from_json(saved["Value"]).events


def test_ssm_store_round_trip(aws: Any) -> None:
    store = SsmStateStore(aws, PARAMETER)
    assert store.load() is None
    state = ScaleState(events={fx.EVENT_UP: (1, 2.0)}, updated_at=3.0)
    store.save(state)
    store.save(state)  # overwrite
    assert store.load() == state


def test_ssm_store_refuses_a_state_over_8_kb(aws: Any) -> None:
    state = ScaleState(events={f"{i:036d}": (1, 1.0) for i in range(400)})
    with pytest.raises(StateError, match="lower LOOKBACK_SECONDS"):
        SsmStateStore(aws, PARAMETER).save(state)


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
    store = MemoryStore(ScaleState().to_json())
    with fx.FakeApiServer(scale_up_cluster(ready=True)).running() as server:
        result = handler.run(CONFIG, lambda: _real_reader(server), store, fx.at(60))
    assert result["ok"] and result["scale_ups"] == 1 and result["time_to_scale_s"] == [42.0]
    assert sorted(values(_flush(capsys), "PodStartupSeconds")) == [28.0, 41.0]
