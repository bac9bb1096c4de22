"""The simulator's HPA controller against Kubernetes' own test cases.

Ported from kubernetes/kubernetes pkg/controller/podautoscaler: each test names
the Go test (and table entry) it reproduces, with the same inputs and expected
replica counts. The Go harness (``replicaCalcTestCase.prepareTestClientSet``)
builds pods ``test-pod-<i>`` with two containers each, a PodReady condition
without a transition time, Go's zero start time unless given, and metric
samples with a zero timestamp and a one-minute window; ``hotCPUCreationTime`` is
now and ``coolCPUCreationTime`` three minutes ago; the calculator runs with
``defaultTestingCPUInitializationPeriod`` (2 min) and
``defaultTestingDelayOfInitialReadinessStatus`` (10 s), tolerance 0.1.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from cdk_app.autoscaling_sim.hpa import (
    DEFAULT_SCALE_DOWN_RULES,
    DEFAULT_SCALE_UP_RULES,
    GO_ZERO_TIME,
    Behavior,
    HorizontalController,
    HpaSpec,
    MetricsError,
    MetricsSnapshot,
    Pod,
    PodMetric,
    PodsMetricSpec,
    ReplicaCalculator,
    ResourceMetricSpec,
    ScaleEvent,
    ScalingPolicy,
    ScalingRules,
    TimestampedRecommendation,
    Tolerances,
    calculate_scale_down_limit_with_behaviors,
    calculate_scale_up_limit,
    calculate_scale_up_limit_with_scaling_rules,
    convert_desired_replicas_with_rules,
    get_replicas_change_per_period,
    milli_value,
)
from cdk_app.config import load_config
from cdk_app.k8s_workload import horizontal_pod_autoscaler

REPO = Path(__file__).resolve().parents[2]
NOW = 1_000_000.0
HOT = NOW  # hotCPUCreationTime()
COOL = NOW - 180.0  # coolCPUCreationTime()
CONTAINERS = 2  # numContainersPerPod
TOLERANCES = Tolerances(0.1, 0.1)
CALC = ReplicaCalculator(cpu_initialization_period=120.0, delay_of_initial_readiness_status=10.0)


def harness_pods(
    current: int,
    *,
    readiness: list[bool] | None = None,
    start_times: list[float] | None = None,
    phases: list[str] | None = None,
    deleting: list[bool] | None = None,
    requests: list[float] | None = None,
) -> list[Pod]:
    """prepareTestClientSet: failed pods are not counted in currentReplicas, so phases may list more pods."""
    count = max(current, len(phases or []))
    pods = []
    for i in range(count):
        request = {} if requests is None or i >= len(requests) else {"cpu": CONTAINERS * milli_value(requests[i])}
        pods.append(
            Pod(
                name=f"test-pod-{i}",
                phase=(phases[i] if phases else "Running"),  # type: ignore[arg-type]
                ready=readiness[i] if readiness and i < len(readiness) else True,
                ready_transition_time=GO_ZERO_TIME,
                start_time=start_times[i] if start_times else GO_ZERO_TIME,
                deleting=deleting[i] if deleting else False,
                requests_milli=request,
            )
        )
    return pods


def cpu_levels(levels: list[int], names: list[str] | None = None) -> dict[str, PodMetric]:
    """prepareTestMetricsClient: each container reports the level, so a pod reports twice it."""
    return {
        (names[i] if names and i < len(names) else f"test-pod-{i}"): PodMetric(CONTAINERS * level, GO_ZERO_TIME, 60.0)
        for i, level in enumerate(levels)
    }


def custom_levels(levels: list[int]) -> dict[str, PodMetric]:
    return {f"test-pod-{i}": PodMetric(level, GO_ZERO_TIME, 60.0) for i, level in enumerate(levels)}


def resource_case(current: int, levels: list[int], target: int, *, requests: list[float] | None = None, **pod_args):
    pods = harness_pods(
        current,
        requests=[1.0] * max(current, len(pod_args.get("phases") or [])) if requests is None else requests,
        **pod_args,
    )
    return CALC.get_resource_replicas(current, target, "cpu", TOLERANCES, pods, cpu_levels(levels), NOW)


# --------------------------------------------------------------------------- replica_calculator_test.go


def test_replica_calc_scale_up():  # TestReplicaCalcScaleUp
    assert resource_case(3, [300, 500, 700], 30) == (5, 50, CONTAINERS * 500)


def test_replica_calc_scale_up_unready_less_scale():  # TestReplicaCalcScaleUpUnreadyLessScale
    result = resource_case(3, [300, 500, 700], 30, readiness=[False, True, True])
    assert result == (4, 60, CONTAINERS * 600)


def test_replica_calc_scale_up_hot_cpu_less_scale():  # TestReplicaCalcScaleUpHotCpuLessScale
    result = resource_case(3, [300, 500, 700], 30, start_times=[HOT, COOL, COOL])
    assert result == (4, 60, CONTAINERS * 600)


def test_replica_calc_scale_up_unready_no_scale():  # TestReplicaCalcScaleUpUnreadyNoScale
    result = resource_case(3, [400, 500, 700], 30, readiness=[True, False, False])
    assert result == (3, 40, CONTAINERS * 400)


def test_replica_calc_scale_hot_cpu_no_scale():  # TestReplicaCalcScaleHotCpuNoScale
    result = resource_case(3, [400, 500, 700], 30, readiness=[True, False, False], start_times=[COOL, HOT, HOT])
    assert result == (3, 40, CONTAINERS * 400)


def test_replica_calc_scale_up_ignores_failed_pods():  # TestReplicaCalcScaleUpIgnoresFailedPods
    result = resource_case(
        2, [500, 700], 30, readiness=[True, True, False, False], phases=["Running", "Running", "Failed", "Failed"]
    )
    assert result == (4, 60, CONTAINERS * 600)


def test_replica_calc_scale_up_ignores_deletion_pods():  # TestReplicaCalcScaleUpIgnoresDeletionPods
    result = resource_case(
        2,
        [500, 700],
        30,
        readiness=[True, True, False, False],
        phases=["Running"] * 4,
        deleting=[False, False, True, True],
    )
    assert result == (4, 60, CONTAINERS * 600)


def test_replica_calc_scale_down():  # TestReplicaCalcScaleDown
    assert resource_case(5, [100, 300, 500, 250, 250], 50) == (3, 28, CONTAINERS * 280)


def test_replica_calc_scale_down_include_unready_pods():  # TestReplicaCalcScaleDownIncludeUnreadyPods
    result = resource_case(5, [100, 300, 500, 250, 250], 50, readiness=[True, True, True, False, False])
    assert result == (2, 30, CONTAINERS * 300)


def test_replica_calc_scale_down_exclude_unscheduled_pods():  # TestReplicaCalcScaleDownExcludeUnscheduledPods
    result = resource_case(
        5, [100], 50, readiness=[True, False, False, False, False], phases=["Running"] + ["Pending"] * 4
    )
    assert result == (1, 10, CONTAINERS * 100)


def test_replica_calc_scale_down_ignore_hot_cpu_pods():  # TestReplicaCalcScaleDownIgnoreHotCpuPods
    result = resource_case(5, [100, 300, 500, 250, 250], 50, start_times=[COOL, COOL, COOL, HOT, HOT])
    assert result == (2, 30, CONTAINERS * 300)


def test_replica_calc_scale_down_ignores_failed_pods():  # TestReplicaCalcScaleDownIgnoresFailedPods
    result = resource_case(
        5,
        [100, 300, 500, 250, 250],
        50,
        readiness=[True] * 5 + [False, False],
        phases=["Running"] * 5 + ["Failed", "Failed"],
    )
    assert result == (3, 28, CONTAINERS * 280)


def test_replica_calc_scale_down_ignores_deletion_pods():  # TestReplicaCalcScaleDownIgnoresDeletionPods
    result = resource_case(
        5,
        [100, 300, 500, 250, 250],
        50,
        readiness=[True] * 5 + [False, False],
        phases=["Running"] * 7,
        deleting=[False] * 5 + [True, True],
    )
    assert result == (3, 28, CONTAINERS * 280)


def test_replica_calc_tolerance():  # TestReplicaCalcTolerance
    result = resource_case(3, [1010, 1030, 1020], 100, requests=[0.9, 1.0, 1.1])
    assert result == (3, 102, CONTAINERS * 1020)


def test_replica_calc_superfluous_metrics():  # TestReplicaCalcSuperfluousMetrics
    assert resource_case(4, [4000, 9500, 3000, 7000, 3200, 2000], 100) == (24, 587, CONTAINERS * 5875)


def test_replica_calc_missing_metrics():  # TestReplicaCalcMissingMetrics
    assert resource_case(4, [400, 95], 100) == (3, 24, 495)


@pytest.mark.parametrize(
    ("level", "utilization"),
    [(1000, 100), (1900, 190), (600, 60)],
    ids=["TestReplicaCalcMissingMetricsNoChangeEq", "...NoChangeGt", "...NoChangeLt"],
)
def test_replica_calc_missing_metrics_no_change(level, utilization):
    assert resource_case(2, [level], 100) == (2, utilization, CONTAINERS * level)


def test_replica_calc_missing_metrics_unready_change():  # TestReplicaCalcMissingMetricsUnreadyChange
    assert resource_case(3, [100, 450], 50, readiness=[False, True, True]) == (3, 45, CONTAINERS * 450)


def test_replica_calc_missing_metrics_hot_cpu_no_change():  # TestReplicaCalcMissingMetricsHotCpuNoChange
    assert resource_case(3, [100, 450], 50, start_times=[HOT, COOL, COOL]) == (3, 45, CONTAINERS * 450)


def test_replica_calc_missing_metrics_unready_scale_up():  # TestReplicaCalcMissingMetricsUnreadyScaleUp
    assert resource_case(3, [100, 2000], 50, readiness=[False, True, True]) == (4, 200, CONTAINERS * 2000)


def test_replica_calc_missing_metrics_hot_cpu_scale_up():  # TestReplicaCalcMissingMetricsHotCpuScaleUp
    result = resource_case(3, [100, 2000], 50, readiness=[False, True, True], start_times=[HOT, COOL, COOL])
    assert result == (4, 200, CONTAINERS * 2000)


def test_replica_calc_missing_metrics_unready_scale_down():  # TestReplicaCalcMissingMetricsUnreadyScaleDown
    result = resource_case(4, [100, 100, 100], 50, readiness=[False, True, True, True])
    assert result == (3, 10, CONTAINERS * 100)


def test_replica_calc_during_rolling_update_with_max_surge():  # TestReplicaCalcDuringRollingUpdateWithMaxSurge
    assert resource_case(2, [100, 100], 50, phases=["Running"] * 3) == (2, 10, CONTAINERS * 100)


def test_replica_calc_disjoint_resources_metrics():  # TestReplicaCalcDisjointResourcesMetrics
    pods = harness_pods(1, requests=[1.0])
    with pytest.raises(MetricsError, match="no metrics returned matched known pods"):
        CALC.get_resource_replicas(1, 100, "cpu", TOLERANCES, pods, cpu_levels([100], ["an-older-pod-name"]), NOW)


def test_replica_calc_empty_metrics():  # TestReplicaCalcEmptyMetrics
    pods = harness_pods(4, requests=[1.0, 1.0, 1.0])
    with pytest.raises(MetricsError, match="no metrics returned from resource metrics API"):
        CALC.get_resource_replicas(4, 100, "cpu", TOLERANCES, pods, {}, NOW)


def test_replica_calc_empty_cpu_request():  # TestReplicaCalcEmptyCPURequest
    with pytest.raises(MetricsError, match="missing request for"):
        resource_case(1, [200], 100, requests=[])


def test_replica_calc_computed_tolerance_alg_implementation():  # TestReplicaCalcComputedToleranceAlgImplementation
    start_pods = 10
    used_total = start_pods * 150
    requested_total = 2 * used_total
    requested_to_used = float(requested_total // used_total)
    per_pod = requested_total // start_pods
    jitter = [100, -100, 10, -10, 2, -2, 1, -1, 0, 0]
    requests = [(per_pod + j) / 1000 for j in jitter]
    target = abs(1 / (requested_to_used * (1 - 0.1))) + 0.01
    final_target = int(target * 100)
    used_ratio = used_total / (requested_total * target)
    final_pods = math.ceil(used_ratio * start_pods)
    levels = [used_total // 10] * 10
    expected_utilization = used_total * 100 // requested_total
    result = resource_case(start_pods, levels, final_target, requests=requests)
    assert result == (final_pods, expected_utilization, CONTAINERS * used_total // 10)
    # Very close to the tolerance margin: no scaling.
    target = abs(1 / (requested_to_used * (1 - 0.1))) + 0.004
    assert resource_case(start_pods, levels, int(target * 100), requests=requests)[0] == start_pods


def custom_case(current: int, levels: list[int], target: int, **pod_args) -> tuple[int, int]:
    pods = harness_pods(current, **pod_args)
    return CALC.get_metric_replicas(current, target, "qps", TOLERANCES, pods, custom_levels(levels), NOW)


def test_replica_calc_scale_up_cm():  # TestReplicaCalcScaleUpCM
    assert custom_case(3, [20000, 10000, 30000], 15000) == (4, 20000)


def test_replica_calc_scale_up_cm_unready_hot_cpu_no_less_scale():  # TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale
    result = custom_case(3, [50000, 10000, 30000], 15000, readiness=[True, True, False], start_times=[COOL, COOL, HOT])
    assert result == (6, 30000)


def test_replica_calc_scale_up_cm_unready_hot_cpu_scale_would_scale_down():
    # TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown
    result = custom_case(3, [50000, 15000, 30000], 15000, readiness=[False, True, False], start_times=[HOT, COOL, HOT])
    assert result == (7, 31666)


def test_replica_calc_scale_up_cm_external_no_labels():  # TestReplicaCalcScaleUpCMExternalNoLabels (a pod metric)
    assert custom_case(1, [8600], 4400) == (2, 8600)


def test_replica_calc_scale_down_cm():  # TestReplicaCalcScaleDownCM
    assert custom_case(5, [12000] * 5, 20000) == (3, 12000)


def test_replica_calc_tolerance_cm():  # TestReplicaCalcToleranceCM
    assert custom_case(3, [20000, 21000, 21000], 20000) == (3, 20666)


def test_plain_metric_pending_pods_count_zero_on_scale_up():
    """calcPlainMetricReplicas: a Pending pod is unready; on a scale-up it counts as 0 (the HPA's brake)."""
    pods = harness_pods(3, phases=["Running", "Running", "Pending"])
    result = CALC.get_metric_replicas(3, 30_000_000, "q", TOLERANCES, pods, custom_levels([90_000_000] * 2), NOW)
    assert result == (6, 90_000_000)  # ratio 3 over 2 pods -> (3+3+0)/3 = 2 -> ceil(2 x 3)


def test_plain_metric_missing_pods_use_the_target_on_scale_down():
    """calcPlainMetricReplicas: on a scale-down a pod without a sample counts as exactly the target."""
    pods = harness_pods(4)
    result = CALC.get_metric_replicas(4, 20_000, "q", TOLERANCES, pods, custom_levels([0, 0]), NOW)
    assert result == (2, 0)  # (0 + 0 + 20000 + 20000) / 4 / 20000 = 0.5 -> ceil(0.5 x 4)


# --------------------------------------------------------------------------- horizontal_test.go


def scaling_rules(pods: int, pods_period: int, percent: int, percent_period: int, window: int) -> ScalingRules:
    """generateScalingRules."""
    policies = []
    if pods:
        policies.append(ScalingPolicy("Pods", pods, pods_period))
    if percent:
        policies.append(ScalingPolicy("Percent", percent, percent_period))
    return ScalingRules(window, "Max", tuple(policies))


def uniform_events(raw: list[int], period: int) -> list[ScaleEvent]:
    """generateEventsUniformDistribution: one event in the middle of each equal segment of the last period."""
    segment = period / len(raw)
    return [ScaleEvent(change, NOW - (period - segment * (i + 1) + segment / 2)) for i, change in enumerate(raw)]


def controller(
    min_replicas: int = 1, max_replicas: int = 1000, behavior: Behavior | None = None
) -> HorizontalController:
    spec = HpaSpec(min_replicas, max_replicas, (ResourceMetricSpec("cpu", average_utilization=50),), behavior)
    return HorizontalController(spec, calculator=CALC)


SCALING_WITH_RULES = [
    # (name, up events, down events, min, max, up rules, down rules, current, prenormalized, expected, condition)
    ("prenormalized desired replicas within range", [], [], 3, 8, None, None, 5, 7, 7, "DesiredWithinRange"),
    ("prenormalized desired replicas < minReplicas", [], [], 2, 8, None, None, 3, 1, 2, "TooFewReplicas"),
    (
        "prenormalized desired replicas within range when minReplicas is 0",
        [],
        [],
        0,
        10,
        None,
        None,
        1,
        0,
        0,
        "DesiredWithinRange",
    ),
    (
        "maxReplicas is the limit because maxReplicas < scaleUpLimit",
        [],
        [],
        1,
        10,
        None,
        None,
        20,
        1000,
        10,
        "TooManyReplicas",
    ),
    (
        "desired replica count is more than the maximum replica count",
        [],
        [],
        100,
        150,
        None,
        None,
        100,
        1000,
        150,
        "TooManyReplicas",
    ),
    (
        "scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies",
        [],
        [],
        1,
        2000,
        scaling_rules(0, 0, 1, 60, 0),
        None,
        3,
        1000,
        4,
        "ScaleUpLimit",
    ),
    ("scaleUp with default behavior", [], [], 1, 1000, None, None, 10, 50, 20, "ScaleUpLimit"),
    (
        "scaleUp with pods policy larger than percent policy",
        [],
        [],
        1,
        1000,
        scaling_rules(100, 60, 100, 60, 0),
        None,
        10,
        500,
        110,
        "ScaleUpLimit",
    ),
    (
        "scaleUp with percent policy larger than pods policy",
        [],
        [],
        1,
        1000,
        scaling_rules(2, 60, 100, 60, 0),
        None,
        10,
        500,
        20,
        "ScaleUpLimit",
    ),
    (
        "scaleUp with spec MaxReplicas limitation with large pod policy",
        [],
        [],
        1,
        1000,
        scaling_rules(100, 60, 0, 0, 0),
        None,
        10,
        50,
        50,
        "DesiredWithinRange",
    ),
    (
        "scaleUp with pod policy limitation",
        [],
        [],
        1,
        1000,
        scaling_rules(30, 60, 0, 0, 0),
        None,
        10,
        50,
        40,
        "ScaleUpLimit",
    ),
    (
        "scaleUp with percent policy limitation",
        [],
        [],
        1,
        1000,
        scaling_rules(0, 0, 200, 60, 0),
        None,
        10,
        50,
        30,
        "ScaleUpLimit",
    ),
    (
        "scaleDown with percent policy larger than pod policy",
        [],
        [],
        1,
        1000,
        None,
        scaling_rules(20, 60, 1, 60, 300),
        100,
        2,
        80,
        "ScaleDownLimit",
    ),
    (
        "scaleDown with pod policy larger than percent policy",
        [],
        [],
        1,
        1000,
        None,
        scaling_rules(2, 60, 1, 60, 300),
        100,
        2,
        98,
        "ScaleDownLimit",
    ),
    (
        "scaleDown with spec MinReplicas limitation with large percent policy",
        [],
        [],
        5,
        1000,
        None,
        scaling_rules(0, 0, 100, 60, 300),
        10,
        2,
        5,
        "TooFewReplicas",
    ),
    (
        "scaleDown with pod policy limitation",
        [],
        [],
        1,
        1000,
        None,
        scaling_rules(5, 60, 0, 0, 300),
        10,
        2,
        5,
        "ScaleDownLimit",
    ),
    (
        "scaleDown with percent policy limitation",
        [],
        [],
        1,
        1000,
        None,
        scaling_rules(0, 0, 50, 60, 300),
        10,
        5,
        5,
        "DesiredWithinRange",
    ),
    (
        "scaleUp with spec MaxReplicas limitation with large pod policy and events",
        [1, 5, 9],
        [],
        1,
        200,
        scaling_rules(300, 60, 0, 0, 0),
        None,
        100,
        500,
        200,
        "TooManyReplicas",
    ),
    (
        "scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events",
        [1, 5, 9],
        [],
        1,
        1000,
        scaling_rules(5, 120, 0, 0, 0),
        None,
        100,
        500,
        100,
        "ScaleUpLimit",
    ),
    (
        "scaleUp with pod policy and previous scale up events",
        [1, 5, 9],
        [],
        1,
        1000,
        scaling_rules(150, 120, 0, 0, 0),
        None,
        100,
        500,
        235,
        "ScaleUpLimit",
    ),
    (
        "scaleUp with percent policy and previous scale up events",
        [1, 5, 9],
        [],
        1,
        1000,
        scaling_rules(0, 0, 200, 120, 0),
        None,
        100,
        500,
        255,
        "ScaleUpLimit",
    ),
    (
        "scaleDown with default policy and previous events",
        [],
        [1, 5, 9],
        1,
        1000,
        None,
        None,
        10,
        5,
        5,
        "DesiredWithinRange",
    ),
    (
        "scaleDown with spec MinReplicas limitation with large pod policy and previous events",
        [],
        [1, 5, 9],
        5,
        1000,
        None,
        scaling_rules(130, 120, 0, 0, 300),
        100,
        0,
        5,
        "TooFewReplicas",
    ),
    (
        "scaleDown with pod policy limitation and previous events",
        [],
        [1, 5, 9],
        1,
        1000,
        None,
        scaling_rules(5, 120, 0, 0, 300),
        100,
        2,
        100,
        "ScaleDownLimit",
    ),
    (
        "scaleDown with percent policy limitation and previous events",
        [],
        [2, 4, 6],
        1,
        1000,
        None,
        scaling_rules(0, 0, 50, 120, 300),
        100,
        0,
        56,
        "ScaleDownLimit",
    ),
    (
        "scaleDown with previous events preventing further scale down",
        [],
        [10, 10, 10],
        1,
        1000,
        None,
        scaling_rules(0, 0, 10, 120, 300),
        100,
        0,
        100,
        "ScaleDownLimit",
    ),
    (
        "scaleDown with with previous events still allowing more scale down",
        [],
        [10, 10, 10],
        1,
        1000,
        None,
        scaling_rules(0, 0, 1000, 120, 300),
        10,
        5,
        5,
        "DesiredWithinRange",
    ),
    (
        "check 'outdated' flag for events for one behavior for up",
        [8, 12, 9, 11],
        [],
        1,
        1000,
        scaling_rules(1000, 60, 0, 0, 0),
        None,
        100,
        200,
        200,
        "DesiredWithinRange",
    ),
    (
        "check that events were marked 'outdated' for two different policies in the behavior for down",
        [],
        [8, 12, 9, 11],
        1,
        1000,
        None,
        scaling_rules(1000, 30, 100, 60, 300),
        100,
        5,
        5,
        "DesiredWithinRange",
    ),
]


@pytest.mark.parametrize(
    ("up_events", "down_events", "min_r", "max_r", "up", "down", "current", "desired", "expected", "condition"),
    [case[1:] for case in SCALING_WITH_RULES],
    ids=[case[0] for case in SCALING_WITH_RULES],
)
def test_scaling_with_rules(up_events, down_events, min_r, max_r, up, down, current, desired, expected, condition):
    """TestScalingWithRules (convertDesiredReplicasWithBehaviorRate), entry by entry."""
    behavior = Behavior(up or DEFAULT_SCALE_UP_RULES, down or DEFAULT_SCALE_DOWN_RULES)
    hc = controller(min_r, max_r, behavior)
    hc.scale_up_events = uniform_events(up_events, 120) if up_events else []
    hc.scale_down_events = uniform_events(down_events, 120) if down_events else []
    assert hc.convert_desired_replicas_with_behavior_rate(NOW, current, desired, min_r, max_r, behavior) == (
        expected,
        condition,
    )


def test_scale_up_with_percent_policy_and_previous_up_and_down_events():
    """TestScalingWithRules: 'scaleUp with percent policy and previous scale up and down events'."""
    behavior = Behavior(scaling_rules(0, 0, 300, 300, 0), DEFAULT_SCALE_DOWN_RULES)
    hc = controller(1, 1000, behavior)
    hc.scale_up_events, hc.scale_down_events = uniform_events([4], 120), uniform_events([2], 120)
    assert hc.convert_desired_replicas_with_behavior_rate(NOW, 6, 24, 1, 1000, behavior) == (16, "ScaleUpLimit")


def test_scale_down_with_percent_policy_and_previous_up_and_down_events():
    """TestScalingWithRules: 'scaleDown with percent policy and previous scale up and down events'."""
    behavior = Behavior(DEFAULT_SCALE_UP_RULES, scaling_rules(0, 0, 50, 180, 0))
    hc = controller(1, 1000, behavior)
    hc.scale_up_events, hc.scale_down_events = uniform_events([2], 120), uniform_events([4], 120)
    assert hc.convert_desired_replicas_with_behavior_rate(NOW, 10, 1, 1, 1000, behavior) == (6, "ScaleDownLimit")


def test_calculate_scale_up_limit_with_min_select_policy():  # TestCalculateScaleUpLimitWithScalingRules
    rules = ScalingRules(300, "Min", (ScalingPolicy("Pods", 2, 60), ScalingPolicy("Percent", 50, 60)))
    assert calculate_scale_up_limit_with_scaling_rules(1, [], [], rules, NOW) == 2


def test_calculate_scale_down_limit_with_min_select_policy():  # TestCalculateScaleDownLimitWithBehaviors
    rules = ScalingRules(300, "Min", (ScalingPolicy("Pods", 2, 60), ScalingPolicy("Percent", 50, 60)))
    assert calculate_scale_down_limit_with_behaviors(5, [], [], rules, NOW) == 3


def test_disabled_select_policy_never_scales():
    rules = ScalingRules(0, "Disabled", (ScalingPolicy("Pods", 4, 15),))
    assert calculate_scale_up_limit_with_scaling_rules(3, [], [], rules, NOW) == 3
    assert calculate_scale_down_limit_with_behaviors(3, [], [], rules, NOW) == 3


@pytest.mark.parametrize(
    ("current", "desired", "min_r", "max_r", "expected", "condition"),
    [
        (5, 7, 3, 8, 7, "DesiredWithinRange"),
        (3, 1, 2, 8, 2, "TooFewReplicas"),
        (1, 0, 0, 10, 0, "DesiredWithinRange"),
        (20, 1000, 1, 10, 10, "TooManyReplicas"),
        (3, 1000, 1, 2000, calculate_scale_up_limit(3), "ScaleUpLimit"),
    ],
)
def test_convert_desired_replicas_with_rules(current, desired, min_r, max_r, expected, condition):
    """TestConvertDesiredReplicasWithRules (no behavior: at most max(2 x current, 4))."""
    assert convert_desired_replicas_with_rules(current, desired, min_r, max_r) == (expected, condition)


@pytest.mark.parametrize(
    ("recommendations", "prenormalized", "expected", "log_length"),
    [
        ([], 5, 5, 1),  # empty log
        ([(4, -120), (5, -60)], 3, 5, 3),  # stabilize
        ([(1, -120), (2, -60)], 3, 3, 3),  # no stabilize
        ([(10, -600), (9, -540)], 3, 3, 2),  # no stabilize - old recommendations
        ([(10, -600), (4, -60), (5, -120), (9, -540)], 3, 5, 4),  # stabilize - old recommendations
    ],
)
def test_normalize_desired_replicas(recommendations, prenormalized, expected, log_length):
    """TestNormalizeDesiredReplicas (stabilizeRecommendation, the 5-minute downscale window)."""
    hc = controller()
    hc.recommendations = [TimestampedRecommendation(r, NOW + dt) for r, dt in recommendations]
    assert hc.stabilize_recommendation(NOW, prenormalized) == expected
    assert len(hc.recommendations) == log_length


@pytest.mark.parametrize(
    ("recommendations", "current", "desired", "expected", "stored", "up_window", "down_window"),
    [
        ([], 100, 5, 5, [5], 0, 0),  # empty recommendations for scaling down
        ([(4, -120), (5, -60)], 100, 3, 5, [4, 5, 3], 0, 180),  # simple scale down stabilization
        ([(4, -120), (5, -60)], 1, 7, 4, [4, 5, 7], 300, 0),  # simple scale up stabilization
        ([(1, -120), (2, -60)], 100, 3, 3, [1, 2, 3], 300, 0),  # no scale down stabilization
        ([(4, -120), (5, -60)], 1, 3, 3, [4, 5, 3], 0, 300),  # no scale up stabilization
        ([(10, -600), (9, -540)], 100, 3, 3, [10, 3], 0, 0),  # no scale down stabilization, reuse element
        ([(10, -600), (9, -540)], 1, 100, 100, [10, 100], 0, 0),  # no scale up stabilization, reuse element
        ([(10, -600), (4, -60), (5, -120), (9, -540)], 100, 3, 5, [10, 4, 5, 3], 0, 180),  # reuse obsolete
        ([(10, -6000), (6, -60), (5, -120), (9, -180)], 1, 100, 5, [100, 6, 5, 9], 300, 0),  # up, reuse obsolete
        ([(2, -6000), (3, -180)], 2, 1, 2, None, 300, 300),  # do not scale up when prenormalized rec goes down
        ([(2, -6000), (1, -180)], 2, 3, 2, None, 300, 300),  # do not scale down when prenormalized rec goes up
    ],
)
def test_normalize_desired_replicas_with_behavior(
    recommendations, current, desired, expected, stored, up_window, down_window
):
    """TestNormalizeDesiredReplicasWithBehavior (stabilizeRecommendationWithBehaviors), entry by entry."""
    hc = controller()
    hc.recommendations = [TimestampedRecommendation(r, NOW + dt) for r, dt in recommendations]
    result, _ = hc.stabilize_recommendation_with_behaviors(NOW, current, desired, up_window, down_window)
    assert result == expected
    if stored is not None:
        assert [r.recommendation for r in hc.recommendations] == stored


@pytest.mark.parametrize(
    ("previous", "rules", "expected_change", "stored"),
    [
        ([], scaling_rules(10, 60, 100, 60, 0), 0, [(5, False)]),  # empty entries with two-policy-behavior
        ([(7, -61)], scaling_rules(10, 60, 100, 60, 0), 0, [(5, False)]),  # one outdated entry to be replaced
        ([(7, -58)], scaling_rules(10, 60, 100, 60, 0), 7, [(7, False), (5, False)]),  # one actual entry
        ([(7, -61), (6, -59)], scaling_rules(10, 60, 0, 0, 0), 6, [(5, False), (6, False)]),  # one replaced
        (
            [(8, -29), (6, -59), (7, -61), (9, -61)],
            scaling_rules(10, 60, 100, 30, 0),
            14,
            [(8, False), (6, False), (7, True), (5, False)],
        ),  # replace one entry, use policies with different periods
        ([(7, -58), (6, -59)], scaling_rules(10, 120, 100, 30, 0), 13, [(7, False), (6, False), (5, False)]),
    ],
)
def test_store_scale_events(previous, rules, expected_change, stored):
    """TestStoreScaleEvents: outdated events are reused, the others kept."""
    for direction in ("up", "down"):
        behavior = Behavior(rules, rules)
        hc = controller(behavior=behavior)
        events = [ScaleEvent(change, NOW + dt) for change, dt in previous]
        if direction == "up":
            hc.scale_up_events = events
            assert get_replicas_change_per_period(60, hc.scale_up_events, NOW) == expected_change
            hc.store_scale_event(NOW, 10, 15)
            got = hc.scale_up_events
        else:
            hc.scale_down_events = events
            hc.store_scale_event(NOW, 10, 5)
            got = hc.scale_down_events
        assert [(e.replica_change, e.outdated) for e in got] == stored


def test_store_scale_events_without_behavior_stores_nothing():  # TestStoreScaleEvents: default behavior
    hc = controller()
    hc.store_scale_event(NOW, 10, 15)
    assert hc.scale_up_events == []


# --------------------------------------------------------------------------- the reconcile loop


def queue_and_cpu_spec(behavior: Behavior | None = None) -> HpaSpec:
    metrics = (PodsMetricSpec("queue", 30_000_000), ResourceMetricSpec("cpu", average_utilization=70))
    return HpaSpec(2, 6, metrics, behavior)


def ready_pods(count: int, now: float = NOW) -> list[Pod]:
    """Pods Ready for an hour (past the CPU initialization period)."""
    return [
        Pod(f"p{i}", start_time=now - 3600, ready_transition_time=now - 3600, requests_milli={"cpu": 2000})
        for i in range(count)
    ]


def test_scale_up_with_one_metric_empty():
    """TestScaleUpOneMetricEmpty: a failing metric does not block a scale-up the other one asks for."""
    hc = HorizontalController(queue_and_cpu_spec(Behavior(DEFAULT_SCALE_UP_RULES, DEFAULT_SCALE_DOWN_RULES)))
    cpu = {f"p{i}": PodMetric(2000, NOW - 15, 15) for i in range(3)}  # 100 % of the request
    decision = hc.reconcile(NOW, 3, ready_pods(3), MetricsSnapshot(resource={"cpu": cpu}))
    assert decision.desired_replicas == 5  # ceil(100/70 x 3)
    assert decision.error is not None and "1 invalid out of 2" in decision.error


def test_no_scale_down_with_one_metric_empty():
    """TestNoScaleDownOneMetricEmpty: with a metric missing, the controller never scales down."""
    hc = HorizontalController(queue_and_cpu_spec(Behavior(DEFAULT_SCALE_UP_RULES, DEFAULT_SCALE_DOWN_RULES)))
    cpu = {f"p{i}": PodMetric(100, NOW - 15, 15) for i in range(5)}
    decision = hc.reconcile(NOW, 5, ready_pods(5), MetricsSnapshot(resource={"cpu": cpu}))
    assert (decision.desired_replicas, decision.rescale) == (5, False)


def test_the_larger_proposal_wins():
    hc = HorizontalController(queue_and_cpu_spec(Behavior(DEFAULT_SCALE_UP_RULES, DEFAULT_SCALE_DOWN_RULES)))
    queue = {f"p{i}": PodMetric(60_000_000, NOW - 30, 60) for i in range(2)}  # 2 x the target
    cpu = {f"p{i}": PodMetric(200, NOW - 15, 15) for i in range(2)}  # 10 %
    decision = hc.reconcile(NOW, 2, ready_pods(2), MetricsSnapshot(resource={"cpu": cpu}, pods={"queue": queue}))
    assert decision.desired_replicas == 4
    assert [p.replicas for p in decision.proposals] == [4, 1]


def test_seventy_percent_target_waits_for_seventy_seven():
    """The brief's fact: with a 70 % CPU target nothing scales until CPU passes 77 %."""
    spec = HpaSpec(1, 5, (ResourceMetricSpec("cpu", average_utilization=70),), None)
    for utilization, expected in ((77, 1), (78, 2)):
        hc = HorizontalController(spec)
        cpu = {"p0": PodMetric(utilization * 20, NOW - 15, 15)}
        assert hc.reconcile(NOW, 1, ready_pods(1), MetricsSnapshot(resource={"cpu": cpu})).desired_replicas == expected


def test_scale_down_waits_for_the_stabilization_window():
    behavior = Behavior(DEFAULT_SCALE_UP_RULES, ScalingRules(180, "Max", (ScalingPolicy("Pods", 1, 60),)))
    hc = HorizontalController(queue_and_cpu_spec(behavior))
    idle = MetricsSnapshot(
        resource={"cpu": {f"p{i}": PodMetric(20, 0, 15) for i in range(4)}},
        pods={"queue": {f"p{i}": PodMetric(0, 0, 60) for i in range(4)}},
    )
    busy = MetricsSnapshot(
        pods={"queue": {f"p{i}": PodMetric(30_000_000, 0, 60) for i in range(4)}},
        resource={"cpu": {f"p{i}": PodMetric(1400, 0, 15) for i in range(4)}},
    )
    assert hc.reconcile(0.0, 4, ready_pods(4, 0.0), busy).desired_replicas == 4
    replicas, times = 4, []
    for now in range(15, 600, 15):
        decision = hc.reconcile(float(now), replicas, ready_pods(replicas, 0.0), idle)
        if decision.desired_replicas != replicas:
            times.append(now)
            replicas = decision.desired_replicas
    assert times == [180, 240]  # the window, then one pod per 60 s down to minReplicas


def test_default_behavior_scales_up_at_most_double_or_four():
    """No behavior: convertDesiredReplicasWithRules caps a scale-up at max(2 x current, 4)."""
    spec = HpaSpec(1, 20, (ResourceMetricSpec("cpu", average_utilization=10),), None)
    hc = HorizontalController(spec)
    cpu = {"p0": PodMetric(2000, NOW - 15, 15)}
    assert hc.reconcile(NOW, 1, ready_pods(1), MetricsSnapshot(resource={"cpu": cpu})).desired_replicas == 4


def test_bounds_are_enforced_before_metrics():
    spec = HpaSpec(2, 4, (ResourceMetricSpec("cpu", average_utilization=70),), None)
    assert HorizontalController(spec).reconcile(NOW, 1, [], MetricsSnapshot()).desired_replicas == 2
    assert HorizontalController(spec).reconcile(NOW, 6, [], MetricsSnapshot()).desired_replicas == 4


def test_configurable_tolerance_from_behavior():
    behavior = Behavior(
        ScalingRules(0, "Max", DEFAULT_SCALE_UP_RULES.policies, tolerance=0.05), DEFAULT_SCALE_DOWN_RULES
    )
    hc = HorizontalController(HpaSpec(1, 5, (ResourceMetricSpec("cpu", average_utilization=70),), behavior))
    assert hc.tolerances() == Tolerances(scale_down=0.1, scale_up=0.05)


# --------------------------------------------------------------------------- the HPA object


def test_spec_from_the_rendered_manifest_matches_the_builder():
    rendered = [d for d in yaml.safe_load_all((REPO / "k8s_manifests" / "hpa.yaml").read_text()) if d]
    (hpa,) = [d for d in rendered if d["kind"] == "HorizontalPodAutoscaler"]
    config = load_config("dev")
    assert HpaSpec.from_manifest(hpa) == HpaSpec.from_manifest(horizontal_pod_autoscaler(config))


def test_spec_reads_both_metric_types_and_behavior():
    config = load_config("dev")
    spec = HpaSpec.from_manifest(horizontal_pod_autoscaler(config))
    scaling = config.autoscaling
    assert (spec.min_replicas, spec.max_replicas) == (scaling.min_replicas, scaling.max_replicas)
    pods_metrics = [m for m in spec.metrics if isinstance(m, PodsMetricSpec)]
    cpu_metrics = [m for m in spec.metrics if isinstance(m, ResourceMetricSpec)]
    assert [m.average_value_milli for m in pods_metrics] == [scaling.queue_time_target_us * 1000]
    assert [m.average_utilization for m in cpu_metrics] == [scaling.cpu_target_percent]
    assert spec.behavior is not None
    assert spec.behavior.scale_down.stabilization_window_seconds == scaling.scale_down_stabilization_seconds


def test_api_server_defaults():
    """defaults.go: minReplicas 1, CPU 80 % without metrics, default rules inside a partial behavior."""
    spec = HpaSpec.from_manifest({"spec": {"maxReplicas": 3, "behavior": {"scaleDown": {"policies": []}}}})
    assert spec.min_replicas == 1
    assert spec.metrics == (ResourceMetricSpec("cpu", average_utilization=80),)
    assert spec.behavior is not None
    assert spec.behavior.scale_up == DEFAULT_SCALE_UP_RULES
    assert spec.behavior.scale_down.stabilization_window_seconds is None
    assert HpaSpec.from_manifest({"spec": {"maxReplicas": 3}}).behavior is None


@pytest.mark.parametrize(
    ("text", "milli"),
    [
        ("30000", 30_000_000),
        (30000, 30_000_000),
        ("30k", 30_000_000),
        ("500m", 500),
        ("1.5", 1500),
        ("1e3", 1_000_000),
        ("1Ki", 1_024_000),
        ("0.0001", 1),
    ],
)
def test_quantities_as_milli_values(text, milli):
    assert milli_value(text) == milli
