"""A configuration that cannot work fails with one line naming the field."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from cdk_app.config import STAGES, ConfigError, load_config


def _gpu_nodes(**changes):
    cluster = STAGES["dev"].cluster
    return replace(STAGES["dev"], cluster=replace(cluster, gpu_nodes=replace(cluster.gpu_nodes, **changes)))


def _autoscaling(**changes):
    return replace(STAGES["dev"], autoscaling=replace(STAGES["dev"].autoscaling, **changes))


def _workload(**changes):
    return replace(STAGES["dev"], workload=replace(STAGES["dev"].workload, **changes))


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_shipped_stages_are_valid(stage):
    config = load_config(stage)
    assert config.autoscaling.max_replicas * config.workload.gpus_per_pod <= config.cluster.max_gpus


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            _autoscaling(max_replicas=5),
            "autoscaling.max_replicas x workload.gpus_per_pod = 5 GPUs exceeds the GPU node group's maximum of 4 "
            "(cluster.gpu_nodes.max_size=4 x 1 per g5.xlarge)",
        ),
        (_gpu_nodes(instance_types=("g5.12xlarge",), min_size=1, desired_size=1, max_size=1), None),
        (
            _autoscaling(min_replicas=4, max_replicas=3),
            "autoscaling.min_replicas=4 is above autoscaling.max_replicas=3",
        ),
        (_gpu_nodes(min_size=3, max_size=2), "cluster.gpu_nodes.min_size=3 is above cluster.gpu_nodes.max_size=2"),
        (
            _autoscaling(overprovisioning_placeholders=3),
            "autoscaling.min_replicas + autoscaling.overprovisioning_placeholders = 5 GPUs exceeds the GPU node "
            "group's maximum of 4",
        ),
        (_autoscaling(overprovisioning_priority=5), "overprovisioning_priority must be negative"),
        (
            _autoscaling(scale_down_stabilization_seconds=240),
            "autoscaling.scale_down_stabilization_seconds=240 plus the metric lag (72 s: pipeline delay and rate "
            "window) reaches the brief's 5-minute",
        ),
        (_gpu_nodes(desired_size=9), "cluster.gpu_nodes.desired_size=9 is outside [2, 4]"),
        (
            _gpu_nodes(instance_types=("m5.xlarge",)),
            "cluster.gpu_nodes.instance_types: 'm5.xlarge' is not a known GPU instance type (families: g4dn, g5",
        ),
        (_workload(pdb_max_unavailable=0), "workload.pdb_max_unavailable=0 would block every node drain"),
        (
            _workload(termination_grace_period_seconds=20),
            "workload.termination_grace_period_seconds=20 must exceed pre_stop_sleep_seconds + "
            "triton_exit_timeout_seconds = 30",
        ),
        (_workload(gpus_per_pod=2), "workload.gpus_per_pod=2 exceeds the 1 GPU(s) of a g5.xlarge node"),
        (_workload(cpu_request="two"), "workload.cpu_request='two' is not a Kubernetes quantity"),
        (_workload(limit_factor=Decimal("0.5")), "workload.limit_factor=0.5 must be >= 1"),
        (_workload(namespace="RadStream"), "workload.namespace='RadStream' is not a DNS label"),
        (_workload(grpc_port=8000), "workload ports (8000, 8000, 8002) must differ"),
        (
            replace(STAGES["dev"], network=replace(STAGES["dev"].network, vpc_cidr="10.42.0.0/33")),
            "network.vpc_cidr: '10.42.0.0/33' is not a valid IPv4 CIDR",
        ),
        (
            replace(STAGES["dev"], network=replace(STAGES["dev"].network, max_azs=1)),
            "network.max_azs=1 must be >= 2",
        ),
    ],
)
def test_unworkable_config_is_rejected_naming_the_field(config, message):
    if message is None:  # a 4-GPU node: 4 replicas fit on one node
        assert config.validate() is config
        return
    with pytest.raises(ConfigError) as caught:
        config.validate()
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"public_api_cidrs": "10.0.0.300/32"},
            "cluster.public_api_cidrs[0]: '10.0.0.300/32' is not a valid IPv4 CIDR",
        ),
        ({"public_api_cidrs": "10.0.0.1/24"}, "has host bits set"),
        ({"public_api_cidrs": "0.0.0.0/0"}, "would open the API to the internet"),
        ({"admin_role_arn": "arn:aws:iam::123:user/bob"}, "is not an IAM role ARN"),
    ],
)
def test_bad_command_line_overrides_are_rejected(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config("dev", overrides)


def test_prod_refuses_a_public_api_endpoint():
    with pytest.raises(ConfigError, match="the prod API endpoint is private only"):
        load_config("prod", {"public_api_cidrs": "198.51.100.0/24"})


def test_overrides_apply():
    config = load_config(
        "dev",
        {"public_api_cidrs": "198.51.100.0/24, 203.0.113.7/32", "account": "111122223333", "use_s3_models": "true"},
    )
    assert config.cluster.public_api_cidrs == ("198.51.100.0/24", "203.0.113.7/32")
    assert config.account == "111122223333"
    assert config.model_store.use_s3 is True


def test_limits_are_one_and_a_half_times_requests():
    workload = load_config("dev").workload
    assert (workload.cpu_request, workload.cpu_limit) == ("2", "3000m")
    assert (workload.memory_request, workload.memory_limit) == ("8Gi", "12288Mi")


def test_unknown_stage():
    with pytest.raises(ConfigError, match="stage='qa' is unknown; choose one of dev, prod"):
        load_config("qa")


# ---- the health gate's time budget (issue 12, defect 5) --------------------------------------------------


def test_the_gate_budget_adds_up_from_replicas_surge_startup_and_node_boot():
    from cdk_app.config import gate_budget

    config = load_config("prod")
    timing, workload = config.capacity_timing, config.workload
    budget = gate_budget(config)
    per_wave = (
        timing.pod_startup_seconds + workload.nlb_registration_seconds + workload.termination_grace_period_seconds
    )
    assert budget.per_wave_seconds == per_wave == 20 + 30 + 45
    assert budget.waves == 5, "max_replicas 5 with maxSurge 1"
    assert budget.first_wave_extra_seconds == timing.image_pull_seconds, "a placeholder holds the surge's GPU"
    assert budget.rollout_seconds == 120 + 5 * 95 == 595
    hooks = config.hooks
    assert budget.triton_seconds == hooks.gate_triton_deadline_seconds + 7 * hooks.gate_triton_timeout_seconds == 160
    assert budget.total_seconds == 595 + 160 + 30 <= hooks.health_gate_timeout_seconds
    assert budget.progress_deadline_seconds == 150 + 120 + 95 < budget.rollout_seconds


def test_without_a_spare_gpu_the_budget_waits_for_a_node():
    from cdk_app.config import gate_budget

    config = load_config("dev")
    no_spare = replace(config, autoscaling=replace(config.autoscaling, overprovisioning_placeholders=0))
    assert gate_budget(no_spare).first_wave_extra_seconds == (
        config.capacity_timing.image_pull_seconds + config.capacity_timing.gpu_node_boot_seconds
    )


def test_a_lambda_timeout_that_cannot_hold_the_budget_stops_the_synth():
    config = load_config("dev")
    short = replace(config, hooks=replace(config.hooks, health_gate_timeout_seconds=600))
    with pytest.raises(
        ConfigError,
        match=r"^hooks.health_gate_timeout_seconds=600 cannot hold the gate's budget: "
        r"rollout 500 s \(120 s \+ 4 waves x 95 s\) \+ Triton 160 s \+ margin 30 s = 690 s",
    ):
        short.validate()


def test_a_larger_surge_shortens_the_rollout():
    from cdk_app.config import gate_budget

    config = load_config("prod")
    wider = replace(config, workload=replace(config.workload, rollout_max_surge=2))
    assert gate_budget(wider).waves == 3
    assert gate_budget(wider).rollout_seconds < gate_budget(config).rollout_seconds


def test_a_canary_timeout_that_cannot_hold_its_calls_stops_the_synth():
    config = load_config("dev")
    slow = replace(config, hooks=replace(config.hooks, canary_triton_timeout_seconds=10))
    with pytest.raises(ConfigError, match="hooks.canary_timeout_seconds=50 must hold 7 Triton calls"):
        slow.validate()
