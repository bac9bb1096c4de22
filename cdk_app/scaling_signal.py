"""Triton's own load signal for autoscaling: recording rules, scrape job and the
prometheus-adapter rule, built from the config as plain data.

The signal is the average time a pipeline request waits in Triton's scheduler
queues, per pod, over ``monitoring.rate_window``:

    per step (model), per pod:  rate(queue_duration_us) / rate(requests)
    per pod:                    sum of the steps' averages

Why this shape (several published queries get it wrong):

* Ratio of rates, per model, per pod. Dividing sums taken over different label
  sets, or averaging ratios across pods, weights busy and idle pods wrongly.
* Requests are successes plus failures: both spent their queue time. They are
  summed inside one selector: ``success + failure`` as two vectors silently drops
  every pod and model without a failure series (a binary operator needs both sides).
* The ensemble ``radstream_pipeline`` is excluded. Its counters aggregate its
  steps' work, so adding it to its steps counts every request twice. Each pipeline
  request passes each step once, so the sum of the steps' per-request queue times
  is the total queueing one request accumulates (an upper bound of the delay it
  adds, since the two networks run in parallel): conservative for scale-up.
* An idle pod reports 0 (the denominator is clamped), never NaN, so the HPA sees
  every pod; a pod whose requests are all stuck reports a very large value.
"""

from __future__ import annotations

from typing import Any, Final

from cdk_app.config import PlatformConfig

ENSEMBLE_MODEL: Final = "radstream_pipeline"
TRITON_SCRAPE_JOB: Final = "radstream-triton"
STEP_QUEUE_RULE: Final = "radstream:triton_step_queue_us_per_request:rate"
POD_QUEUE_RULE: Final = "radstream:triton_queue_time_per_request_us"
POD_QUEUE_COMPUTE_RATIO_RULE: Final = "radstream:triton_queue_to_compute_ratio"
POD_THROUGHPUT_RULE: Final = "radstream:triton_pipeline_requests_per_second"
# Requests per second below which a step counts as idle: avoids dividing by zero.
IDLE_RATE: Final = 1e-6


def _step_selector(config: PlatformConfig) -> str:
    return f'namespace="{config.workload.namespace}", model!="{ENSEMBLE_MODEL}"'


def recording_rules(config: PlatformConfig) -> dict[str, Any]:
    """A Prometheus rules file (dict) with the scaling signal and two companions."""
    window = config.monitoring.rate_window
    steps = _step_selector(config)
    by = "namespace, pod, model"
    # One selector for both counters: "success + failure" as two vectors would drop every
    # pod and model that has no failure series yet (PromQL binary operators need both sides).
    requests = f'sum by ({by}) (rate({{__name__=~"nv_inference_request_(success|failure)", {steps}}}[{window}]))'
    step_queue = f"sum by ({by}) (rate(nv_inference_queue_duration_us{{{steps}}}[{window}]))"
    pod_queue = f"sum by (namespace, pod) (rate(nv_inference_queue_duration_us{{{steps}}}[{window}]))"
    pod_compute = f"sum by (namespace, pod) (rate(nv_inference_compute_infer_duration_us{{{steps}}}[{window}]))"
    pipeline = f'namespace="{config.workload.namespace}", model="{ENSEMBLE_MODEL}"'
    return {
        "groups": [
            {
                "name": "radstream-triton-scaling",
                "interval": f"{config.monitoring.rule_evaluation_interval_seconds}s",
                "rules": [
                    {
                        "record": STEP_QUEUE_RULE,
                        "expr": f"{step_queue}\n/\nclamp_min({requests}, {IDLE_RATE})",
                    },
                    {"record": POD_QUEUE_RULE, "expr": f"sum by (namespace, pod) ({STEP_QUEUE_RULE})"},
                    {
                        "record": POD_QUEUE_COMPUTE_RATIO_RULE,
                        "expr": f"{pod_queue}\n/\nclamp_min({pod_compute}, {IDLE_RATE})",
                    },
                    {
                        "record": POD_THROUGHPUT_RULE,
                        "expr": (
                            f"sum by (namespace, pod) (rate(nv_inference_request_success{{{pipeline}}}[{window}]))"
                        ),
                    },
                ],
            }
        ]
    }


def triton_scrape_job(config: PlatformConfig) -> dict[str, Any]:
    """Scrape every Triton pod's metrics port, labelled with its namespace and pod."""
    workload = config.workload
    return {
        "job_name": TRITON_SCRAPE_JOB,
        "scrape_interval": f"{config.monitoring.scrape_interval_seconds}s",
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [workload.namespace]}}],
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
                "regex": workload.app_label,
                "action": "keep",
            },
            {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "metrics", "action": "keep"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }


def adapter_rule(config: PlatformConfig) -> dict[str, Any]:
    """prometheus-adapter custom-metrics rule exposing the signal as a Pods metric."""
    return {
        "seriesQuery": f'{POD_QUEUE_RULE}{{namespace!="",pod!=""}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": f"^{POD_QUEUE_RULE}$", "as": config.autoscaling.queue_metric_name},
        # The series is already per pod; max() only drops labels the HPA does not use.
        "metricsQuery": "max(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
    }


def hpa_queue_metric(config: PlatformConfig) -> dict[str, Any]:
    """The HPA's Pods metric entry for the signal."""
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": config.autoscaling.queue_metric_name},
            "target": {"type": "AverageValue", "averageValue": str(config.autoscaling.queue_time_target_us)},
        },
    }
