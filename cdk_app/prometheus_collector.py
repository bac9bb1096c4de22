"""The standalone CloudWatch agent that scrapes Triton's Prometheus metrics.

AWS's documented path for Prometheus metrics on EKS ("Install the CloudWatch agent with
Prometheus metrics collection on Amazon EKS and Kubernetes clusters",
docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/ContainerInsights-Prometheus-Setup.html;
reference manifest aws-samples/amazon-cloudwatch-container-insights,
``k8s-deployment-manifest-templates/deployment-mode/service/cwagent-prometheus/prometheus-eks.yaml``):
a one-replica Deployment ``cwagent-prometheus`` of the CloudWatch agent image with two
ConfigMaps, the agent configuration at ``/etc/cwagentconfig`` (``cwagentconfig.json``) and
the Prometheus configuration at ``/etc/prometheusconfig`` (``prometheus.yaml``). One
replica scrapes each Triton pod exactly once: no target allocator is needed. The pinned
``amazon-cloudwatch-observability`` add-on (v6.7.0) documents no Prometheus scraping, so it
keeps Container Insights only (``metric_catalog.collector_addon_configuration``).

Both files are ``metric_catalog``'s generators (``agent_config``, ``scrape_config``), so the
series the dashboard and alarms read are the ones this agent is told to send.

Differences from the reference, each for least privilege:

* RBAC: a namespaced Role in the workload namespace (pods: get, list, watch) instead of a
  ClusterRole over nodes, services, endpoints and ingresses: the scrape job's
  ``kubernetes_sd_configs`` is role ``pod`` limited to that namespace, and Prometheus'
  pod discovery reads nothing else.
* Hardened pod: non-root, read-only root filesystem, no capabilities, RuntimeDefault
  seccomp. The image declares no user (amazon-cloudwatch-agent,
  ``amazon-cloudwatch-container-insights/cloudwatch-agent-dockerfile/Dockerfile``); in a
  container (``RUN_IN_CONTAINER=True``) the start-up program translates the JSON from
  ``/etc/cwagentconfig`` into ``/opt/aws/amazon-cloudwatch-agent/etc`` and the agent writes
  its pid file under ``.../var`` (``cmd/start-amazon-cloudwatch-agent``), so those, ``.../logs``
  and ``/tmp`` are emptyDirs and nothing else is written. Read from the source, not run here
  (no Docker); docs/runbook.md says how to check it in a cluster.
* IAM through EKS Pod Identity (a role bound to this ServiceAccount), with the policy AWS's
  guide names, CloudWatchAgentServerPolicy.

It runs in the add-on's ``amazon-cloudwatch`` namespace (``config.collector.namespace``), the
namespace of the reference manifest: Triton's NetworkPolicy already admits that namespace on
the metrics port (``k8s_workload.METRICS_SCRAPER_NAMESPACES``), so the workload's policies
need no change. The add-on creates the namespace, so the CDK construct
(``cdk_app.prometheus_collector_construct``) applies these objects after the add-on;
removing the add-on removes the collector with its namespace.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

# PyYAML ships no type hints; the ignore stays harmless once types-PyYAML is installed.
import yaml

from cdk_app import metric_catalog as catalog
from cdk_app.config import PlatformConfig

Manifest = dict[str, Any]

# The agent reads every JSON file in this folder in a container (the reference's mountPath).
AGENT_CONFIG_DIR: Final = "/etc/cwagentconfig"
AGENT_CONFIG_FILE: Final = "cwagentconfig.json"
AGENT_CONFIG_MAP: Final = "prometheus-cwagentconfig"
PROMETHEUS_CONFIG_MAP: Final = "prometheus-config"
CONTAINER_NAME: Final = "cloudwatch-agent"
AGENT_DIR: Final = "/opt/aws/amazon-cloudwatch-agent"
# Where the agent writes at run time (see the module docstring): emptyDirs on a read-only root.
SCRATCH_MOUNTS: Final = {
    "agent-etc": f"{AGENT_DIR}/etc",
    "agent-var": f"{AGENT_DIR}/var",
    "agent-logs": f"{AGENT_DIR}/logs",
    "tmp": "/tmp",  # noqa: S108
}
# The reference manifest's environment ("Please don't change below envs").
CI_VERSION: Final = "k8s/1.3.34"
CONFIG_HASH_ANNOTATION: Final = "radstream.io/config-sha256"
SYSTEM_NODE_SELECTOR: Final = {"radstream.io/role": "system"}
LABELS_BASE: Final = {"app.kubernetes.io/part-of": "radstream", "app.kubernetes.io/managed-by": "radstream-cdk"}
# checkov acknowledgements scoped to this Deployment (annotations checkov reads).
CHECKOV_SKIPS: Final = {
    "checkov.io/skip1": (
        "CKV_K8S_8=the agent serves no health endpoint in this configuration; a dead agent exits and is restarted"
    ),
    "checkov.io/skip2": "CKV_K8S_9=the agent serves nothing and is no Service endpoint: readiness means nothing",
    "checkov.io/skip3": (
        "CKV_K8S_38=the agent lists Triton pods through the Kubernetes API (Prometheus pod discovery): it needs its"
        " token, bound to a Role that reads pods in the workload namespace only"
    ),
}


def image(config: PlatformConfig) -> str:
    addons = config.cluster.addons
    return f"{addons.cloudwatch_agent_image}:{addons.cloudwatch_agent_image_tag}"


def labels(config: PlatformConfig) -> dict[str, str]:
    return {"app.kubernetes.io/name": config.collector.name, **LABELS_BASE}


def _metadata(config: PlatformConfig, name: str, namespace: str | None = None) -> Manifest:
    return {"name": name, "namespace": namespace or config.collector.namespace, "labels": labels(config)}


def agent_config_json(config: PlatformConfig) -> str:
    return json.dumps(catalog.agent_config(config), indent=2, sort_keys=True) + "\n"


def prometheus_yaml(config: PlatformConfig) -> str:
    return yaml.safe_dump(catalog.scrape_config(config), sort_keys=False)


def config_maps(config: PlatformConfig) -> list[Manifest]:
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _metadata(config, AGENT_CONFIG_MAP),
            "data": {AGENT_CONFIG_FILE: agent_config_json(config)},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _metadata(config, PROMETHEUS_CONFIG_MAP),
            "data": {catalog.PROMETHEUS_CONFIG_FILE: prometheus_yaml(config)},
        },
    ]


def service_account(config: PlatformConfig) -> Manifest:
    # Pod Identity binds the IAM role outside the cluster: no annotation.
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(config, config.collector.service_account_name),
    }


def discovery_role(config: PlatformConfig) -> list[Manifest]:
    """Read pods in the workload namespace, nothing else: what role-``pod`` discovery there needs."""
    name = f"{config.collector.name}-discovery"
    namespace = config.workload.namespace
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _metadata(config, name, namespace),
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _metadata(config, name, namespace),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": config.collector.service_account_name,
                    "namespace": config.collector.namespace,
                }
            ],
        },
    ]


def _config_hash(config: PlatformConfig) -> str:
    """Changes with either file, so a new configuration rolls the pod (the agent reads it at start only)."""
    return hashlib.sha256((agent_config_json(config) + prometheus_yaml(config)).encode()).hexdigest()


def _container(config: PlatformConfig) -> Manifest:
    collector = config.collector
    scratch = [{"name": name, "mountPath": path} for name, path in SCRATCH_MOUNTS.items()]
    return {
        "name": CONTAINER_NAME,
        "image": image(config),
        "imagePullPolicy": "Always",
        "env": [{"name": "CI_VERSION", "value": CI_VERSION}],
        "resources": {
            "requests": {"cpu": collector.cpu_request, "memory": collector.memory_request},
            "limits": {"cpu": collector.cpu_limit, "memory": collector.memory_limit},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": AGENT_CONFIG_MAP, "mountPath": AGENT_CONFIG_DIR, "readOnly": True},
            {"name": PROMETHEUS_CONFIG_MAP, "mountPath": catalog.PROMETHEUS_CONFIG_DIR, "readOnly": True},
            *scratch,
        ],
    }


def deployment(config: PlatformConfig) -> Manifest:
    collector = config.collector
    selector = {"app.kubernetes.io/name": collector.name}
    volumes: list[Manifest] = [
        {"name": AGENT_CONFIG_MAP, "configMap": {"name": AGENT_CONFIG_MAP}},
        {"name": PROMETHEUS_CONFIG_MAP, "configMap": {"name": PROMETHEUS_CONFIG_MAP}},
        *({"name": name, "emptyDir": {"sizeLimit": collector.scratch_size_limit}} for name in SCRATCH_MOUNTS),
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**_metadata(config, collector.name), "annotations": dict(CHECKOV_SKIPS)},
        "spec": {
            # One replica: each Triton pod is scraped once, so counters are counted once.
            "replicas": collector.replicas,
            "selector": {"matchLabels": selector},
            # Never two agents at once (two would double every counter for the overlap).
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {
                    "labels": labels(config),
                    "annotations": {CONFIG_HASH_ANNOTATION: _config_hash(config)},
                },
                "spec": {
                    "serviceAccountName": collector.service_account_name,
                    "automountServiceAccountToken": True,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": collector.termination_grace_period_seconds,
                    "nodeSelector": dict(SYSTEM_NODE_SELECTOR),
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": collector.run_as_user,
                        "runAsGroup": collector.run_as_user,
                        "fsGroup": collector.run_as_user,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [_container(config)],
                    "volumes": volumes,
                },
            },
        },
    }


def build_collector_objects(config: PlatformConfig) -> list[Manifest]:
    """The collector's objects in apply order (its namespace is the add-on's)."""
    return [
        service_account(config),
        *discovery_role(config),
        *config_maps(config),
        deployment(config),
    ]


class _BlockStyleDumper(yaml.SafeDumper):
    """Writes multi-line strings (the ConfigMaps' files) as ``|`` blocks, so the rendered file reads."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockStyleDumper.add_representer(str, _represent_str)


def render_yaml(objects: list[Manifest]) -> str:
    """The objects as a YAML stream (for ``k8s_manifests/``); parses back to the same objects."""
    return yaml.dump_all(objects, Dumper=_BlockStyleDumper, sort_keys=False)
