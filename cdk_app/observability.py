"""CloudWatch for RadStream: the alarm topics, the alarms and the ``radstream-eks-dashboard``.

Choices:

* **Collectors: CloudWatch agents**, not ADOT. The ``amazon-cloudwatch-observability``
  add-on collects Container Insights (enhanced observability, GPU metrics through its
  DCGM exporter; ``metric_catalog.collector_addon_configuration``, documented keys only);
  the pinned add-on documents no Prometheus scraping, so AWS's standalone CloudWatch agent
  for Prometheus scrapes Triton (``cdk_app/prometheus_collector.py``, its files from
  ``metric_catalog.agent_config`` and ``scrape_config``).
* **Dashboard and alarms: plain ``aws_cloudwatch``**, not cdk-monitoring-constructs.
  Every metric name and dimension comes from the catalog, the alarms need metric
  math (error rate, HPA at max while the queue signal is above target) and a
  composite, and the tests assert the exact widget and alarm properties; the
  library's generated widgets and naming would hide exactly what the tests check,
  and it would be a new dependency.
* **Who is told**: each alarm warns (the warning topic); the composite alarm, an
  OR of the alarms marked ``pages``, pages (the paging topic: e-mail and a paging
  service's HTTPS endpoint). Both topics are KMS-encrypted and refuse non-TLS
  publishers; CloudWatch may publish to them only from this account's alarms.

``python -m cdk_app.observability --export`` writes the dashboard body (tokens as
``<token>``) to ``dashboards/<dashboard name>.json``; a test keeps it equal to
the synthesized one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from cdk_app import metric_catalog as catalog
from cdk_app.config import PlatformConfig, load_config
from cdk_app.network import LOG_RETENTION

REPO_ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_DIR = REPO_ROOT / "dashboards"
MINUTE: Final = cdk.Duration.minutes(1)
GT = cw.ComparisonOperator.GREATER_THAN_THRESHOLD
GTE = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
LT = cw.ComparisonOperator.LESS_THAN_THRESHOLD
BREACHING = cw.TreatMissingData.BREACHING
NOT_BREACHING = cw.TreatMissingData.NOT_BREACHING


@dataclass(frozen=True)
class AlarmSpec:
    """One alarm: why it exists, its threshold and where that comes from, how it is evaluated."""

    key: str  # alarm name suffix and construct id
    title: str  # also the runbook section's heading
    reason: str
    threshold: float
    source: str
    comparison: cw.ComparisonOperator
    period_seconds: int
    evaluation_periods: int
    datapoints_to_alarm: int
    missing_data: cw.TreatMissingData
    pages: bool

    @property
    def anchor(self) -> str:
        """The GitHub-style anchor of the runbook heading ``title``."""
        kept = "".join(c for c in self.title.lower() if c.isalnum() or c in " -_")
        return kept.replace(" ", "-")


def alarm_specs(config: PlatformConfig) -> tuple[AlarmSpec, ...]:
    obs, scaling = config.observability, config.autoscaling
    return (
        AlarmSpec(
            key="error-rate",
            title="Triton error rate above target",
            reason="Failed pipeline requests are failed studies: the brief's error-rate target is breached.",
            threshold=obs.error_rate_percent,
            source="brief: error rate < 1 %; the issue: over 5 minutes (observability.error_rate_percent, "
            "error_rate_window_seconds)",
            comparison=GT,
            period_seconds=obs.error_rate_window_seconds,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            missing_data=NOT_BREACHING,  # no requests, no errors; a silent collector is the heartbeat's
            pages=True,
        ),
        AlarmSpec(
            key="latency-p99",
            title="Pipeline p99 latency above the SLO",
            reason="Pods past saturation: studies queue and Step Functions callers wait.",
            threshold=obs.latency_p99_slo_ms * 1000,  # the metric is in microseconds
            source="p99 0.79 s at a pod's saturating concurrency, 1.53 s beyond it (docs/measurements/"
            "pod_capacity.json); observability.latency_p99_slo_ms",
            comparison=GT,
            period_seconds=60,
            evaluation_periods=obs.latency_evaluation_minutes,
            datapoints_to_alarm=obs.latency_datapoints_to_alarm,
            missing_data=NOT_BREACHING,  # no requests: no latency
            pages=True,
        ),
        AlarmSpec(
            key="availability",
            title="Availability below target",
            reason="The one-minute canary (live, ready, every model READY, one known inference) failed.",
            threshold=obs.availability_target_percent / 100,
            source="brief: availability > 99.9 % (observability.availability_target_percent, over "
            "availability_window_seconds)",
            comparison=LT,
            period_seconds=obs.availability_window_seconds,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            missing_data=BREACHING,  # a canary that does not report cannot show availability
            pages=True,
        ),
        AlarmSpec(
            key="hpa-at-max",
            title="HPA at max replicas with the queue signal above target",
            reason="No capacity left to add while requests queue: latency and rejections follow.",
            threshold=1,
            source="the issue: 10 minutes (observability.hpa_at_max_minutes); autoscaling.max_replicas and "
            "autoscaling.queue_time_target_us",
            comparison=GTE,
            period_seconds=60,
            evaluation_periods=obs.hpa_at_max_minutes,
            datapoints_to_alarm=obs.hpa_at_max_minutes,
            missing_data=NOT_BREACHING,
            pages=True,
        ),
        AlarmSpec(
            key="gpu-pods-pending",
            title="GPU pods unschedulable",
            reason="Triton pods wait for a GPU: the spare placeholder is used up and a new node is slow or "
            "the node group is at its maximum.",
            threshold=0,
            source="the issue: more than 2 minutes (observability.gpu_pending_minutes)",
            comparison=GT,
            period_seconds=60,
            evaluation_periods=obs.gpu_pending_minutes + 1,
            datapoints_to_alarm=obs.gpu_pending_minutes + 1,
            missing_data=NOT_BREACHING,
            pages=False,  # a node burst legitimately waits for a node (3-7 min): warn, let latency page
        ),
        AlarmSpec(
            key="time-to-scale",
            title="Time to scale above target",
            reason="A scale-up took longer than the brief allows from the signal crossing its target to the new "
            "pods serving behind the NLB, or was not served at all (UnservedScaleUps): spare capacity, the image "
            "pre-pull or the NLB registration is missing.",
            threshold=obs.time_to_scale_seconds,
            source="brief: autoscaling response < 2 minutes (observability.time_to_scale_seconds)",
            comparison=GT,
            period_seconds=300,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            # Published when a scale-up is served, and UnservedScaleUps when one is not by its deadline:
            # no data means no scale-up in the period.
            missing_data=NOT_BREACHING,
            pages=False,
        ),
        AlarmSpec(
            key="container-restarts",
            title="Triton container restarted",
            reason="A Triton container restarted (crash, OOM kill or failed liveness probe).",
            threshold=obs.container_restarts_allowed,
            source="brief: pod restarts 0 (observability.container_restarts_allowed)",
            comparison=GT,
            period_seconds=300,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            missing_data=NOT_BREACHING,  # published only after a counted run
            pages=False,
        ),
        AlarmSpec(
            key="ready-replicas-below-minimum",
            title="Ready replicas below minimum",
            reason="Fewer Ready Triton pods than autoscaling.min_replicas: no headroom for a node loss or a burst.",
            threshold=scaling.min_replicas,
            source="autoscaling.min_replicas (2: survives a node loss, the brief's 99.9 %); "
            "observability.ready_replicas_minutes",
            comparison=LT,
            period_seconds=60,
            evaluation_periods=obs.ready_replicas_minutes,
            datapoints_to_alarm=obs.ready_replicas_minutes,
            missing_data=BREACHING,  # no count (Deployment gone, collector failing) is no evidence of capacity
            pages=True,
        ),
        AlarmSpec(
            key="no-metrics",
            title="No Triton metrics arriving",
            reason="Heartbeat: the CloudWatch agent, the scrape or Triton itself is gone, and every other "
            "Triton alarm would stay silent.",
            threshold=1,
            source="observability.heartbeat_minutes; scrape every observability.scrape_interval_seconds",
            comparison=LT,
            period_seconds=60,
            evaluation_periods=obs.heartbeat_minutes,
            datapoints_to_alarm=obs.heartbeat_minutes,
            missing_data=BREACHING,  # missing data is exactly what this alarm is for
            pages=True,
        ),
    )


def runbook_link(config: PlatformConfig, anchor: str) -> str:
    return f"{config.observability.runbook_url}#{anchor}"


class MetricFactory:
    """CloudWatch metrics from the catalog, with this stage's dimension values."""

    def __init__(self, config: PlatformConfig) -> None:
        self.config = config
        self._emitted = catalog.emitted_series()
        workload = config.workload
        self._values = {
            catalog.CLUSTER: config.cluster.name,
            catalog.NAMESPACE: workload.namespace,
            catalog.CI_POD_NAME: workload.deployment_name,
            catalog.CI_SERVICE: workload.service_name,
        }

    def triton(
        self,
        metric: catalog.TritonMetric,
        statistic: str,
        *,
        model: str | None = None,
        quantile: str | None = None,
        period: cdk.Duration = MINUTE,
        label: str | None = None,
    ) -> cw.Metric:
        dims = {catalog.CLUSTER: self.config.cluster.name, catalog.NAMESPACE: self.config.workload.namespace}
        if model is not None:
            dims[catalog.MODEL] = model
        if quantile is not None:
            dims[catalog.QUANTILE] = quantile
        if not any(name == metric.name and set(d) == set(dims) for name, d in self._emitted):
            raise ValueError(f"the collector sends no {metric.name} with dimensions {sorted(dims)}")
        return cw.Metric(
            namespace=self.config.observability.prometheus_namespace,
            metric_name=metric.name,
            dimensions_map=dims,
            statistic=statistic,
            period=period,
            label=label,
        )

    def container_insights(
        self, metric: catalog.ContainerInsightsMetric, statistic: str, label: str | None = None
    ) -> cw.Metric:
        return cw.Metric(
            namespace=catalog.CONTAINER_INSIGHTS_NAMESPACE,
            metric_name=metric.name,
            dimensions_map={name: self._values[name] for name in metric.dimensions},
            statistic=statistic,
            period=MINUTE,
            label=label,
        )

    def hook(
        self, metric: catalog.HookMetric, statistic: str, period: cdk.Duration = MINUTE, label: str | None = None
    ) -> cw.Metric:
        return cw.Metric(
            namespace=self.config.hooks.metrics_namespace,
            metric_name=metric.name,
            dimensions_map={catalog.HOOK_SERVICE: metric.service, catalog.HOOK_STAGE: self.config.stage},
            statistic=statistic,
            period=period,
            label=label,
        )

    # --- Expressions shared by the alarms and the dashboard.

    def time_to_scale_or_unserved(self, period: cdk.Duration) -> cw.MathExpression:
        """The slowest time to scale in the period, or above the target when a scale-up went unserved:
        an unserved scale-up publishes no time to scale, and must still breach."""
        breach = self.config.observability.time_to_scale_seconds + 1
        return cw.MathExpression(
            expression=f"MAX([FILL(tts, 0), IF(FILL(unserved, 0) > 0, {breach}, 0)])",
            using_metrics={
                "tts": self.hook(catalog.TIME_TO_SCALE, "Maximum", period=period),
                "unserved": self.hook(catalog.UNSERVED_SCALE_UPS, "Sum", period=period),
            },
            label="time to scale, or unserved (s)",
            period=period,
        )

    def requests(self, model: str, period: cdk.Duration, suffix: str = "") -> dict[str, cw.IMetric]:
        return {
            f"ok{suffix}": self.triton(catalog.REQUEST_SUCCESS, "Sum", model=model, period=period),
            f"failed{suffix}": self.triton(catalog.REQUEST_FAILURE, "Sum", model=model, period=period),
        }

    def error_rate(self, period: cdk.Duration, label: str = "error rate (%)") -> cw.MathExpression:
        return cw.MathExpression(
            expression="IF((ok + failed) > 0, 100 * failed / (ok + failed), 0)",
            using_metrics=self.requests(catalog.PIPELINE_MODEL, period),
            label=label,
            period=period,
        )

    def per_request(self, metric: catalog.TritonMetric, model: str, suffix: str) -> tuple[str, dict[str, cw.IMetric]]:
        """``metric`` (microseconds, cumulative) per request of ``model`` in a period: an expression term."""
        using = {
            **self.requests(model, MINUTE, suffix),
            f"t{suffix}": self.triton(metric, "Sum", model=model),
        }
        total = f"(ok{suffix} + failed{suffix})"
        return f"IF({total} > 0, t{suffix} / {total}, 0)", using

    def queue_signal(self) -> tuple[str, dict[str, cw.IMetric]]:
        """The HPA's queue signal (microseconds per pipeline request), cluster-wide.

        As ``cdk_app/scaling_signal.py``: per step model, queue time over requests, summed over
        the steps (the ensemble excluded). Cluster-wide each step's ratio weighs pods by their
        requests, where the HPA averages pods; close enough for an alarm that needs 10 minutes.
        """
        terms: list[str] = []
        using: dict[str, cw.IMetric] = {}
        for index, model in enumerate(catalog.STEP_MODELS):
            term, metrics = self.per_request(catalog.QUEUE_DURATION, model, str(index))
            terms.append(term)
            using |= metrics
        return " + ".join(terms), using

    def hpa_at_max(self) -> cw.MathExpression:
        signal, using = self.queue_signal()
        scaling = self.config.autoscaling
        return cw.MathExpression(
            expression=(
                f"IF(FILL(desired, REPEAT) >= {scaling.max_replicas} AND ({signal}) > "
                f"{scaling.queue_time_target_us}, 1, 0)"
            ),
            using_metrics={**using, "desired": self.hook(catalog.DESIRED_REPLICAS, "Minimum")},
            label="HPA at max and queue signal above target (1 = yes)",
            period=MINUTE,
        )


class Observability(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        obs = config.observability
        self.metrics = MetricFactory(config)
        self.key = kms.Key(
            self,
            "Key",
            enable_key_rotation=True,
            description="Encrypts the RadStream alarm topics and the Prometheus metrics log group",
        )
        # CloudWatch alarms publish to the encrypted topics; CloudWatch Logs writes the metric events.
        self.key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        self.key.grant_encrypt_decrypt(iam.ServicePrincipal(f"logs.{cdk.Aws.REGION}.amazonaws.com"))
        # The agent writes the Prometheus metric events here (EMF): created first, so it has a
        # retention and a key. Metric events only (no PHI): destroyed with the stack, because a
        # retained group of this fixed name would stop the stack from being created again.
        self.prometheus_log_group = logs.LogGroup(
            self,
            "PrometheusLogGroup",
            log_group_name=catalog.prometheus_log_group_name(config),
            retention=LOG_RETENTION[obs.log_retention_days],
            encryption_key=self.key,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )

        self.paging_topic = self._topic("PagingTopic", "RadStream: page the on-call")
        for email in obs.paging_emails:
            self.paging_topic.add_subscription(subscriptions.EmailSubscription(email))
        for url in obs.paging_https_endpoints:
            self.paging_topic.add_subscription(
                subscriptions.UrlSubscription(url, protocol=sns.SubscriptionProtocol.HTTPS)
            )
        self.warning_topic = self._topic("WarningTopic", "RadStream: warnings (no page)")
        for email in obs.warning_emails:
            self.warning_topic.add_subscription(subscriptions.EmailSubscription(email))

        self.specs = {spec.key: spec for spec in alarm_specs(config)}
        metrics = self._alarm_metrics()
        self.alarms: dict[str, cw.Alarm] = {key: self._alarm(spec, metrics[key]) for key, spec in self.specs.items()}
        paging = [self.alarms[key] for key, spec in self.specs.items() if spec.pages]
        self.composite = cw.CompositeAlarm(
            self,
            "Page",
            composite_alarm_name=f"{config.stack_name}-page",
            alarm_rule=cw.AlarmRule.any_of(*paging),
            alarm_description=(
                "Pages the on-call when any of these is in ALARM: "
                + ", ".join(self.specs[key].title for key, spec in self.specs.items() if spec.pages)
                + f". Runbook: {runbook_link(config, 'how-paging-works')}"
            ),
        )
        action = cw_actions.SnsAction(self.paging_topic)
        self.composite.add_alarm_action(action)
        self.composite.add_ok_action(action)
        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=obs.dashboard_name, widgets=self._widgets())

    def _topic(self, construct_id: str, display_name: str) -> sns.Topic:
        topic = sns.Topic(self, construct_id, display_name=display_name, master_key=self.key, enforce_ssl=True)
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmsOfThisAccountPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID},
                    "ArnLike": {
                        "aws:SourceArn": cdk.Stack.of(self).format_arn(service="cloudwatch", resource="alarm:*")
                    },
                },
            )
        )
        return topic

    def _alarm_metrics(self) -> dict[str, cw.IMetric]:
        m, obs = self.metrics, self.config.observability
        return {
            "error-rate": m.error_rate(cdk.Duration.seconds(obs.error_rate_window_seconds)),
            "latency-p99": m.triton(catalog.REQUEST_LATENCY, "Maximum", model=catalog.PIPELINE_MODEL),
            "availability": m.hook(
                catalog.AVAILABILITY, "Average", period=cdk.Duration.seconds(obs.availability_window_seconds)
            ),
            "hpa-at-max": m.hpa_at_max(),
            "gpu-pods-pending": m.hook(catalog.UNSCHEDULABLE_GPU_PODS, "Minimum"),
            "time-to-scale": m.time_to_scale_or_unserved(cdk.Duration.minutes(5)),
            "container-restarts": m.hook(catalog.CONTAINER_RESTARTS, "Sum", period=cdk.Duration.minutes(5)),
            "ready-replicas-below-minimum": m.hook(catalog.READY_REPLICAS, "Maximum"),
            "no-metrics": m.triton(catalog.PENDING_REQUESTS, "SampleCount", model=catalog.PIPELINE_MODEL),
        }

    def _alarm(self, spec: AlarmSpec, metric: cw.IMetric) -> cw.Alarm:
        config = self.config
        alarm = cw.Alarm(
            self,
            "".join(part.capitalize() for part in spec.key.split("-")),
            alarm_name=f"{config.stack_name}-{spec.key}",
            alarm_description=(
                f"{spec.title}. {spec.reason} Threshold {spec.threshold:g} from {spec.source}. "
                f"Runbook: {runbook_link(config, spec.anchor)}"
            ),
            metric=metric,
            threshold=spec.threshold,
            comparison_operator=spec.comparison,
            evaluation_periods=spec.evaluation_periods,
            datapoints_to_alarm=spec.datapoints_to_alarm,
            treat_missing_data=spec.missing_data,
        )
        action = cw_actions.SnsAction(self.warning_topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        return alarm

    # --- The dashboard.

    def _widgets(self) -> list[list[cw.IWidget]]:
        m, config = self.metrics, self.config
        obs, scaling = config.observability, config.autoscaling
        pipeline = catalog.PIPELINE_MODEL

        def graph(
            title: str,
            left: Sequence[cw.IMetric],
            *,
            width: int = 8,
            annotations: Sequence[tuple[float, str]] = (),
            right: Sequence[cw.IMetric] = (),
            left_label: str | None = None,
            right_label: str | None = None,
            stacked: bool = False,
        ) -> cw.GraphWidget:
            return cw.GraphWidget(
                title=title,
                left=list(left),
                right=list(right),
                width=width,
                height=6,
                stacked=stacked,
                left_y_axis=cw.YAxisProps(label=left_label, min=0, show_units=False),
                right_y_axis=cw.YAxisProps(label=right_label, min=0, show_units=False) if right else None,
                left_annotations=[cw.HorizontalAnnotation(value=v, label=text) for v, text in annotations] or None,
            )

        def ms(metric: cw.IMetric, label: str, metric_id: str) -> cw.MathExpression:
            return cw.MathExpression(
                expression=f"{metric_id} / 1000", using_metrics={metric_id: metric}, label=label, period=MINUTE
            )

        requests = m.requests(pipeline, MINUTE)
        request_rate = [
            cw.MathExpression(
                expression="(ok + failed) / PERIOD(ok)", using_metrics=requests, label="requests/s", period=MINUTE
            ),
            cw.MathExpression(
                expression="failed / PERIOD(failed)", using_metrics=requests, label="failed/s", period=MINUTE
            ),
        ]
        per_pod = cw.MathExpression(
            expression=(
                f"SEARCH('{{{obs.prometheus_namespace},{','.join(catalog.MODEL_POD_DIMS)}}} "
                f'MetricName="{catalog.REQUEST_SUCCESS.name}" {catalog.MODEL}="{pipeline}" '
                f'{catalog.CLUSTER}="{config.cluster.name}"\', \'Sum\', 60)'
            ),
            label="per pod",
            period=MINUTE,
        )
        latency = [
            ms(m.triton(catalog.REQUEST_LATENCY, "Maximum", model=pipeline, quantile=q), name, name)
            for q, name in ((catalog.P50, "p50"), (catalog.P95, "p95"), (catalog.P99, "p99"))
        ]
        latency.append(
            ms(m.triton(catalog.REQUEST_LATENCY, "Maximum", model=pipeline), "p99 (worst pod, any agent)", "worst")
        )
        queue: list[cw.IMetric] = []
        compute: list[cw.IMetric] = []
        for index, model in enumerate(catalog.STEP_MODELS):
            for target, metric in ((queue, catalog.QUEUE_DURATION), (compute, catalog.COMPUTE_INFER_DURATION)):
                term, using = m.per_request(metric, model, str(index))
                target.append(cw.MathExpression(expression=f"{term} / 1000", using_metrics=using, label=model))
        signal, using = m.queue_signal()
        queue.append(
            cw.MathExpression(expression=f"({signal}) / 1000", using_metrics=using, label="HPA signal (sum of steps)")
        )
        availability = cw.MathExpression(
            expression="100 * a",
            using_metrics={"a": m.hook(catalog.AVAILABILITY, "Average", period=cdk.Duration.hours(1))},
            label="availability, 1 h (%)",
            period=cdk.Duration.hours(1),
        )
        text = [
            f"# RadStream `{config.stage}`: Triton on `{config.cluster.name}`",
            f"Targets (brief): availability > {obs.availability_target_percent:g} %, error rate < "
            f"{obs.error_rate_percent:g} %, autoscaling response < {obs.time_to_scale_seconds} s, "
            f"p99 < {obs.latency_p99_slo_ms} ms. "
            f"Pages: [how paging works]({runbook_link(config, 'how-paging-works')}).",
            "",
            "Runbook: "
            + ", ".join(f"[{spec.title}]({runbook_link(config, spec.anchor)})" for spec in self.specs.values()),
        ]
        return [
            [cw.TextWidget(markdown="\n".join(text), width=24, height=3)],
            [
                cw.AlarmStatusWidget(
                    title="Alarms (the composite pages)",
                    alarms=[self.composite, *self.alarms.values()],
                    width=24,
                    height=3,
                )
            ],
            [
                graph(
                    "Availability (canary) against the target",
                    [availability],
                    annotations=[(obs.availability_target_percent, "target")],
                    left_label="%",
                ),
                graph(
                    "Error rate (pipeline)",
                    [m.error_rate(MINUTE)],
                    annotations=[(obs.error_rate_percent, "target")],
                    left_label="%",
                ),
                graph("Request rate (pipeline)", request_rate, right=[per_pod], left_label="req/s", right_label="/min"),
            ],
            [
                graph(
                    "Latency p50 / p95 / p99 (pipeline)",
                    latency,
                    annotations=[(obs.latency_p99_slo_ms, "p99 SLO")],
                    left_label="ms",
                ),
                graph(
                    "Queue time per request",
                    queue,
                    annotations=[(scaling.queue_time_target_us / 1000, "HPA target")],
                    left_label="ms",
                ),
                graph("Compute time per request", compute, left_label="ms"),
            ],
            [
                graph(
                    "Pod CPU (Triton)",
                    [
                        m.container_insights(catalog.POD_CPU, "Average", "average"),
                        m.container_insights(catalog.POD_CPU, "Maximum", "max"),
                    ],
                    left_label="% of node",
                ),
                graph(
                    "Pod memory (Triton)",
                    [
                        m.container_insights(catalog.POD_MEMORY, "Average", "average"),
                        m.container_insights(catalog.POD_MEMORY, "Maximum", "max"),
                    ],
                    left_label="% of node",
                ),
                graph(
                    "Pods: HPA desired, current, ready, running",
                    [
                        m.hook(catalog.DESIRED_REPLICAS, "Maximum", label="HPA desired"),
                        m.hook(catalog.CURRENT_REPLICAS, "Maximum", label="HPA current (Deployment desired)"),
                        m.hook(catalog.READY_REPLICAS, "Minimum", label="ready"),
                        m.container_insights(catalog.RUNNING_PODS, "Maximum", "running (Container Insights)"),
                    ],
                    annotations=[(scaling.min_replicas, "min"), (scaling.max_replicas, "max")],
                    left_label="pods",
                ),
            ],
            [
                graph(
                    "GPU utilisation",
                    [
                        m.container_insights(catalog.POD_GPU_UTILIZATION, "Average", "Triton pods"),
                        m.container_insights(catalog.NODE_GPU_UTILIZATION, "Average", "GPU nodes"),
                    ],
                    right=[m.triton(catalog.GPU_UTILIZATION, "Average", label="Triton nv_gpu_utilization")],
                    annotations=[(80, "brief: > 80 % in inference")],
                    left_label="%",
                    right_label="0-1",
                ),
                graph(
                    "GPU memory",
                    [
                        m.container_insights(catalog.POD_GPU_MEMORY_USED, "Maximum", "Triton pods (used)"),
                        m.triton(catalog.GPU_MEMORY_USED, "Maximum", label="Triton nv_gpu_memory_used_bytes"),
                    ],
                    right=[m.container_insights(catalog.NODE_GPU_MEMORY_UTILIZATION, "Maximum", "GPU nodes (%)")],
                    left_label="bytes",
                    right_label="%",
                ),
                graph(
                    "Pending requests (Triton queue)",
                    [
                        m.triton(catalog.PENDING_REQUESTS, "Maximum", model=model, label=model)
                        for model in (pipeline, *catalog.STEP_MODELS)
                    ],
                    left_label="requests",
                ),
            ],
            [
                graph(
                    "Nodes",
                    [m.container_insights(catalog.NODE_COUNT, "Maximum", "nodes")],
                    annotations=[(config.cluster.gpu_nodes.max_size, "GPU node group max")],
                    left_label="nodes",
                ),
                graph(
                    "Pending GPU pods",
                    [
                        m.hook(catalog.PENDING_GPU_PODS, "Maximum", label="pending"),
                        m.hook(catalog.UNSCHEDULABLE_GPU_PODS, "Maximum", label="unschedulable"),
                    ],
                    left_label="pods",
                ),
                graph(
                    "Scale events and time to scale",
                    [
                        m.hook(catalog.TIME_TO_SCALE, "Maximum", label="time to scale (s)"),
                        m.hook(catalog.TIME_TO_FULL_SCALE, "Maximum", label="all requested pods serving (s)"),
                        m.hook(catalog.POD_STARTUP, "Maximum", label="pod startup (s)"),
                    ],
                    right=[
                        m.hook(catalog.SCALE_UP_EVENTS, "Sum", label="scale-ups"),
                        m.hook(catalog.SCALE_DOWN_EVENTS, "Sum", label="scale-downs"),
                        m.hook(catalog.UNSERVED_SCALE_UPS, "Sum", label="unserved scale-ups"),
                    ],
                    annotations=[(obs.time_to_scale_seconds, "target")],
                    left_label="s",
                    right_label="events",
                ),
            ],
            [
                graph(
                    "Restarts and crash loops",
                    [
                        m.hook(catalog.CONTAINER_RESTARTS, "Sum", label="container restarts"),
                        m.hook(catalog.CRASH_LOOPING_PODS, "Maximum", label="crash-looping pods"),
                        m.hook(catalog.COLLECTION_FAILURES, "Sum", label="scale-event collection failures"),
                        m.hook(catalog.ORDERING_ERRORS, "Sum", label="scale-event ordering errors"),
                        m.hook(catalog.SIGNAL_UNAVAILABLE, "Sum", label="scale-ups timed without the signal"),
                    ],
                    left_label="count",
                ),
                graph(
                    "Where the time to scale went (stacked)",
                    [
                        m.hook(catalog.SIGNAL_TO_DECISION, "Maximum", label="signal -> HPA decision"),
                        m.hook(catalog.DECISION_TO_SCHEDULED, "Maximum", label="decision -> pod scheduled"),
                        m.hook(catalog.SCHEDULED_TO_READY, "Maximum", label="scheduled -> containers ready"),
                        m.hook(catalog.READY_TO_SERVING, "Maximum", label="ready -> NLB target healthy"),
                    ],
                    annotations=[(obs.time_to_scale_seconds, "target")],
                    left_label="s",
                    stacked=True,
                ),
                graph(
                    "Canary check time",
                    [m.hook(catalog.CANARY_LATENCY, "Maximum", label="canary (ms)")],
                    left_label="ms",
                ),
            ],
        ]


# --- The exported dashboard body.


def render_tokens(value: Any) -> str:
    """A CloudFormation value as text: ``Fn::Join`` of strings flattened, any other token as ``<token>``."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(render_tokens(part) for part in parts)
    return "<token>"


def dashboard_body_from_template(template: Mapping[str, Any]) -> dict[str, Any]:
    """The body of the stack's only dashboard, tokens rendered as ``<token>``."""
    (dashboard,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    body: dict[str, Any] = json.loads(render_tokens(dashboard["Properties"]["DashboardBody"]))
    return body


@dataclass(frozen=True)
class MetricUse:
    """A metric an alarm or a dashboard widget reads (a SEARCH leaves some dimension values open: None)."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str | None], ...]
    used_by: str

    @property
    def dimension_names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.dimensions)


_SEARCH = re.compile(r"SEARCH\('\{(?P<schema>[^}]*)\}(?P<terms>[^']*)'")
_SEARCH_TERM = re.compile(r'(\w+)="([^"]*)"')


def metrics_in_use(template: Mapping[str, Any]) -> list[MetricUse]:
    """Every metric the template's alarms and dashboards read."""
    uses: list[MetricUse] = []
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            where = render_tokens(properties.get("AlarmName", "alarm"))
            stats = [properties] if "MetricName" in properties else []
            stats += [query["MetricStat"]["Metric"] for query in properties.get("Metrics", []) if "MetricStat" in query]
            for stat in stats:
                dims = tuple((d["Name"], d["Value"]) for d in stat.get("Dimensions", []))
                uses.append(MetricUse(stat["Namespace"], stat["MetricName"], dims, where))
        elif resource["Type"] == "AWS::CloudWatch::Dashboard":
            body = json.loads(render_tokens(properties["DashboardBody"]))
            for widget in body["widgets"]:
                where = f"widget {widget['properties'].get('title', widget['type'])!r}"
                for entry in widget["properties"].get("metrics", []):
                    uses.extend(_widget_metric(entry, where))
    return uses


def _widget_metric(entry: Sequence[Any], where: str) -> list[MetricUse]:
    if isinstance(entry[0], Mapping):
        match = _SEARCH.search(str(entry[0].get("expression", "")))
        if match is None:
            return []
        namespace, *names = (part.strip() for part in match.group("schema").split(","))
        terms = dict(_SEARCH_TERM.findall(match.group("terms")))
        dims = tuple((name, terms.get(name)) for name in names)
        return [MetricUse(namespace, terms["MetricName"], dims, where)]
    fields = [part for part in entry if not isinstance(part, Mapping)]
    namespace, name, *pairs = fields
    dims = tuple(zip(pairs[::2], pairs[1::2], strict=True))
    return [MetricUse(namespace, name, dims, where)]


def synthesize_template(config: PlatformConfig) -> dict[str, Any]:
    """The template of a stack holding only this construct (fast: no cluster, no Lambda code)."""
    app = cdk.App()
    stack = cdk.Stack(app, config.stack_name, env=cdk.Environment(account=config.account, region=config.region))
    Observability(stack, "Observability", config=config)
    template: dict[str, Any] = app.synth().get_stack_by_name(config.stack_name).template
    return template


def synthesize_dashboard_body(config: PlatformConfig) -> dict[str, Any]:
    """The dashboard body of ``config``, from a stack holding only this construct."""
    return dashboard_body_from_template(synthesize_template(config))


def export_path(config: PlatformConfig) -> Path:
    return DASHBOARD_DIR / f"{config.observability.dashboard_name}.json"


def dump(body: Mapping[str, Any]) -> str:
    return json.dumps(body, indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export the RadStream CloudWatch dashboard body as JSON")
    parser.add_argument("--export", action="store_true", help="write dashboards/<dashboard name>.json")
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--output", type=Path, help="write here instead")
    args = parser.parse_args(argv)
    config = load_config(args.stage)
    text = dump(synthesize_dashboard_body(config))
    if not args.export and args.output is None:
        sys.stdout.write(text)
        return 0
    path = args.output or export_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
