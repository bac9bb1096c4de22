"""The metric catalog and what is built from it, without synthesizing anything: the
collector's scrape job and metric declarations (through the same relabelling and
selection the CloudWatch agent applies), the names the hook Lambdas really publish,
the alarm table, the runbook, and the observability settings' validation."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cdk_app import metric_catalog as catalog
from cdk_app.config import ConfigError, ObservabilityConfig, load_config
from cdk_app.observability import alarm_specs
from cdk_app.scaling_signal import TRITON_SCRAPE_JOB
from lambdas.health_check import handler as health_handler
from lambdas.health_check.gate import CANARY, GateReport, StepResult
from lambdas.scale_events import handler as scale_handler
from lambdas.scale_events.collector import ScaleObservation
from tests.conftest import MODEL_REPOSITORY, REPO_ROOT, TRITON_DIR

CONFIG = load_config("dev")
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"


def discovered_target(**overrides: str) -> dict[str, str]:
    """What Kubernetes pod discovery reports for one container port of a Triton pod."""
    return {
        "__address__": "10.42.1.17:8002",
        "__meta_kubernetes_namespace": "radstream",
        "__meta_kubernetes_pod_name": "triton-inference-server-7c9d8-abcde",
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": "triton-inference-server",
        "__meta_kubernetes_pod_container_port_name": "metrics",
        "__meta_kubernetes_pod_container_port_number": "8002",
        **overrides,
    }


def the_job() -> dict[str, Any]:
    (job,) = catalog.scrape_config(CONFIG)["scrape_configs"]
    return job


# ---- the scrape job ------------------------------------------------------------------------------------------


def test_the_scrape_job_keeps_only_port_8002_of_the_triton_pods_in_its_namespace():
    job = the_job()
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["radstream"]}}]
    labels = catalog.relabel(job["relabel_configs"], discovered_target())
    assert labels is not None
    assert labels["Namespace"] == "radstream"
    assert labels["pod_name"] == "triton-inference-server-7c9d8-abcde"
    assert labels["__address__"].endswith(":8002")
    for dropped in (
        {"__meta_kubernetes_pod_container_port_name": "http", "__meta_kubernetes_pod_container_port_number": "8000"},
        {"__meta_kubernetes_pod_container_port_name": "grpc", "__meta_kubernetes_pod_container_port_number": "8001"},
        {"__meta_kubernetes_pod_container_port_number": "9002"},
        {"__meta_kubernetes_pod_label_app_kubernetes_io_name": "gpu-overprovisioning"},
        {"__meta_kubernetes_pod_label_app_kubernetes_io_name": "triton-inference-server-canary"},
    ):
        assert catalog.relabel(job["relabel_configs"], discovered_target(**dropped)) is None, dropped


def test_the_scrape_job_follows_the_workload_config():
    config = replace(CONFIG, workload=replace(CONFIG.workload, namespace="imaging", metrics_port=9102))
    (job,) = catalog.scrape_config(config)["scrape_configs"]
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == ["imaging"]
    target = discovered_target(
        __meta_kubernetes_namespace="imaging", __meta_kubernetes_pod_container_port_number="9102"
    )
    assert catalog.relabel(job["relabel_configs"], target) is not None
    assert catalog.relabel(job["relabel_configs"], discovered_target()) is None


def test_scrape_interval_gives_two_samples_per_cloudwatch_minute():
    settings = catalog.scrape_config(CONFIG)["global"]
    assert settings == {"scrape_interval": "30s", "scrape_timeout": "10s"}


def test_metric_relabelling_keeps_the_catalog_and_summary_parts_and_drops_the_rest():
    (rule,) = the_job()["metric_relabel_configs"]
    for metric in catalog.TRITON_METRICS:
        assert catalog.relabel([rule], {"__name__": metric.name}) is not None, metric.name
    for name in ("nv_inference_request_summary_us_sum", "nv_inference_request_summary_us_count"):
        assert catalog.relabel([rule], {"__name__": name}) is not None
    for name in ("nv_cpu_utilization", "nv_inference_count", "nv_inference_request_success_total", "up"):
        assert catalog.relabel([rule], {"__name__": name}) is None, name


# ---- metric declarations and what the agent emits ----------------------------------------------------------


def test_declarations_are_generated_from_the_catalog():
    declarations = catalog.metric_declarations()
    assert len(declarations) == len(catalog.DECLARATIONS)
    for generated, declared in zip(declarations, catalog.DECLARATIONS, strict=True):
        assert generated["source_labels"] == ["job"]
        assert re.search(generated["label_matcher"], TRITON_SCRAPE_JOB)
        assert not re.search(generated["label_matcher"], f"{TRITON_SCRAPE_JOB}-other")
        assert generated["metric_selectors"] == [f"^({re.escape(m.name)})$" for m in declared.metrics]
        assert generated["dimensions"] == [list(d) for d in declared.dimensions]
        assert all(dims[:2] == ("ClusterName", "Namespace") for dims in declared.dimensions)


def test_every_triton_metric_has_a_unit():
    units = catalog.agent_config(CONFIG)["logs"]["metrics_collected"]["prometheus"]["emf_processor"]["metric_unit"]
    assert set(units) == {m.name for m in catalog.TRITON_METRICS}
    assert units["nv_inference_queue_duration_us"] == "Microseconds"
    assert units["nv_inference_request_success"] == "Count"


def sample(name: str, value: float = 1.0, **labels: str) -> catalog.Sample:
    return catalog.Sample(name, {"model": "radstream_pipeline", "version": "1", **labels}, value)


TARGET_LABELS = {
    "job": TRITON_SCRAPE_JOB,
    "ClusterName": "radstream-cluster",
    "Namespace": "radstream",
    "pod_name": "p-1",
}


def test_selection_gives_per_model_per_pod_and_per_reason_series():
    emitted = catalog.select_metrics(
        catalog.metric_declarations(),
        [sample("nv_inference_request_failure", 2, reason="REJECTED"), sample("nv_inference_request_success", 5)],
        TARGET_LABELS,
    )
    failure = {e.dimension_names for e in emitted if e.name == "nv_inference_request_failure"}
    assert failure == {catalog.MODEL_DIMS, catalog.MODEL_POD_DIMS, catalog.MODEL_REASON_DIMS}
    success = {e.dimension_names for e in emitted if e.name == "nv_inference_request_success"}
    assert success == {catalog.MODEL_DIMS, catalog.MODEL_POD_DIMS}
    per_model = [
        e for e in emitted if e.name == "nv_inference_request_success" and e.dimension_names == catalog.MODEL_DIMS
    ]
    assert per_model[0].dimensions == (
        ("ClusterName", "radstream-cluster"),
        ("Namespace", "radstream"),
        ("model", "radstream_pipeline"),
    )


def test_selection_keeps_summary_quantiles_and_drops_sum_and_count():
    emitted = catalog.select_metrics(
        catalog.metric_declarations(),
        [
            sample("nv_inference_request_summary_us", 900.0, quantile="0.99"),
            sample("nv_inference_request_summary_us_sum", 1e6),
            sample("nv_inference_request_summary_us_count", 10),
        ],
        TARGET_LABELS,
    )
    assert {e.name for e in emitted} == {"nv_inference_request_summary_us"}
    assert catalog.QUANTILE_DIMS in {e.dimension_names for e in emitted}


def test_selection_ignores_other_jobs_and_unlisted_metrics():
    other_job = {**TARGET_LABELS, "job": "kubernetes-pods"}
    assert (
        catalog.select_metrics(catalog.metric_declarations(), [sample("nv_inference_request_success")], other_job) == []
    )
    assert catalog.select_metrics(catalog.metric_declarations(), [sample("nv_inference_count")], TARGET_LABELS) == []


def test_a_dimension_set_whose_labels_are_missing_is_skipped():
    gpu = catalog.Sample("nv_gpu_utilization", {"gpu_uuid": "GPU-1"}, 0.9)
    emitted = catalog.select_metrics(catalog.metric_declarations(), [gpu], TARGET_LABELS)
    assert {e.dimension_names for e in emitted} == {catalog.DEPLOYMENT_DIMS, catalog.POD_DIMS}
    no_pod = {k: v for k, v in TARGET_LABELS.items() if k != "pod_name"}
    emitted = catalog.select_metrics(catalog.metric_declarations(), [gpu], no_pod)
    assert {e.dimension_names for e in emitted} == {catalog.DEPLOYMENT_DIMS}


def test_emitted_series_lists_every_declared_pair():
    series = catalog.emitted_series()
    assert ("nv_inference_request_summary_us", catalog.MODEL_DIMS) in series
    assert ("nv_inference_request_failure", catalog.MODEL_REASON_DIMS) in series
    assert ("nv_inference_request_success", catalog.MODEL_REASON_DIMS) not in series
    assert {m.name for m in catalog.TRITON_METRICS if m.gpu_only} == {
        "nv_gpu_utilization",
        "nv_gpu_memory_used_bytes",
        "nv_gpu_memory_total_bytes",
    }


# ---- the add-on configuration ----------------------------------------------------------------------------


def test_addon_configuration_is_container_insights_with_documented_keys_only():
    """No chart-only Prometheus values (agent.prometheus, targetAllocator) reach the v6.7.0 add-on."""
    values = catalog.collector_addon_configuration(CONFIG)
    assert values == {
        "agent": {
            "config": {
                "logs": {
                    "metrics_collected": {
                        "kubernetes": {"enhanced_container_insights": True, "accelerated_compute_metrics": True}
                    }
                }
            }
        },
        "containerLogs": {"enabled": True},
    }
    text = json.dumps(values)  # plain JSON: the add-on takes it as configuration values
    assert "prometheus" not in text and "targetAllocator" not in text


def test_the_standalone_agent_config_sends_triton_through_emf_only():
    agent = catalog.agent_config(CONFIG)
    assert agent["agent"] == {"region": "us-east-1"}
    (collected,) = agent["logs"]["metrics_collected"]
    assert collected == "prometheus", "the standalone agent collects Prometheus only (no second Container Insights)"
    prometheus = agent["logs"]["metrics_collected"]["prometheus"]
    assert prometheus["prometheus_config_path"] == "/etc/prometheusconfig/prometheus.yaml"
    assert prometheus["cluster_name"] == "radstream-dev"
    assert prometheus["log_group_name"] == "/aws/containerinsights/radstream-dev/prometheus"
    assert prometheus["emf_processor"]["metric_namespace"] == "ContainerInsights/Prometheus"
    assert prometheus["emf_processor"]["metric_declaration"] == catalog.metric_declarations()


# ---- the names the hooks publish ----------------------------------------------------------------------------


def emf_documents(text: str) -> list[dict[str, Any]]:
    return [doc for line in text.splitlines() if line.startswith("{") and "_aws" in (doc := json.loads(line))]


def published(documents: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(namespace, metric name, service dimension) of every metric in EMF documents."""
    found = set()
    for doc in documents:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            assert ["service"] in directive["Dimensions"]
            for metric in directive["Metrics"]:
                found.add((directive["Namespace"], metric["Name"], doc["service"]))
    return found


def test_scale_event_metrics_in_the_catalog_are_what_the_lambda_publishes(capsys):
    scale_handler.metrics.clear_metrics()
    scale_handler.metrics.namespace = CONFIG.hooks.metrics_namespace
    observation = ScaleObservation(
        current_replicas=2,
        desired_replicas=3,
        ready_replicas=2,
        scale_ups=1,
        time_to_scale_s=[65.0],
        time_to_full_scale_s=[80.0],
        unserved_scale_ups=1,
        signal_unavailable=1,
        signal_to_decision_s=[30.0],
        decision_to_scheduled_s=[1.0],
        scheduled_to_ready_s=[24.0],
        ready_to_serving_s=[10.0],
        pod_startup_s=[21.0],
        pod_scheduled_to_ready_s=[19.0],
        pending_gpu_pods=1,
        unschedulable_gpu_pods=1,
    )
    scale_handler.publish(observation)
    scale_handler.metrics.add_metric(name="CollectionFailures", unit="Count", value=1)  # its failure path
    scale_handler.metrics.flush_metrics()
    names = published(emf_documents(capsys.readouterr().out))
    expected = {
        (CONFIG.hooks.metrics_namespace, m.name, m.service)
        for m in catalog.HOOK_METRICS
        if m.service == catalog.SCALE_EVENTS_SERVICE
    }
    assert expected <= names
    assert scale_handler.SERVICE == catalog.SCALE_EVENTS_SERVICE


def test_canary_metrics_in_the_catalog_are_what_the_lambda_publishes(capsys, monkeypatch):
    report = GateReport(mode=CANARY, started_at="now", steps=[StepResult("triton", True, "healthy", 12.0)])
    report.total_ms = 12.0
    monkeypatch.setattr(health_handler.gate, "run_canary", lambda *_args, **_kwargs: report)
    health_handler.metrics.clear_metrics()
    health_handler.metrics.namespace = CONFIG.hooks.metrics_namespace
    health_handler.run_canary(SimpleNamespace(triton_url_cache_seconds=60))  # type: ignore[arg-type]
    health_handler.metrics.flush_metrics()
    names = published(emf_documents(capsys.readouterr().out))
    expected = {
        (CONFIG.hooks.metrics_namespace, m.name, m.service)
        for m in catalog.HOOK_METRICS
        if m.service == catalog.HEALTH_CHECK_SERVICE
    }
    assert expected == names
    assert health_handler.SERVICE == catalog.HEALTH_CHECK_SERVICE


# ---- models and Triton's flags ---------------------------------------------------------------------------


def test_pipeline_and_step_models_match_the_model_repository():
    models = {path.name for path in MODEL_REPOSITORY.iterdir() if (path / "config.pbtxt").exists()}
    assert models == {catalog.PIPELINE_MODEL, *catalog.STEP_MODELS}
    ensemble = (MODEL_REPOSITORY / catalog.PIPELINE_MODEL / "config.pbtxt").read_text()
    assert set(re.findall(r'model_name:\s*"([^"]+)"', ensemble)) == set(catalog.STEP_MODELS)


def test_triton_is_started_with_the_catalog_quantiles_highest_last(tmp_path: Path):
    fake = tmp_path / "tritonserver"
    fake.write_text('#!/usr/bin/env bash\n[[ "${1:-}" == --help ]] && exit 0\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "MODEL_REPOSITORY": str(MODEL_REPOSITORY), "TRITONSERVER_BIN": str(fake)}
    env["TRITON_ADMIN_KEY"] = "k"
    args = subprocess.run(
        ["bash", str(TRITON_DIR / "start_triton.sh")], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "--metrics-config=summary_latencies=true" in args
    (quantiles,) = [a.split("=", 2)[2] for a in args if a.startswith("--metrics-config=summary_quantiles=")]
    pairs = [pair.split(":") for pair in quantiles.split(",")]
    assert dict(pairs) == catalog.SUMMARY_QUANTILES
    assert max(float(q) for q, _ in pairs) == float(pairs[-1][0]) == float(catalog.P99)


# ---- alarms and the runbook ------------------------------------------------------------------------------


def test_alarm_specs_are_complete_and_unique():
    specs = alarm_specs(CONFIG)
    assert {s.key for s in specs} == {
        "error-rate",
        "latency-p99",
        "availability",
        "hpa-at-max",
        "gpu-pods-pending",
        "time-to-scale",
        "container-restarts",
        "ready-replicas-below-minimum",
        "no-metrics",
    }
    assert len({s.anchor for s in specs}) == len(specs)
    for spec in specs:
        assert spec.reason and spec.source, spec.key
        assert 1 <= spec.datapoints_to_alarm <= spec.evaluation_periods
        assert spec.period_seconds % 60 == 0
        assert spec.period_seconds * spec.evaluation_periods <= 86400


def test_thresholds_come_from_the_config():
    config = replace(
        CONFIG,
        observability=replace(
            CONFIG.observability, error_rate_percent=2.5, latency_p99_slo_ms=750, heartbeat_minutes=7
        ),
    )
    specs = {s.key: s for s in alarm_specs(config)}
    assert specs["error-rate"].threshold == 2.5
    assert specs["latency-p99"].threshold == 750_000
    assert specs["no-metrics"].evaluation_periods == 7
    assert specs["ready-replicas-below-minimum"].threshold == config.autoscaling.min_replicas
    assert specs["availability"].threshold == pytest.approx(0.999)


def runbook_sections() -> dict[str, str]:
    text = RUNBOOK.read_text()
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def test_the_runbook_has_a_section_per_alarm_with_three_first_checks():
    sections = runbook_sections()
    for spec in alarm_specs(CONFIG):
        assert spec.title in sections, f"docs/runbook.md lacks '## {spec.title}'"
        body = sections[spec.title]
        assert "**What it means.**" in body, spec.title
        checks = body.split("**First three things to check.**", 1)
        assert len(checks) == 2, spec.title
        assert re.findall(r"^(\d)\. ", checks[1], flags=re.MULTILINE) == ["1", "2", "3"], spec.title


def test_the_runbook_explains_paging_and_how_to_fire_a_test_page():
    sections = runbook_sections()
    assert "How paging works" in sections
    test_page = sections["Fire a test page"]
    assert "aws cloudwatch set-alarm-state" in test_page
    assert '--alarm-name "RadStream-$STAGE-page"' in test_page
    assert "--state-value ALARM" in test_page
    for spec in alarm_specs(CONFIG):
        assert f"`{spec.key}`" in sections["How paging works"], spec.key


# ---- validation of the observability settings --------------------------------------------------------------


def with_observability(**changes: Any) -> Any:
    return replace(CONFIG, observability=replace(ObservabilityConfig(), **changes)).validate()


def test_subscriptions_are_accepted_when_well_formed():
    config = with_observability(
        paging_emails=("oncall@radstream.example",),
        paging_https_endpoints=("https://events.pagerduty.com/integration/abc123/enqueue",),
        warning_emails=("platform+alerts@radstream.example",),
        runbook_url="https://git.example.com/radstream/blob/main/docs/runbook.md",
    )
    assert config.observability.paging_https_endpoints[0].startswith("https://")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"paging_emails": ("oncall",)}, "'oncall' .* is not an e-mail address"),
        ({"warning_emails": ("a@b",)}, "'a@b' .* is not an e-mail address"),
        ({"paging_https_endpoints": ("http://pager.example/hook",)}, r"paging_https_endpoints\[0\]=.* is not an https"),
        ({"paging_https_endpoints": ("https:///nohost",)}, r"paging_https_endpoints\[0\]"),
        ({"runbook_url": "/abs/docs/runbook.md"}, "runbook_url"),
        ({"runbook_url": "ftp://x/runbook.md"}, "runbook_url"),
        ({"dashboard_name": "radstream eks"}, "dashboard_name"),
        ({"error_rate_percent": 0}, "error_rate_percent"),
        ({"availability_target_percent": 100}, "availability_target_percent"),
        ({"error_rate_window_seconds": 90}, "error_rate_window_seconds"),
        ({"latency_datapoints_to_alarm": 6}, "latency_datapoints_to_alarm"),
        ({"log_retention_days": 7}, "log_retention_days"),
        ({"scrape_interval_seconds": 5}, "scrape_interval_seconds"),
        ({"heartbeat_minutes": 0}, "heartbeat_minutes"),
    ],
)
def test_bad_observability_settings_are_rejected(changes, message):
    with pytest.raises(ConfigError, match=message):
        with_observability(**changes)
