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
