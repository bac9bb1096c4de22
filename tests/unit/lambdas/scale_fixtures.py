"""Kubernetes objects for the scale-events tests, as the API server returns them (strictly schema-valid,
test_scale_events_fixtures.py): the HPA with its status, the Deployment, pods behind NLB readiness
gates, and the HPA's rescale Events in the forms client-go's recorder writes them
(tools/record/events_cache.go): folded (count + 1, same object), re-created after the Event TTL with
the carried count, combined ("(combined from similar events): ..."), and events.k8s.io/v1 series.
Times are seconds after ``fx.T0``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s

from lambdas.common import eks_client
from tests.unit.lambdas import k8s_fixtures as fx

Obj = dict[str, Any]
GATE = "target-health.elbv2.k8s.aws/k8s-radstrea-tritonin-4f1e2d3c4b"
HPA_UID = "0b7c6f7e-3c1e-4c55-9d38-4b1b7a1f0002"
COMBINED = "(combined from similar events): "


def hpa(*, current: int, desired: int, last_scale_s: float) -> Obj:
    obj = fx.hpa(current=current, desired=desired, last_scale_s=last_scale_s)
    obj["spec"]["metrics"].append(
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "triton_queue_time_per_request_us"},
                "target": {"type": "AverageValue", "averageValue": "30k"},
            },
        }
    )
    return obj


def deployment(replicas: int, ready: int) -> Obj:
    return fx.deployment(replicas=replicas, updated=replicas, ready=ready, available=ready)


def pod(
    suffix: str,
    *,
    created_s: float,
    scheduled_s: float | None = None,
    containers_ready_s: float | None = None,
    serving_s: float | None = None,
    gated: bool = True,
) -> Obj:
    """A Triton pod behind the NLB: Ready (and its readiness gate True) at ``serving_s``, its containers
    ready at ``containers_ready_s``. Without a gate, Ready is ``containers_ready_s``."""
    uid = f"6f1d2a7c-0000-4000-8000-{suffix.encode().hex()[:12]:0>12}"
    name = f"{fx.DEPLOYMENT}-5d8f7c9b6d-{suffix}"
    ready_s = serving_s if gated else containers_ready_s
    obj = fx.pod(name, uid=uid, created_s=created_s, scheduled_s=scheduled_s, ready_s=ready_s)
    if scheduled_s is None:
        return obj
    conditions = obj["status"]["conditions"]
    for condition in conditions:
        if condition["type"] == "ContainersReady":
            condition["status"] = "True" if containers_ready_s is not None else "False"
            condition["lastTransitionTime"] = fx.ts(
                containers_ready_s if containers_ready_s is not None else scheduled_s
            )
        if condition["type"] == "Ready" and ready_s is None:
            condition["lastTransitionTime"] = fx.ts(scheduled_s)
    container = obj["status"]["containerStatuses"][0]
    container["ready"] = containers_ready_s is not None
    if gated:
        obj["spec"]["readinessGates"] = [{"conditionType": GATE}]
        conditions.append(
            {
                "type": GATE,
                "status": "True" if serving_s is not None else "False",
                "reason": "Elb.RegistrationSucceeded" if serving_s is not None else "Elb.RegistrationInProgress",
                "lastTransitionTime": fx.ts(serving_s if serving_s is not None else scheduled_s),
            }
        )
    return obj


def steady(gated: bool = True) -> list[Obj]:
    """Two replicas serving for hours."""
    return [
        pod("aaaaa", created_s=-7200, scheduled_s=-7199, containers_ready_s=-7172, serving_s=-7160, gated=gated),
        pod("bbbbb", created_s=-7200, scheduled_s=-7199, containers_ready_s=-7170, serving_s=-7158, gated=gated),
    ]


def rescale(
    name: str,
    *,
    size: int,
    reason: str,
    last_s: float,
    count: int = 1,
    first_s: float | None = None,
    combined: bool = False,
) -> Obj:
    """A core/v1 SuccessfulRescale Event; ``name``/uid identify the object (folding keeps them)."""
    obj = fx.rescale_event(
        f"9e0f1a2b-0000-4000-8000-{name.encode().hex()[:12]:0>12}",
        new_size=size,
        reason=reason,
        at_s=last_s,
        count=count,
        first_s=first_s,
    )
    if combined:
        obj["message"] = COMBINED + obj["message"]
    return obj


def series_event(name: str, *, size: int, reason: str, first_s: float, last_s: float, count: int) -> Obj:
    """The same rescale written through events.k8s.io/v1 (a series)."""
    return {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {
            "name": f"{fx.HPA}.{name}",
            "namespace": fx.NAMESPACE,
            "uid": f"9e0f1a2b-0000-4000-8000-{name.encode().hex()[:12]:0>12}",
            "creationTimestamp": fx.ts(first_s),
        },
        "eventTime": fx.at(first_s).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
        "series": {"count": count, "lastObservedTime": fx.at(last_s).strftime("%Y-%m-%dT%H:%M:%S.000000Z")},
        "reportingController": "horizontal-pod-autoscaler",
        "reportingInstance": "horizontal-pod-autoscaler-ip-10-0-0-1",
        "action": "Scaling",
        "reason": "SuccessfulRescale",
        "regarding": {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "name": fx.HPA,
            "namespace": fx.NAMESPACE,
            "uid": HPA_UID,
        },
        "note": f"New size: {size}; reason: {reason}",
        "type": "Normal",
    }


_MODELS = {
    ("apps/v1", "Deployment"): "V1Deployment",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
    ("v1", "Pod"): "V1Pod",
    ("v1", "Event"): "CoreV1Event",
    ("events.k8s.io/v1", "Event"): "EventsV1Event",
}


def to_model(obj: Obj) -> Any:
    """The kubernetes client model, deserialized as the client does it (see k8s_fixtures.to_model)."""
    return k8s.ApiClient()._ApiClient__deserialize(
        json.loads(json.dumps(obj)), _MODELS[(obj["apiVersion"], obj["kind"])]
    )


@dataclass
class Snapshot:
    """What the API server holds at one moment."""

    hpa: Obj
    deployment: Obj
    pods: list[Obj]
    events: list[Obj] = field(default_factory=list)

    def objects(self) -> list[Obj]:
        return [self.hpa, self.deployment, *self.pods, *self.events]


class SnapshotReader:
    """A ScaleReader over one Snapshot (as the API server's answers, through the client's models)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def read_hpa(self, namespace: str, name: str) -> Any:
        return to_model(self.snapshot.hpa)

    def read_deployment(self, namespace: str, name: str) -> Any:
        return to_model(self.snapshot.deployment)

    def list_pods(self, namespace: str, label_selector: str) -> list[Any]:
        return [to_model(p) for p in self.snapshot.pods]

    def read_pod(self, namespace: str, name: str) -> Any:
        for p in self.snapshot.pods:
            if p["metadata"]["name"] == name:
                return to_model(p)
        raise eks_client.KubernetesNotFound(f"read pod {namespace}/{name}: HTTP 404 Not Found")

    def list_hpa_events(self, namespace: str, hpa_name: str) -> list[Any]:
        return [to_model(e) for e in self.snapshot.events]


def prometheus_matrix(samples: list[tuple[float, float]]) -> Obj:
    """Prometheus' range-query answer for one series (api/v1/query_range)."""
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {}, "values": [[at, f"{value:g}"] for at, value in samples]}],
        },
    }


@dataclass
class RecordedSignal:
    """A SignalReader over a recorded Prometheus answer (parsed by the Lambda's own parser)."""

    samples_at: list[tuple[float, float]]
    calls: list[tuple[float, float]] = field(default_factory=list)

    def samples(self, start: float, end: float) -> list[tuple[float, float]]:
        from lambdas.scale_events.kube import parse_range_answer

        self.calls.append((start, end))
        return parse_range_answer(prometheus_matrix([(t, v) for t, v in self.samples_at if start <= t <= end]))
