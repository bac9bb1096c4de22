"""The standalone Prometheus collector's Kubernetes objects: its ConfigMaps hold exactly the
metric catalog's generated files, it discovers pods in the workload namespace only and may
read nothing else, one replica scrapes each Triton pod once, and the pod is hardened."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
import yaml

from cdk_app import metric_catalog as catalog
from cdk_app import prometheus_collector as collector
from cdk_app.config import ConfigError, PrometheusCollectorConfig, load_config
from cdk_app.k8s_workload import METRICS_SCRAPER_NAMESPACES, NAMESPACE_NAME_LABEL, triton_ingress

CONFIG = load_config("dev")


def objects(config: Any = CONFIG) -> dict[tuple[str, str], dict[str, Any]]:
    return {(obj["kind"], obj["metadata"]["name"]): obj for obj in collector.build_collector_objects(config)}


def the_deployment(config: Any = CONFIG) -> dict[str, Any]:
    return objects(config)[("Deployment", "cwagent-prometheus")]


def test_config_maps_hold_exactly_the_catalogs_generated_files():
    found = objects()
    agent = found[("ConfigMap", "prometheus-cwagentconfig")]["data"]
    scrape = found[("ConfigMap", "prometheus-config")]["data"]
    assert set(agent) == {"cwagentconfig.json"} and set(scrape) == {"prometheus.yaml"}
    assert json.loads(agent["cwagentconfig.json"]) == catalog.agent_config(CONFIG)
    assert yaml.safe_load(scrape["prometheus.yaml"]) == catalog.scrape_config(CONFIG)


def test_the_agent_reads_the_files_where_it_looks_for_them():
    (container,) = the_deployment()["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    # The start-up program reads every JSON in /etc/cwagentconfig; the agent config points at prometheus.yaml.
    assert mounts["prometheus-cwagentconfig"] == "/etc/cwagentconfig"
    prometheus = catalog.agent_config(CONFIG)["logs"]["metrics_collected"]["prometheus"]
    assert prometheus["prometheus_config_path"] == f"{mounts['prometheus-config']}/prometheus.yaml"
    volumes = {v["name"]: v for v in the_deployment()["spec"]["template"]["spec"]["volumes"]}
    assert volumes["prometheus-cwagentconfig"]["configMap"]["name"] == "prometheus-cwagentconfig"
    assert volumes["prometheus-config"]["configMap"]["name"] == "prometheus-config"


def test_it_discovers_and_may_read_pods_in_the_workload_namespace_only():
    (job,) = catalog.scrape_config(CONFIG)["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["radstream"]}}]
    found = objects()
    assert not [key for key in found if key[0] in ("ClusterRole", "ClusterRoleBinding")]
    role = found[("Role", "cwagent-prometheus-discovery")]
    assert role["metadata"]["namespace"] == "radstream"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    binding = found[("RoleBinding", "cwagent-prometheus-discovery")]
    assert binding["metadata"]["namespace"] == "radstream"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "cwagent-prometheus", "namespace": "amazon-cloudwatch"}
    ]
    assert the_deployment()["spec"]["template"]["spec"]["serviceAccountName"] == "cwagent-prometheus"


def test_one_replica_and_never_two_at_once():
    spec = the_deployment()["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    with pytest.raises(ConfigError, match="scrape each Triton pod once"):
        PrometheusCollectorConfig(replicas=2)


def test_the_pod_is_hardened_and_sized():
    pod = the_deployment()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 10000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert set(container["resources"]) == {"requests", "limits"}
    # Every path the agent writes is a bounded emptyDir.
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert writable == set(collector.SCRATCH_MOUNTS.values())
    empty = {v["name"]: v["emptyDir"] for v in pod["volumes"] if "emptyDir" in v}
    assert set(empty) == set(collector.SCRATCH_MOUNTS) and all("sizeLimit" in e for e in empty.values())
    assert pod["nodeSelector"] == {"radstream.io/role": "system"}


def test_the_image_is_the_pinned_tag_from_the_config():
    (container,) = the_deployment()["spec"]["template"]["spec"]["containers"]
    addons = CONFIG.cluster.addons
    assert container["image"] == f"public.ecr.aws/cloudwatch-agent/cloudwatch-agent:{addons.cloudwatch_agent_image_tag}"
    assert not container["image"].endswith(":latest")


def test_a_changed_configuration_rolls_the_pod():
    """The agent reads its files at start only: the pod template must change with them."""
    before = the_deployment()["spec"]["template"]["metadata"]["annotations"]
    faster = replace(CONFIG, observability=replace(CONFIG.observability, scrape_interval_seconds=15))
    after = the_deployment(faster)["spec"]["template"]["metadata"]["annotations"]
    assert before[collector.CONFIG_HASH_ANNOTATION] != after[collector.CONFIG_HASH_ANNOTATION]


def test_tritons_network_policy_admits_the_collectors_namespace_on_the_metrics_port():
    assert CONFIG.collector.namespace in METRICS_SCRAPER_NAMESPACES
    rules = triton_ingress(CONFIG)["spec"]["ingress"]
    metrics_rules = [r for r in rules if r["ports"] == [{"protocol": "TCP", "port": CONFIG.workload.metrics_port}]]
    assert any(
        CONFIG.collector.namespace in expression["values"]
        for rule in metrics_rules
        for peer in rule["from"]
        for expression in peer.get("namespaceSelector", {}).get("matchExpressions", [])
        if expression["key"] == NAMESPACE_NAME_LABEL
    )


def test_the_rendered_file_parses_back_to_the_objects():
    built = collector.build_collector_objects(CONFIG)
    assert list(yaml.safe_load_all(collector.render_yaml(built))) == built
