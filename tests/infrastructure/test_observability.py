"""CloudWatch in the synthesized stacks: every alarm (metric, statistic, period,
threshold, comparison, missing data, actions), the composite that pages, the
encrypted TLS-only topics and their subscriptions, the dashboard's widgets, the
collector's configuration inside the add-on, and the exported dashboard body."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pytest
import yaml

from cdk_app import metric_catalog as catalog
from cdk_app.observability import export_path, metrics_in_use, synthesize_template
from tests.infrastructure.conftest import VARIANTS, Synthesized, join_to_text

PROMETHEUS = "ContainerInsights/Prometheus"
PIPELINE = {"ClusterName": "radstream-dev", "Namespace": "radstream", "model": "radstream_pipeline"}
SCALE = {"service": "radstream-scale-events"}
HEALTH = {"service": "radstream-health-check"}
STEPS = ("study_preprocess", "cxr_classifier", "lesion_segmenter")


def metric(namespace: str, name: str, dims: dict[str, str], stat: str, period: int) -> tuple[Any, ...]:
    return (namespace, name, tuple(sorted(dims.items())), stat, period)


def staged(metrics: set[tuple[Any, ...]], stage: str) -> set[tuple[Any, ...]]:
    """Hook metrics (those with a ``service`` dimension) also carry the alarm's own ``Stage``."""
    out = set()
    for namespace, name, dims, stat, period in metrics:
        if any(key == "service" for key, _ in dims):
            dims = tuple(sorted((*dims, ("Stage", stage))))
        out.add((namespace, name, dims, stat, period))
    return out


def step(model: str) -> dict[str, str]:
    return {**PIPELINE, "model": model}


# Independent of the code under test: what each alarm must watch and how.
# key: (metrics (namespace, name, dims, statistic, period), expression pattern or None,
#       threshold, comparison, evaluation periods, datapoints to alarm, missing data, pages)
EXPECTED: dict[str, tuple[Any, ...]] = {
    "error-rate": (
        {
            metric(PROMETHEUS, "nv_inference_request_success", PIPELINE, "Sum", 300),
            metric(PROMETHEUS, "nv_inference_request_failure", PIPELINE, "Sum", 300),
        },
        r"^IF\(\(ok \+ failed\) > 0, 100 \* failed / \(ok \+ failed\), 0\)$",
        1,
        "GreaterThanThreshold",
        1,
        1,
        "notBreaching",
        True,
    ),
    "latency-p99": (
        {metric(PROMETHEUS, "nv_inference_request_summary_us", PIPELINE, "Maximum", 60)},
        None,
        1_000_000,
        "GreaterThanThreshold",
        5,
        3,
        "notBreaching",
        True,
    ),
    "availability": (
        {metric("RadStream", "Availability", HEALTH, "Average", 3600)},
        None,
        0.999,
        "LessThanThreshold",
        1,
        1,
        "breaching",
        True,
    ),
    "hpa-at-max": (
        {metric("RadStream", "DesiredReplicas", SCALE, "Minimum", 60)}
        | {
            metric(PROMETHEUS, name, step(model), "Sum", 60)
            for model in STEPS
            for name in (
                "nv_inference_request_success",
                "nv_inference_request_failure",
                "nv_inference_queue_duration_us",
            )
        },
        r"^IF\(FILL\(desired, REPEAT\) >= {max_replicas} AND \(.*\) > 30000, 1, 0\)$",
        1,
        "GreaterThanOrEqualToThreshold",
        10,
        10,
        "notBreaching",
        True,
    ),
    "gpu-pods-pending": (
        {metric("RadStream", "UnschedulableGpuPods", SCALE, "Minimum", 60)},
        None,
        0,
        "GreaterThanThreshold",
        3,
        3,
        "notBreaching",
        False,
    ),
    "time-to-scale": (
        {
            metric("RadStream", "TimeToScaleSeconds", SCALE, "Maximum", 300),
            metric("RadStream", "UnservedScaleUps", SCALE, "Sum", 300),
        },
        r"^MAX\(\[FILL\(tts, 0\), IF\(FILL\(unserved, 0\) > 0, 121, 0\)\]\)$",
        120,
        "GreaterThanThreshold",
        1,
        1,
        "notBreaching",
        False,
    ),
    "container-restarts": (
        {metric("RadStream", "ContainerRestarts", SCALE, "Sum", 300)},
        None,
        0,
        "GreaterThanThreshold",
        1,
        1,
        "notBreaching",
        False,
    ),
    "ready-replicas-below-minimum": (
        {metric("RadStream", "ReadyReplicas", SCALE, "Maximum", 60)},
        None,
        2,
        "LessThanThreshold",
        3,
        3,
        "breaching",
        True,
    ),
    "no-metrics": (
        {metric(PROMETHEUS, "nv_inference_pending_request_count", PIPELINE, "SampleCount", 60)},
        None,
        1,
        "LessThanThreshold",
        5,
        5,
        "breaching",
        True,
    ),
}


def resource(synth: Synthesized, resource_type: str, **properties: Any) -> tuple[str, dict[str, Any]]:
    found = [
        (key, value)
        for key, value in synth.resources(resource_type).items()
        if all(value["Properties"].get(k) == v for k, v in properties.items())
    ]
    assert len(found) == 1, f"{len(found)} {resource_type} with {properties}"
    return found[0]


def topics_in(resources: dict[str, Any]) -> dict[str, str]:
    """Logical ids of the paging and the warning topic, by their display names."""
    names = {k: r["Properties"]["DisplayName"] for k, r in resources.items() if r["Type"] == "AWS::SNS::Topic"}
    (paging,) = [k for k, name in names.items() if "on-call" in name]
    (warning,) = [k for k, name in names.items() if "warnings" in name]
    return {"paging": paging, "warning": warning}


def topic_ids(synth: Synthesized) -> dict[str, str]:
    return topics_in(synth.json["Resources"])


def alarm_metrics(properties: dict[str, Any]) -> tuple[set[tuple[Any, ...]], str | None]:
    if "MetricName" in properties:
        dims = tuple(sorted((d["Name"], d["Value"]) for d in properties["Dimensions"]))
        stat = (properties["Namespace"], properties["MetricName"], dims, properties["Statistic"], properties["Period"])
        return {stat}, None
    metrics, expressions = set(), []
    for query in properties["Metrics"]:
        if "Expression" in query:
            assert query["ReturnData"] is True
            expressions.append(query["Expression"])
            continue
        assert query["ReturnData"] is False
        stat = query["MetricStat"]
        dims = tuple(sorted((d["Name"], d["Value"]) for d in stat["Metric"]["Dimensions"]))
        metrics.add((stat["Metric"]["Namespace"], stat["Metric"]["MetricName"], dims, stat["Stat"], stat["Period"]))
    (expression,) = expressions
    return metrics, expression


@pytest.mark.parametrize("key", sorted(EXPECTED))
@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_every_alarm_watches_the_right_metric_and_warns(synthesized, variant, key):
    synth = synthesized[variant]
    metrics, pattern, threshold, comparison, periods, datapoints, missing, _pages = EXPECTED[key]
    _, alarm = resource(synth, "AWS::CloudWatch::Alarm", AlarmName=f"{synth.config.stack_name}-{key}")
    props = alarm["Properties"]
    found, expression = alarm_metrics(props)
    # EXPECTED names dev's cluster; each stage's metrics carry its own cluster name.
    cluster = ("ClusterName", PIPELINE["ClusterName"])
    stage_cluster = ("ClusterName", synth.config.cluster.name)
    metrics = {(*m[:2], tuple(sorted(stage_cluster if d == cluster else d for d in m[2])), *m[3:]) for m in metrics}
    assert found == staged(metrics, synth.config.stage)
    if pattern is None:
        assert expression is None
    else:
        assert re.match(pattern.format(max_replicas=synth.config.autoscaling.max_replicas), expression or "")
        assert len(props["Metrics"]) - 1 <= 10, "CloudWatch allows 10 metrics in an alarm's math"
    assert props["Threshold"] == pytest.approx(threshold)
    assert props["ComparisonOperator"] == comparison
    assert props["EvaluationPeriods"] == periods
    assert props["DatapointsToAlarm"] == datapoints
    assert props["TreatMissingData"] == missing
    warning = topic_ids(synth)["warning"]
    assert props["AlarmActions"] == [{"Ref": warning}]
    assert props["OKActions"] == [{"Ref": warning}]
    assert props.get("ActionsEnabled", True) is True
    assert re.search(r"Runbook: docs/runbook\.md#[a-z0-9-]+$", props["AlarmDescription"])


def test_prod_alarms_follow_prod_autoscaling(prod):
    _, alarm = resource(prod, "AWS::CloudWatch::Alarm", AlarmName="RadStream-prod-hpa-at-max")
    (expression,) = [q["Expression"] for q in alarm["Properties"]["Metrics"] if "Expression" in q]
    assert f">= {prod.config.autoscaling.max_replicas} AND" in expression
    assert prod.config.autoscaling.max_replicas == 5


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_composite_pages_on_the_paging_alarms_only(synthesized, variant):
    synth = synthesized[variant]
    assert len(synth.resources("AWS::CloudWatch::Alarm")) == len(EXPECTED)
    _, composite = resource(synth, "AWS::CloudWatch::CompositeAlarm", AlarmName=f"{synth.config.stack_name}-page")
    rule = composite["Properties"]["AlarmRule"]["Fn::Join"][1]
    referenced = {part["Fn::GetAtt"][0] for part in rule if isinstance(part, dict)}
    by_name = {a["Properties"]["AlarmName"]: k for k, a in synth.resources("AWS::CloudWatch::Alarm").items()}
    paging = {by_name[f"{synth.config.stack_name}-{key}"] for key, spec in EXPECTED.items() if spec[-1]}
    assert referenced == paging
    text = "".join(part if isinstance(part, str) else "<arn>" for part in rule)
    assert text == "(" + " OR ".join(['ALARM("<arn>")'] * len(paging)) + ")"
    pager = topic_ids(synth)["paging"]
    assert composite["Properties"]["AlarmActions"] == [{"Ref": pager}]
    assert composite["Properties"]["OKActions"] == [{"Ref": pager}]


def test_topics_are_kms_encrypted_tls_only_and_publishable_by_this_accounts_alarms(dev):
    key_id, key = next((k, v) for k, v in dev.resources("AWS::KMS::Key").items() if k.startswith("Observability"))
    assert key["Properties"]["EnableKeyRotation"] is True
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    cloudwatch = [s for s in statements if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch and set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    for topic_id in topic_ids(dev).values():
        topic = dev.resources("AWS::SNS::Topic")[topic_id]
        assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
        (policy,) = [
            p
            for p in dev.resources("AWS::SNS::TopicPolicy").values()
            if p["Properties"]["Topics"] == [{"Ref": topic_id}]
        ]
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        deny = [s for s in statements if s["Effect"] == "Deny"]
        assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        (allow,) = [s for s in statements if s["Effect"] == "Allow"]
        assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
        assert allow["Action"] == "sns:Publish"
        assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert dev.resources("AWS::SNS::Subscription") == {}  # none configured for dev


def test_subscriptions_come_from_the_config(dev):
    observability = replace(
        dev.config.observability,
        paging_emails=("oncall@radstream.example",),
        paging_https_endpoints=("https://events.pager.example/integration/abc/enqueue",),
        warning_emails=("platform@radstream.example",),
    )
    template = synthesize_template(replace(dev.config, observability=observability).validate())
    topics = topics_in(template["Resources"])
    subscriptions = {
        (r["Properties"]["Protocol"], r["Properties"]["Endpoint"], r["Properties"]["TopicArn"]["Ref"])
        for r in template["Resources"].values()
        if r["Type"] == "AWS::SNS::Subscription"
    }
    assert subscriptions == {
        ("email", "oncall@radstream.example", topics["paging"]),
        ("https", "https://events.pager.example/integration/abc/enqueue", topics["paging"]),
        ("email", "platform@radstream.example", topics["warning"]),
    }


# ---- the dashboard -----------------------------------------------------------------------------------------


def widget_uses(synth: Synthesized) -> dict[str, set[tuple[str, frozenset[tuple[str, str | None]]]]]:
    uses: dict[str, set[tuple[str, frozenset[tuple[str, str | None]]]]] = {}
    for use in metrics_in_use(synth.json):
        if use.used_by.startswith("widget"):
            uses.setdefault(use.used_by, set()).add((use.name, frozenset(use.dimensions)))
    return uses


def names_in(uses: dict[str, set[tuple[str, Any]]], title: str) -> set[str]:
    matching = [v for k, v in uses.items() if title in k]
    assert len(matching) == 1, f"{len(matching)} widgets titled like {title!r}: {sorted(uses)}"
    return {name for name, _ in matching[0]}


REQUIRED_WIDGETS = {
    "Pod CPU": {"pod_cpu_utilization"},
    "Pod memory": {"pod_memory_utilization"},
    "Pods: HPA desired": {"DesiredReplicas", "CurrentReplicas", "ReadyReplicas", "service_number_of_running_pods"},
    "Request rate": {"nv_inference_request_success", "nv_inference_request_failure"},
    "Latency p50 / p95 / p99": {"nv_inference_request_summary_us"},
    "Error rate": {"nv_inference_request_success", "nv_inference_request_failure"},
    "Queue time per request": {"nv_inference_queue_duration_us", "nv_inference_request_success"},
    "GPU utilisation": {"pod_gpu_utilization", "node_gpu_utilization", "nv_gpu_utilization"},
    "GPU memory": {"pod_gpu_memory_used", "nv_gpu_memory_used_bytes", "node_gpu_memory_utilization"},
    "Nodes": {"cluster_node_count"},
    "Pending GPU pods": {"PendingGpuPods", "UnschedulableGpuPods"},
    "Scale events and time to scale": {"ScaleUpEvents", "ScaleDownEvents", "TimeToScaleSeconds", "PodStartupSeconds"},
    "Availability": {"Availability"},
}


@pytest.mark.parametrize("title", sorted(REQUIRED_WIDGETS))
def test_the_dashboard_shows_every_required_metric(dev, title):
    assert REQUIRED_WIDGETS[title] <= names_in(widget_uses(dev), title)


def test_dashboard_latency_quantiles_queue_per_step_and_targets(dev):
    _, dashboard = resource(dev, "AWS::CloudWatch::Dashboard", DashboardName="radstream-dev-eks-dashboard")
    body = json.loads(join_to_text(dashboard["Properties"]["DashboardBody"]))
    widgets = {w["properties"].get("title", w["type"]): w for w in body["widgets"]}
    uses = widget_uses(dev)
    latency = next(v for k, v in uses.items() if "Latency" in k)
    quantiles = {dict(dims).get("quantile") for name, dims in latency}
    assert quantiles == {"0.5", "0.95", "0.99", None}
    queue = next(v for k, v in uses.items() if "Queue time" in k)
    assert {dict(d)["model"] for n, d in queue if n == "nv_inference_queue_duration_us"} == set(STEPS)
    annotations = {
        title: {a["label"]: a["value"] for a in w["properties"].get("annotations", {}).get("horizontal", [])}
        for title, w in widgets.items()
    }
    assert annotations["Availability (canary) against the target"] == {"target": 99.9}
    assert annotations["Error rate (pipeline)"] == {"target": 1}
    assert annotations["Latency p50 / p95 / p99 (pipeline)"] == {"p99 SLO": 1000}
    assert annotations["Queue time per request"] == {"HPA target": 30}
    assert annotations["Scale events and time to scale"] == {"target": 120}
    (alarms,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert len(alarms["properties"]["alarms"]) == len(EXPECTED) + 1
    (text,) = [w for w in body["widgets"] if w["type"] == "text"]
    links = re.findall(r"\]\((docs/runbook\.md#[a-z0-9-]+)\)", text["properties"]["markdown"])
    runbook = (export_path(dev.config).parents[1] / "docs" / "runbook.md").read_text()
    headings = {
        "docs/runbook.md#" + re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^## (.+)$", runbook, flags=re.MULTILINE)
    }
    assert len(links) == len(EXPECTED) + 1
    assert set(links) <= headings


def test_the_committed_dashboard_json_is_the_synthesized_body(dev):
    _, dashboard = resource(dev, "AWS::CloudWatch::Dashboard", DashboardName="radstream-dev-eks-dashboard")
    synthesized = json.loads(join_to_text(dashboard["Properties"]["DashboardBody"]))
    path = export_path(dev.config)
    assert path.exists(), "run: python -m cdk_app.observability --export"
    assert json.loads(path.read_text()) == synthesized, "stale export: run python -m cdk_app.observability --export"


# ---- the collector -----------------------------------------------------------------------------------------


def addon_configuration(synth: Synthesized) -> tuple[str, dict[str, Any]]:
    key, addon = resource(synth, "AWS::EKS::Addon", AddonName="amazon-cloudwatch-observability")
    return key, json.loads(addon["Properties"]["ConfigurationValues"])


def collector_manifest(synth: Synthesized) -> tuple[str, list[dict[str, Any]]]:
    """The KubernetesManifest resource that applies the standalone agent, and its objects."""
    found = [
        (key, json.loads(join_to_text(res["Properties"]["Manifest"])))
        for key, res in synth.resources("Custom::AWSCDK-EKS-KubernetesResource").items()
        if '"cwagent-prometheus"' in join_to_text(res["Properties"]["Manifest"])
    ]
    assert len(found) == 1, "one manifest resource applies the Prometheus collector"
    return found[0]


def collector_files(synth: Synthesized) -> tuple[dict[str, Any], dict[str, Any]]:
    """(cwagentconfig.json, prometheus.yaml) as applied by CDK."""
    _, objects = collector_manifest(synth)
    data: dict[str, str] = {}
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            data |= obj["data"]
    return json.loads(data["cwagentconfig.json"]), yaml.safe_load(data["prometheus.yaml"])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_addon_carries_container_insights_only_and_no_prometheus_values(synthesized, variant):
    """agent.prometheus / targetAllocator are chart values the v6.7.0 add-on does not document."""
    _, values = addon_configuration(synthesized[variant])
    assert set(values) == {"agent", "containerLogs"}
    assert set(values["agent"]) == {"config"}
    assert values["agent"]["config"] == {
        "logs": {
            "metrics_collected": {
                "kubernetes": {"enhanced_container_insights": True, "accelerated_compute_metrics": True}
            }
        }
    }
    text = json.dumps(values)
    assert "prometheus" not in text and "targetAllocator" not in text


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_standalone_agent_scrapes_port_8002_of_the_triton_pods_in_the_workload_namespace(synthesized, variant):
    synth = synthesized[variant]
    agent, prometheus = collector_files(synth)
    assert agent == catalog.agent_config(synth.config)
    assert prometheus == catalog.scrape_config(synth.config)
    (job,) = prometheus["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["radstream"]}}]
    keeps = {rule["source_labels"][0]: rule["regex"] for rule in job["relabel_configs"] if rule["action"] == "keep"}
    assert keeps == {
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": "triton\\-inference\\-server",
        "__meta_kubernetes_pod_container_port_name": "metrics",
        "__meta_kubernetes_pod_container_port_number": "8002",
    }
    _, objects = collector_manifest(synth)
    kinds = {(obj["kind"], obj["metadata"]["namespace"]) for obj in objects}
    assert kinds == {
        ("ServiceAccount", "amazon-cloudwatch"),
        ("ConfigMap", "amazon-cloudwatch"),
        ("Deployment", "amazon-cloudwatch"),
        ("Role", "radstream"),
        ("RoleBinding", "radstream"),
    }


def test_the_collector_is_applied_after_the_addon_its_identity_and_the_workload_namespace(dev):
    key, _ = collector_manifest(dev)
    depends = set(dev.json["Resources"][key]["DependsOn"])
    addon_id, _ = addon_configuration(dev)
    (identity_id,) = [
        k
        for k, r in dev.resources("AWS::EKS::PodIdentityAssociation").items()
        if r["Properties"]["ServiceAccount"] == "cwagent-prometheus"
    ]
    assert {addon_id, identity_id} <= depends
    namespaces = [
        k
        for k, r in dev.resources("Custom::AWSCDK-EKS-KubernetesResource").items()
        if '"kind":"Namespace"' in join_to_text(r["Properties"]["Manifest"]).replace(" ", "")
    ]
    assert set(namespaces) & depends, "the Role lives in the workload namespace: apply after it exists"
    identity = dev.json["Resources"][identity_id]["Properties"]
    assert identity["Namespace"] == "amazon-cloudwatch"
    role_id = identity["RoleArn"]["Fn::GetAtt"][0]
    role = dev.json["Resources"][role_id]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert [join_to_text(arn) for arn in role["ManagedPolicyArns"]] == [
        "arn:<token>:iam::aws:policy/CloudWatchAgentServerPolicy"
    ]


def test_the_collector_keeps_every_prometheus_metric_the_alarms_and_widgets_use(dev):
    agent, prometheus = collector_files(dev)
    declarations = agent["logs"]["metrics_collected"]["prometheus"]["emf_processor"]["metric_declaration"]
    (job,) = prometheus["scrape_configs"]
    (keep_names,) = job["metric_relabel_configs"]
    uses = [u for u in metrics_in_use(dev.json) if u.namespace == PROMETHEUS]
    assert {u.name for u in uses} >= {"nv_inference_request_success", "nv_inference_request_summary_us"}
    for use in uses:
        assert catalog.relabel([keep_names], {"__name__": use.name}) is not None, use
        labels = {name: value or "any" for name, value in use.dimensions}
        sample = catalog.Sample(use.name, {k: v for k, v in labels.items() if k not in ("ClusterName",)}, 1.0)
        extra = {"job": job["job_name"], "ClusterName": labels["ClusterName"]}
        emitted = catalog.select_metrics(declarations, [sample], extra)
        assert any(e.dimension_names and set(e.dimension_names) == use.dimension_names for e in emitted), use


def test_the_agent_writes_into_the_stacks_encrypted_log_group(dev):
    agent, _ = collector_files(dev)
    manifest_id, _ = collector_manifest(dev)
    group_name = agent["logs"]["metrics_collected"]["prometheus"]["log_group_name"]
    group_id, group = resource(dev, "AWS::Logs::LogGroup", LogGroupName=group_name)
    assert group["Properties"]["RetentionInDays"] == 365
    assert "KmsKeyId" in group["Properties"]
    assert group_id in dev.json["Resources"][manifest_id]["DependsOn"]
