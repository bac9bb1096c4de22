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
