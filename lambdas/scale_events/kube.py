"""The Kubernetes reads the scale-event metrics need, behind a protocol tests can feed with objects."""

from __future__ import annotations

from typing import Any, Protocol

from kubernetes import client as k8s

from lambdas.common import eks_client

RESCALE_REASON = "SuccessfulRescale"


class ScaleReader(Protocol):
    """Returns kubernetes client models; raises eks_client's typed errors (KubernetesNotFound on 404)."""

    def read_hpa(self, namespace: str, name: str) -> Any: ...

    def read_deployment(self, namespace: str, name: str) -> Any: ...

    def list_pods(self, namespace: str, label_selector: str) -> list[Any]: ...

    def read_pod(self, namespace: str, name: str) -> Any: ...

    def list_hpa_events(self, namespace: str, hpa_name: str) -> list[Any]: ...


class ApiScaleReader:
    """The reader over a real ApiClient; every call is bounded by ``timeout_s`` (connect, read).

    Pods are listed from the API server's watch cache (``resourceVersion=0``: cheap for the
    API server every minute, possibly a moment behind); ``read_pod`` is a consistent read
    the collector uses to confirm a pod before it records a once-only fact about it.
    """

    def __init__(self, api_client: k8s.ApiClient, timeout_s: float) -> None:
        self._apps = k8s.AppsV1Api(api_client)
        self._core = k8s.CoreV1Api(api_client)
        self._autoscaling = k8s.AutoscalingV2Api(api_client)
        self._timeout = (timeout_s, timeout_s)

    def read_hpa(self, namespace: str, name: str) -> Any:
        return eks_client.call_api(
            f"read hpa {namespace}/{name}",
            lambda: self._autoscaling.read_namespaced_horizontal_pod_autoscaler(
                name, namespace, _request_timeout=self._timeout
            ),
        )

    def read_deployment(self, namespace: str, name: str) -> Any:
        return eks_client.call_api(
            f"read deployment {namespace}/{name}",
            lambda: self._apps.read_namespaced_deployment(name, namespace, _request_timeout=self._timeout),
        )

    def list_pods(self, namespace: str, label_selector: str) -> list[Any]:
        pods = eks_client.call_api(
            f"list pods in {namespace} ({label_selector})",
            lambda: self._core.list_namespaced_pod(
                namespace, label_selector=label_selector, resource_version="0", _request_timeout=self._timeout
            ),
        )
        return list(pods.items or [])

    def read_pod(self, namespace: str, name: str) -> Any:
        return eks_client.call_api(
            f"read pod {namespace}/{name}",
            lambda: self._core.read_namespaced_pod(name, namespace, _request_timeout=self._timeout),
        )

    def list_hpa_events(self, namespace: str, hpa_name: str) -> list[Any]:
        selector = f"involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name={hpa_name},reason={RESCALE_REASON}"
        events = eks_client.call_api(
            f"list events in {namespace} ({selector})",
            lambda: self._core.list_namespaced_event(
                namespace, field_selector=selector, _request_timeout=self._timeout
            ),
        )
        return list(events.items or [])


class SignalReader(Protocol):
    """The scaling signal's evaluations: (epoch seconds, value), oldest first; raises KubernetesUnavailable."""

    def samples(self, start: float, end: float) -> list[tuple[float, float]]: ...


class PrometheusSignalReader:
    """The recording rule's series from the in-cluster Prometheus, through the API server's service proxy.

    ``GET /api/v1/namespaces/{ns}/services/{scheme}:{name}:{port}/proxy/api/v1/query_range`` (Kubernetes
    API: the service proxy subresource, which needs ``get`` on ``services/proxy``) runs Prometheus'
    range query (https://prometheus.io/docs/prometheus/latest/querying/api/#range-queries); ``step``
    is the rule evaluation interval, so each sample is one evaluation.
    """

    def __init__(self, api_client: k8s.ApiClient, service: str, query: str, step_s: float, timeout_s: float) -> None:
        namespace, _, target = service.partition("/")
        self._api = api_client
        self._path = f"/api/v1/namespaces/{namespace}/services/{target}/proxy/api/v1/query_range"
        self._query = query
        self._step = step_s
        self._timeout = (timeout_s, timeout_s)

    def samples(self, start: float, end: float) -> list[tuple[float, float]]:
        answer = eks_client.call_api(
            f"query the scaling signal ({self._query})",
            lambda: self._api.call_api(
                self._path,
                "GET",
                query_params=[
                    ("query", self._query),
                    ("start", f"{start:.3f}"),
                    ("end", f"{end:.3f}"),
                    ("step", f"{self._step:g}"),
                ],
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                response_type="object",
                _return_http_data_only=True,
                _request_timeout=self._timeout,
            ),
        )
        return parse_range_answer(answer)


def parse_range_answer(answer: Any) -> list[tuple[float, float]]:
    """Prometheus' ``{"status": "success", "data": {"resultType": "matrix", "result": [{"values": ...}]}}``."""
    if not isinstance(answer, dict) or answer.get("status") != "success":
        raise eks_client.KubernetesUnavailable(f"Prometheus answered {str(answer)[:200]}")
    series = answer.get("data", {}).get("result", [])
    values = series[0].get("values", []) if series else []
    return [(float(at), float(value)) for at, value in values]
