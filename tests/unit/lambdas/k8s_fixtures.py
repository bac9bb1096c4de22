"""Kubernetes API objects for the hook Lambdas' tests, as the API server returns them.

Every object here validates strictly against the Kubernetes 1.36 schema
(test_health_check_k8s_fixtures.py). Times are seconds after ``T0``. ``to_model`` turns an
object into the kubernetes client model the Lambdas receive (the client's own deserializer),
and ``FakeApiServer`` serves them over HTTP on loopback to the real client.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubernetes import client as k8s

from cdk_app.config import AutoscalingConfig, WorkloadConfig

WORKLOAD = WorkloadConfig()
NAMESPACE = WORKLOAD.namespace
DEPLOYMENT = WORKLOAD.deployment_name
HPA = AutoscalingConfig().hpa_name
LABELS = {"app.kubernetes.io/name": WORKLOAD.app_label}
SELECTOR = ",".join(f"{k}={v}" for k, v in sorted(LABELS.items()))
IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/radstream-triton:triton-0123456789ab"
IMAGE_ID = "111122223333.dkr.ecr.us-east-1.amazonaws.com/radstream-triton@sha256:" + "ab" * 32
T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
GPU = "nvidia.com/gpu"
Obj = dict[str, Any]
DEPLOYMENT_UID = "0b7c6f7e-3c1e-4c55-9d38-4b1b7a1f0001"
# The newest ReplicaSet's pod-template-hash and the previous one's (a fix-forward replaces OLD_HASH).
NEW_HASH = "5d8f7c9b6d"
OLD_HASH = "7c4b9d6f58"
RS_UIDS = {NEW_HASH: "0b7c6f7e-3c1e-4c55-9d38-4b1b7a1f0003", OLD_HASH: "0b7c6f7e-3c1e-4c55-9d38-4b1b7a1f0004"}
# The condition the AWS Load Balancer Controller's webhook adds as a readiness gate: its TargetGroupBinding's name.
TARGET_HEALTH_CONDITION = "target-health.elbv2.k8s.aws/k8s-radstrea-tritonin-0a1b2c3d4e"


def ts(seconds: float) -> str:
    """``T0 + seconds`` in the API's RFC 3339 form."""
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _container() -> Obj:
    return {
        "name": "triton",
        "image": IMAGE,
        "ports": [{"name": "http", "containerPort": 8000, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": "2", "memory": "8Gi", GPU: "1"},
            "limits": {"cpu": "3", "memory": "12Gi", GPU: "1"},
        },
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5},
    }


def deployment(
    *,
    replicas: int = 2,
    updated: int | None = None,
    ready: int | None = None,
    available: int | None = None,
    total: int | None = None,
    generation: int = 3,
    observed: int = 3,
    progressing_reason: str = "NewReplicaSetAvailable",
    revision: int = 3,
    spec_replicas: bool = True,
) -> Obj:
    """The Deployment; by default a finished rollout with every replica ready (revision ``revision``,
    whose ReplicaSet is ``replica_set(NEW_HASH, revision)``)."""
    updated = replicas if updated is None else updated
    ready = replicas if ready is None else ready
    available = ready if available is None else available
    total = updated if total is None else total
    progressing_ok = progressing_reason != "ProgressDeadlineExceeded"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": DEPLOYMENT,
            "namespace": NAMESPACE,
            "uid": DEPLOYMENT_UID,
            "generation": generation,
            "creationTimestamp": ts(-86400),
            "labels": dict(LABELS),
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
        },
        "spec": {
            **({"replicas": replicas} if spec_replicas else {}),
            "selector": {"matchLabels": dict(LABELS)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": dict(LABELS)}, "spec": {"containers": [_container()]}},
        },
        "status": {
            "observedGeneration": observed,
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if available >= replicas else "False",
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.",
                    "lastUpdateTime": ts(0),
                    "lastTransitionTime": ts(0),
                },
                {
                    "type": "Progressing",
                    "status": "True" if progressing_ok else "False",
                    "reason": progressing_reason,
                    "message": (
                        f'ReplicaSet "{DEPLOYMENT}-5d8f7c9b6d" has timed out progressing.'
                        if not progressing_ok
                        else f'ReplicaSet "{DEPLOYMENT}-5d8f7c9b6d" has successfully progressed.'
                    ),
                    "lastUpdateTime": ts(0),
                    "lastTransitionTime": ts(0),
                },
            ],
        },
    }


def replica_set(
    template_hash: str = NEW_HASH, revision: int = 3, *, replicas: int = 2, ready: int | None = None
) -> Obj:
    """A ReplicaSet of the Deployment (revision annotation and pod-template-hash as the controller writes them)."""
    ready = replicas if ready is None else ready
    labels = {**LABELS, "pod-template-hash": template_hash}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{DEPLOYMENT}-{template_hash}",
            "namespace": NAMESPACE,
            "uid": RS_UIDS[template_hash],
            "generation": 1,
            "creationTimestamp": ts(-3600 if template_hash == NEW_HASH else -86400),
            "labels": labels,
            "annotations": {
                "deployment.kubernetes.io/revision": str(revision),
                "deployment.kubernetes.io/desired-replicas": "2",
                "deployment.kubernetes.io/max-replicas": "3",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": DEPLOYMENT,
                    "uid": DEPLOYMENT_UID,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [_container()]}},
        },
        "status": {
            "replicas": replicas,
            "fullyLabeledReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": 1,
        },
    }


def replica_sets_of_fix_forward() -> list[Obj]:
    """Revision 4 (NEW_HASH, the fix) beside revision 3 (OLD_HASH, the broken release being replaced)."""
    return [replica_set(NEW_HASH, 4, replicas=2), replica_set(OLD_HASH, 3, replicas=1, ready=0)]


def hpa(*, current: int, desired: int, last_scale_s: float = 0) -> Obj:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": HPA,
            "namespace": NAMESPACE,
            "uid": "0b7c6f7e-3c1e-4c55-9d38-4b1b7a1f0002",
            "creationTimestamp": ts(-86400),
        },
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": DEPLOYMENT},
            "minReplicas": 2,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ],
        },
        "status": {
            "currentReplicas": current,
            "desiredReplicas": desired,
            "lastScaleTime": ts(last_scale_s),
            "conditions": [
                {
                    "type": "AbleToScale",
                    "status": "True",
                    "reason": "SucceededRescale" if current != desired else "ReadyForNewScale",
                    "message": "the HPA controller was able to update the target scale",
                    "lastTransitionTime": ts(last_scale_s),
                }
            ],
        },
    }


def pod(
    name: str,
    *,
    uid: str,
    created_s: float,
    scheduled_s: float | None = None,
    ready_s: float | None = None,
    restarts: int = 0,
    waiting_reason: str | None = None,
    last_exit_code: int | None = None,
    unschedulable: bool = False,
    deleting: bool = False,
    template_hash: str | None = None,
    target_health: str | None = "True",
    target_reason: str | None = None,
) -> Obj:
    """A Triton pod of the ReplicaSet ``template_hash`` (default the newest, ``NEW_HASH``). Without
    ``scheduled_s`` it is Pending (unschedulable when asked). ``target_health`` is the status of the
    AWS Load Balancer Controller's readiness gate condition (None: no gate injected)."""
    template_hash = NEW_HASH if template_hash is None else template_hash
    conditions: list[Obj] = []
    status: Obj = {"qosClass": "Burstable"}
    if scheduled_s is None:
        status["phase"] = "Pending"
        if unschedulable:
            conditions.append(
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": f"0/4 nodes are available: 2 Insufficient {GPU}, 2 node(s) had untolerated taint.",
                    "lastTransitionTime": ts(created_s),
                }
            )
    else:
        status["phase"] = "Running"
        status["startTime"] = ts(scheduled_s)
        status["hostIP"] = "10.42.3.17"
        status["podIP"] = "10.42.3.101"
        conditions.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": ts(scheduled_s)})
        containers_ready = ready_s is not None and waiting_reason is None
        # A pod with a readiness gate is Ready only when the gate's condition is True too.
        ready = containers_ready and target_health in (None, "True")
        for kind in ("Initialized", "ContainersReady", "Ready"):
            if kind == "Initialized":
                conditions.append({"type": kind, "status": "True", "lastTransitionTime": ts(scheduled_s)})
            else:
                moment = ready_s if ready_s is not None else scheduled_s
                up = containers_ready if kind == "ContainersReady" else ready
                conditions.append({"type": kind, "status": "True" if up else "False", "lastTransitionTime": ts(moment)})
        if target_health is not None:
            gate: Obj = {
                "type": TARGET_HEALTH_CONDITION,
                "status": target_health,
                "lastTransitionTime": ts(ready_s if ready_s is not None else scheduled_s),
            }
            if target_reason is not None:
                gate["reason"] = target_reason
                gate["message"] = "Target registration is in progress"
            conditions.append(gate)
        container_status: Obj = {
            "name": "triton",
            "image": IMAGE,
            "imageID": IMAGE_ID,
            "ready": containers_ready,
            "started": waiting_reason is None,
            "restartCount": restarts,
        }
        if waiting_reason is not None:
            container_status["state"] = {
                "waiting": {
                    "reason": waiting_reason,
                    "message": f'Back-off pulling image "{IMAGE}"'
                    if waiting_reason == "ImagePullBackOff"
                    else "back-off 5m0s restarting failed container",
                }
            }
        else:
            container_status["state"] = {"running": {"startedAt": ts(scheduled_s + 2)}}
        if last_exit_code is not None:
            container_status["lastState"] = {
                "terminated": {
                    "exitCode": last_exit_code,
                    "reason": "Error",
                    "startedAt": ts(scheduled_s + 2),
                    "finishedAt": ts(scheduled_s + 9),
                }
            }
        status["containerStatuses"] = [container_status]
    status["conditions"] = conditions
    metadata: Obj = {
        "name": name,
        "namespace": NAMESPACE,
        "uid": uid,
        "creationTimestamp": ts(created_s),
        "labels": {**LABELS, "pod-template-hash": template_hash},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": f"{DEPLOYMENT}-{template_hash}",
                "uid": RS_UIDS.get(template_hash, RS_UIDS[NEW_HASH]),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if deleting:
        metadata["deletionTimestamp"] = ts(created_s + 600)
        metadata["deletionGracePeriodSeconds"] = 45
    spec: Obj = {"containers": [_container()], "serviceAccountName": WORKLOAD.service_account_name}
    if target_health is not None:
        spec["readinessGates"] = [{"conditionType": TARGET_HEALTH_CONDITION}]
    if scheduled_s is not None:
        spec["nodeName"] = "ip-10-42-3-17.ec2.internal"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


def rescale_event(
    uid: str, *, new_size: int, reason: str, at_s: float, count: int = 1, first_s: float | None = None
) -> Obj:
    """The HPA controller's SuccessfulRescale event (core/v1, as the HPA's event recorder writes it)."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{HPA}.{uid[:8]}",
            "namespace": NAMESPACE,
            "uid": uid,
            "creationTimestamp": ts(at_s if first_s is None else first_s),
        },
        "involvedObject": {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "name": HPA,
            "namespace": NAMESPACE,
            "uid": "0b7c6f7e-3c1e-4c55-9d38-4b1b7a1f0002",
        },
        "reason": "SuccessfulRescale",
        "message": f"New size: {new_size}; reason: {reason}",
        "type": "Normal",
        "source": {"component": "horizontal-pod-autoscaler"},
        "firstTimestamp": ts(at_s if first_s is None else first_s),
        "lastTimestamp": ts(at_s),
        "count": count,
        "reportingComponent": "horizontal-pod-autoscaler",
        "reportingInstance": "",
    }


SCALE_UP_REASON = "cpu resource utilization (percentage of request) above target"
QUEUE_SCALE_UP_REASON = "pods metric triton_queue_time_per_request_us above target"
SCALE_DOWN_REASON = "All metrics below target"

# Pod UIDs.
UID_A = "6f1d2a7c-0000-4000-8000-00000000000a"
UID_B = "6f1d2a7c-0000-4000-8000-00000000000b"
UID_C = "6f1d2a7c-0000-4000-8000-00000000000c"
UID_D = "6f1d2a7c-0000-4000-8000-00000000000d"
UID_CRASH = "6f1d2a7c-0000-4000-8000-0000000000cc"
UID_PENDING = "6f1d2a7c-0000-4000-8000-0000000000ee"
UID_OLD = "6f1d2a7c-0000-4000-8000-0000000000f0"
UID_PULL = "6f1d2a7c-0000-4000-8000-0000000000f1"
# Event UIDs.
EVENT_UP = "9e0f1a2b-0000-4000-8000-0000000000a1"
EVENT_DOWN = "9e0f1a2b-0000-4000-8000-0000000000d1"


def steady_pods() -> list[Obj]:
    """Two replicas, ready for hours."""
    return [
        pod(f"{DEPLOYMENT}-5d8f7c9b6d-aaaaa", uid=UID_A, created_s=-7200, scheduled_s=-7199, ready_s=-7170),
        pod(f"{DEPLOYMENT}-5d8f7c9b6d-bbbbb", uid=UID_B, created_s=-7200, scheduled_s=-7199, ready_s=-7172),
    ]


def scale_up_new_pods(ready: bool) -> list[Obj]:
    """The two pods a 2 -> 4 scale-up at T0 creates: scheduled at once, Ready 28 s and 41 s later."""
    return [
        pod(f"{DEPLOYMENT}-5d8f7c9b6d-ccccc", uid=UID_C, created_s=1, scheduled_s=2, ready_s=29 if ready else None),
        pod(f"{DEPLOYMENT}-5d8f7c9b6d-ddddd", uid=UID_D, created_s=1, scheduled_s=3, ready_s=42 if ready else None),
    ]


def scale_up_event() -> Obj:
    return rescale_event(EVENT_UP, new_size=4, reason=QUEUE_SCALE_UP_REASON, at_s=0)


def scale_down_event(at_s: float = 400) -> Obj:
    return rescale_event(EVENT_DOWN, new_size=3, reason=SCALE_DOWN_REASON, at_s=at_s)


def crash_looping_pod(restarts: int = 5) -> Obj:
    return pod(
        f"{DEPLOYMENT}-5d8f7c9b6d-crash",
        uid=UID_CRASH,
        created_s=-300,
        scheduled_s=-299,
        restarts=restarts,
        waiting_reason="CrashLoopBackOff",
        last_exit_code=1,
    )


def old_replica_set_crash_looping_pod() -> Obj:
    """Revision 3's pod (the old ReplicaSet), crash-looping with 9 restarts, during a fix-forward."""
    return pod(
        f"{DEPLOYMENT}-{OLD_HASH}-old01",
        uid=UID_OLD,
        created_s=-600,
        scheduled_s=-599,
        restarts=9,
        waiting_reason="CrashLoopBackOff",
        last_exit_code=1,
        template_hash=OLD_HASH,
    )


def image_pull_backoff_pod() -> Obj:
    """A new pod whose first image pull failed (ECR throttled, the copy still finishing): no restart yet."""
    return pod(
        f"{DEPLOYMENT}-5d8f7c9b6d-pullb",
        uid=UID_PULL,
        created_s=-20,
        scheduled_s=-19,
        waiting_reason="ImagePullBackOff",
    )


def pending_gpu_pod() -> Obj:
    return pod(f"{DEPLOYMENT}-5d8f7c9b6d-pendg", uid=UID_PENDING, created_s=5, unschedulable=True)


def all_objects() -> list[Obj]:
    """Every object the tests use, for the schema check."""
    return [
        deployment(),
        deployment(replicas=4, updated=4, ready=2, available=2),
        deployment(replicas=2, updated=1, ready=2, total=3, generation=4, observed=4),
        deployment(generation=4, observed=3),
        deployment(replicas=2, ready=1, progressing_reason="ProgressDeadlineExceeded"),
        deployment(generation=5, observed=4, revision=4, progressing_reason="ProgressDeadlineExceeded"),
        deployment(spec_replicas=False),
        replica_set(),
        *replica_sets_of_fix_forward(),
        image_pull_backoff_pod(),
        old_replica_set_crash_looping_pod(),
        pod(
            f"{DEPLOYMENT}-5d8f7c9b6d-nogat", uid=UID_A, created_s=-60, scheduled_s=-59, ready_s=-30, target_health=None
        ),
        pod(
            f"{DEPLOYMENT}-5d8f7c9b6d-initl",
            uid=UID_B,
            created_s=-60,
            scheduled_s=-59,
            ready_s=-30,
            target_health="False",
            target_reason="Elb.InitialHealthChecking",
        ),
        hpa(current=2, desired=2),
        hpa(current=2, desired=4),
        hpa(current=4, desired=3, last_scale_s=400),
        *steady_pods(),
        *scale_up_new_pods(ready=False),
        *scale_up_new_pods(ready=True),
        crash_looping_pod(),
        pending_gpu_pod(),
        pod(f"{DEPLOYMENT}-5d8f7c9b6d-termi", uid=UID_D, created_s=-600, scheduled_s=-599, ready_s=-580, deleting=True),
        scale_up_event(),
        rescale_event(EVENT_UP, new_size=4, reason=QUEUE_SCALE_UP_REASON, at_s=90, count=2, first_s=0),
        scale_down_event(),
    ]


_MODELS = {
    ("apps/v1", "Deployment"): "V1Deployment",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
    ("v1", "Pod"): "V1Pod",
    ("v1", "Event"): "CoreV1Event",
    ("v1", "PodList"): "V1PodList",
    ("apps/v1", "ReplicaSet"): "V1ReplicaSet",
    ("v1", "EventList"): "CoreV1EventList",
}


def to_model(obj: Obj) -> Any:
    """The kubernetes client model for ``obj``, deserialized exactly as the client does it.

    The client's public ``deserialize`` changed signature between releases (36: a response
    object; 37: text and content type); the private one it delegates to did not.
    """
    model = _MODELS[(obj["apiVersion"], obj["kind"])]
    return k8s.ApiClient()._ApiClient__deserialize(json.loads(json.dumps(obj)), model)


def pod_list(pods: list[Obj]) -> Obj:
    return {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "12345"}, "items": pods}


def event_list(events: list[Obj]) -> Obj:
    return {"apiVersion": "v1", "kind": "EventList", "metadata": {"resourceVersion": "12345"}, "items": events}


@dataclass
class Cluster:
    """The objects a fake API server (or a fake reader) answers with; tests change them between runs."""

    deployment: Obj | None = field(default_factory=deployment)
    hpa: Obj | None = field(default_factory=lambda: hpa(current=2, desired=2))
    pods: list[Obj] = field(default_factory=steady_pods)
    replica_sets: list[Obj] = field(default_factory=lambda: [replica_set()])
    events: list[Obj] = field(default_factory=list)
    # Pods that the list still shows but that are gone by the time they are read (404).
    vanished: set[str] = field(default_factory=set)
    delay_s: float = 0.0
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)


def _not_found(kind: str, name: str) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'{kind} "{name}" not found',
        "reason": "NotFound",
        "code": 404,
    }


def route(cluster: Cluster, path: str, query: dict[str, list[str]]) -> tuple[int, Obj]:
    """What the API server answers for ``path`` (the handful of paths the Lambdas read)."""
    base_core, base_apps = f"/api/v1/namespaces/{NAMESPACE}", f"/apis/apps/v1/namespaces/{NAMESPACE}"
    base_hpa = f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers"
    if path == f"{base_apps}/deployments/{DEPLOYMENT}":
        return (200, cluster.deployment) if cluster.deployment else (404, _not_found("deployments.apps", DEPLOYMENT))
    if path == f"{base_hpa}/{HPA}":
        return (200, cluster.hpa) if cluster.hpa else (404, _not_found("horizontalpodautoscalers.autoscaling", HPA))
    if path == f"{base_core}/pods":
        selector = query.get("labelSelector", [""])[0]
        wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
        pods = [p for p in cluster.pods if wanted.items() <= p["metadata"]["labels"].items()]
        return 200, pod_list(pods)
    if path == f"{base_apps}/replicasets":
        selector = query.get("labelSelector", [""])[0]
        wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
        items = [r for r in cluster.replica_sets if wanted.items() <= r["metadata"]["labels"].items()]
        return 200, {"apiVersion": "apps/v1", "kind": "ReplicaSetList", "metadata": {}, "items": items}
    if path.startswith(f"{base_core}/pods/"):
        name = path.rsplit("/", 1)[1]
        found = [p for p in cluster.pods if p["metadata"]["name"] == name and name not in cluster.vanished]
        return (200, found[0]) if found else (404, _not_found("pods", name))
    if path == f"{base_core}/events":
        fields = dict(part.split("=", 1) for part in query.get("fieldSelector", [""])[0].split(",") if part)
        events = [
            e
            for e in cluster.events
            if all(
                (e["involvedObject"][key.split(".", 1)[1]] if key.startswith("involvedObject.") else e[key]) == value
                for key, value in fields.items()
            )
        ]
        return 200, event_list(events)
    return 404, _not_found("path", path)


class FakeApiServer:
    """A stand-in for the Kubernetes API on loopback, serving a ``Cluster`` (HTTPS with ``tls``)."""

    def __init__(self, cluster: Cluster, tls: ssl.SSLContext | None = None) -> None:
        self.cluster = cluster
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                outer.cluster.requests.append((parts.path, self.headers.get("Authorization", ""), query))
                if outer.cluster.delay_s:
                    time.sleep(outer.cluster.delay_s)
                status, body = route(outer.cluster, parts.path, query)
                payload = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[FakeApiServer]:
        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(timeout=5)
