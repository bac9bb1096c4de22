"""The three Kubernetes reads the rollout wait needs, behind a protocol tests can feed with objects."""

from __future__ import annotations

from typing import Any, Protocol

from kubernetes import client as k8s

from lambdas.common.eks_client import call_api


class KubernetesReader(Protocol):
    """Returns kubernetes client models (``V1Deployment``, ``V1Pod``); raises eks_client's typed errors."""

    def read_deployment(self, namespace: str, name: str) -> Any: ...

    def list_pods(self, namespace: str, label_selector: str) -> list[Any]: ...

    def list_replica_sets(self, namespace: str, label_selector: str) -> list[Any]: ...


class ApiKubernetesReader:
    """The reader over a real ApiClient; every call is bounded by ``timeout_s`` (connect, read)."""

    def __init__(self, api_client: k8s.ApiClient, timeout_s: float) -> None:
        self._apps = k8s.AppsV1Api(api_client)
        self._core = k8s.CoreV1Api(api_client)
        self._timeout = (timeout_s, timeout_s)

    def read_deployment(self, namespace: str, name: str) -> Any:
        return call_api(
            f"read deployment {namespace}/{name}",
            lambda: self._apps.read_namespaced_deployment(name, namespace, _request_timeout=self._timeout),
        )

    def list_pods(self, namespace: str, label_selector: str) -> list[Any]:
        pod_list = call_api(
            f"list pods in {namespace} ({label_selector})",
            lambda: self._core.list_namespaced_pod(
                namespace, label_selector=label_selector, _request_timeout=self._timeout
            ),
        )
        return list(pod_list.items or [])

    def list_replica_sets(self, namespace: str, label_selector: str) -> list[Any]:
        rs_list = call_api(
            f"list replicasets in {namespace} ({label_selector})",
            lambda: self._apps.list_namespaced_replica_set(
                namespace, label_selector=label_selector, _request_timeout=self._timeout
            ),
        )
        return list(rs_list.items or [])


def selector_string(match_labels: dict[str, str] | None) -> str:
    """A Deployment's ``spec.selector.matchLabels`` as a label selector (``a=b,c=d``)."""
    return ",".join(f"{key}={value}" for key, value in sorted((match_labels or {}).items()))
