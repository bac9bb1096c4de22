"""Autoscaling signal in the cluster: Prometheus scrapes Triton and records the
queue-time signal (cdk_app/scaling_signal.py); prometheus-adapter serves it to
the HPA `triton-hpa` as a Pods metric through the custom metrics API.

Why prometheus-adapter rather than KEDA: the HPA stays a plain autoscaling/v2
object (rendered in k8s_manifests/hpa.yaml, simulated by cdk_app/autoscaling_sim,
CPU kept as a second metric), with no second controller owning it; KEDA's extra
features (scale to zero, event sources) do not apply to a GPU service that must
keep two warm replicas.
"""

from __future__ import annotations

from typing import Any

import yaml
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from cdk_app.config import PlatformConfig
from cdk_app.scaling_signal import adapter_rule, recording_rules, triton_scrape_job

PROMETHEUS_RELEASE = "prometheus"
SYSTEM_NODES = {"radstream.io/role": "system"}


def prometheus_values(config: PlatformConfig) -> dict[str, Any]:
    monitoring = config.monitoring
    interval = f"{monitoring.scrape_interval_seconds}s"
    return {
        # Only the server: the scaling signal needs no alerting or exporters (CloudWatch pages).
        "alertmanager": {"enabled": False},
        "prometheus-pushgateway": {"enabled": False},
        "prometheus-node-exporter": {"enabled": False},
        "kube-state-metrics": {"enabled": False},
        "server": {
            "global": {
                "scrape_interval": interval,
                "evaluation_interval": f"{monitoring.rule_evaluation_interval_seconds}s",
            },
            "retention": monitoring.retention,
            # A short-lived scaling signal: no volume to manage; a restart loses minutes only.
            "persistentVolume": {"enabled": False},
            "nodeSelector": SYSTEM_NODES,
        },
        "serverFiles": {"recording_rules.yml": recording_rules(config)},
        "extraScrapeConfigs": yaml.safe_dump([triton_scrape_job(config)], sort_keys=False),
    }


def prometheus_service_target(config: PlatformConfig) -> str:
    """Prometheus as the service proxy names it: ``<scheme>:<service>:<port>``."""
    return f"http:{PROMETHEUS_RELEASE}-server:80"


def signal_reader_objects(config: PlatformConfig) -> list[dict[str, Any]]:
    """``get`` on Prometheus' service proxy, and nothing else, for the signal readers' group.

    The API server authorizes ``GET /api/v1/namespaces/<ns>/services/<target>/proxy/...`` as verb
    ``get`` on ``services/proxy`` with the name ``<target>`` (``http:prometheus-server:80``): the
    scale-events hook reads the recording rule's evaluations this way (lambdas/scale_events/kube.py).
    """
    monitoring = config.monitoring
    name = "radstream-scaling-signal-reader"
    labels = {"app.kubernetes.io/part-of": "radstream", "app.kubernetes.io/managed-by": "radstream-cdk"}
    metadata = {"name": name, "namespace": monitoring.namespace, "labels": labels}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata,
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["services/proxy"],
                    "resourceNames": [prometheus_service_target(config)],
                    "verbs": ["get"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": monitoring.signal_readers_group}
            ],
        },
    ]


def prometheus_adapter_values(config: PlatformConfig) -> dict[str, Any]:
    return {
        "prometheus": {"url": f"http://{PROMETHEUS_RELEASE}-server.{config.monitoring.namespace}.svc", "port": 80},
        "rules": {"default": False, "custom": [adapter_rule(config)]},
        "nodeSelector": SYSTEM_NODES,
    }


class Autoscaling(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig, cluster: eks.Cluster) -> None:
        super().__init__(scope, construct_id)
        monitoring = config.monitoring
        self.prometheus = eks.HelmChart(  # in this scope, so dependencies on the construct apply
            self,
            "Prometheus",
            cluster=cluster,  # type: ignore[arg-type]
            chart="prometheus",
            repository="https://prometheus-community.github.io/helm-charts",
            version=monitoring.prometheus_chart,
            namespace=monitoring.namespace,
            create_namespace=True,
            release=PROMETHEUS_RELEASE,
            values=prometheus_values(config),
        )
        self.adapter = eks.HelmChart(  # in this scope, so dependencies on the construct apply
            self,
            "PrometheusAdapter",
            cluster=cluster,  # type: ignore[arg-type]
            chart="prometheus-adapter",
            repository="https://prometheus-community.github.io/helm-charts",
            version=monitoring.prometheus_adapter_chart,
            namespace=monitoring.namespace,
            create_namespace=True,
            release="prometheus-adapter",
            values=prometheus_adapter_values(config),
        )
        self.adapter.node.add_dependency(self.prometheus)
        # After the chart, which creates the namespace; deleting these objects leaves Prometheus alone.
        self.signal_readers = eks.KubernetesManifest(
            self,
            "SignalReaders",
            cluster=cluster,  # type: ignore[arg-type]
            manifest=signal_reader_objects(config),
        )
        self.signal_readers.node.add_dependency(self.prometheus)
