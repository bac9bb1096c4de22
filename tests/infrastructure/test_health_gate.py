"""The post-deploy health gate as synthesized: when it runs (every change of what it protects), what it
depends on, its time budget, and the canary beside it. Each claim of README.md and docs/deploy.md
about the gate has its test here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ecr_assets as ecr_assets

from cdk_app import k8s_workload, release
from cdk_app.app_factory import build_app
from cdk_app.config import gate_budget, load_config
from tests.infrastructure.conftest import VARIANTS


def _one(resources: dict[str, dict[str, Any]], prefix: str) -> dict[str, Any]:
    (found,) = [r for k, r in resources.items() if k.startswith(prefix) and "Logs" not in k]
    return found


def _gate_view(template: dict[str, Any]) -> dict[str, Any]:
    """What decides whether the Trigger runs again: its properties, and the gate's release variables."""
    resources = template["Resources"]
    functions = {k: v for k, v in resources.items() if v["Type"] == "AWS::Lambda::Function"}
    triggers = {k: v for k, v in resources.items() if v["Type"] == "Custom::Trigger"}
    env = _one(functions, "HooksHealthCheck")["Properties"]["Environment"]["Variables"]
    return {
        "trigger": _one(triggers, "HooksHealthGate")["Properties"],
        "release": {k: v for k, v in env.items() if k.startswith("GATE_")},
    }


def _synth(tmp_path: Path) -> dict[str, Any]:
    context = VARIANTS["dev"]
    app = build_app(cdk.App(context={**context, "aws:cdk:bundling-stacks": []}, outdir=str(tmp_path)))
    app.synth()
    return json.loads((tmp_path / "RadStream-dev.template.json").read_text())  # type: ignore[no-any-return]


def test_the_gate_function_carries_the_release_it_gates(dev):
    env = _one(dev.resources("AWS::Lambda::Function"), "HooksHealthCheck")["Properties"]["Environment"]["Variables"]
    assert ":triton-" in json.dumps(env["GATE_IMAGE_URI"]), "the image URI with its asset-hash tag"
    assert env["GATE_MODEL_REPOSITORY_HASH"] == release.model_repository_hash()
    stack = dev.stack
    assert env["GATE_WORKLOAD_HASH"] == release.workload_hash(stack.workload.objects, stack.registry.image_uri)
    trigger = _one(dev.resources("Custom::Trigger"), "HooksHealthGate")["Properties"]
    assert trigger["ExecuteOnHandlerChange"] is True
    version = trigger["HandlerArn"]["Ref"]
    assert version.startswith("HooksHealthCheckCurrentVersion"), "the Trigger follows the gate's current version"


def _image_changed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    original = ecr_assets.DockerImageAsset

    class Rebuilt(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "extra_hash": "a rebuilt Triton image"})

    monkeypatch.setattr(ecr_assets, "DockerImageAsset", Rebuilt)


def _model_changed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    models = tmp_path / "model_repository"
    shutil.copytree(release.MODEL_REPOSITORY_DIR, models, ignore=shutil.ignore_patterns("__pycache__"))
    labels = next(models.rglob("labels.txt"))
    labels.write_text(labels.read_text().replace("Atelectasis", "Atelectasis (retrained)", 1) + "\n")
    monkeypatch.setattr(release, "MODEL_REPOSITORY_DIR", models)


def _workload_changed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(k8s_workload, "TRITON_LOG_LEVEL", "verbose")


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        (_image_changed, "GATE_IMAGE_URI"),
        (_model_changed, "GATE_MODEL_REPOSITORY_HASH"),
        (_workload_changed, "GATE_WORKLOAD_HASH"),
    ],
    ids=["image", "model-repository", "workload"],
)
def test_each_change_of_what_the_gate_protects_runs_the_gate_again(
    dev, change, variable: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Defect 1: a new image, a new model or a changed manifest alone changes the Trigger's properties
    (its HandlerArn: a new version of the gate), so CloudFormation updates it and the gate runs."""
    before = _gate_view(dev.json)
    change(monkeypatch, tmp_path)
    after = _gate_view(_synth(tmp_path / "out"))
    changed = {k for k in before["release"] if before["release"][k] != after["release"][k]}
    assert changed == {variable}
    assert after["trigger"]["HandlerArn"] != before["trigger"]["HandlerArn"]


def test_a_change_outside_what_the_gate_protects_does_not_run_it_again(
    dev, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An alarm threshold is not part of the release: the Trigger's properties stay as they were."""
    from dataclasses import replace

    from cdk_app import config as config_module

    dev_config = config_module.STAGES["dev"]
    observability = replace(dev_config.observability, error_rate_percent=2.0)
    monkeypatch.setitem(config_module.STAGES, "dev", replace(dev_config, observability=observability))
    after = _gate_view(_synth(tmp_path / "out"))
    assert after == _gate_view(dev.json)


def test_the_gate_runs_only_after_its_access_entry_exists(dev):
    """Defect 6: the gate's first Kubernetes call must not race its EKS access entry (401, rollback)."""
    entries = {k for k, v in dev.resources("AWS::EKS::AccessEntry").items() if "HealthCheck" in k}
    (entry,) = entries
    trigger = _one(dev.resources("Custom::Trigger"), "HooksHealthGate")
    assert entry in trigger["DependsOn"]


def test_the_gate_budget_fits_its_timeout_and_sets_the_rollout_wait(dev, prod):
    """Defect 5: the rollout wait, the Triton retries and the report fit the Lambda's timeout."""
    for synth in (dev, prod):
        budget = gate_budget(synth.config)
        function = _one(synth.resources("AWS::Lambda::Function"), "HooksHealthCheck")["Properties"]
        env = function["Environment"]["Variables"]
        assert int(env["ROLLOUT_TIMEOUT_SECONDS"]) == budget.rollout_seconds
        waits = int(env["ROLLOUT_TIMEOUT_SECONDS"]) + int(env["TRITON_DEADLINE_SECONDS"])
        calls = synth.config.hooks.gate_triton_calls * int(env["TRITON_TIMEOUT_SECONDS"])
        assert waits + calls < function["Timeout"] <= 900
        trigger = _one(synth.resources("Custom::Trigger"), "HooksHealthGate")["Properties"]
        assert int(trigger["Timeout"]) == function["Timeout"] * 1000
        deployment = next(o for o in synth.stack.workload.objects if o["kind"] == "Deployment")
        assert deployment["spec"]["progressDeadlineSeconds"] == budget.progress_deadline_seconds
        assert budget.progress_deadline_seconds < int(env["ROLLOUT_TIMEOUT_SECONDS"])


def test_the_canary_is_its_own_short_function_without_async_retries(dev):
    """Defect 7: its own timeout, no asynchronous retries, events older than 60 s dropped."""
    hooks = dev.config.hooks
    canary = _one(dev.resources("AWS::Lambda::Function"), "HooksCanary")["Properties"]
    gate = _one(dev.resources("AWS::Lambda::Function"), "HooksHealthCheck")["Properties"]
    assert canary["Timeout"] == hooks.canary_timeout_seconds < gate["Timeout"]
    assert canary["Environment"]["Variables"]["HEALTH_CHECK_MODE"] == "canary"
    assert gate["Environment"]["Variables"]["HEALTH_CHECK_MODE"] == "gate"
    assert canary["ReservedConcurrentExecutions"] == 1
    assert gate["ReservedConcurrentExecutions"] == 2, "the gate keeps its own concurrency"
    (invoke_config,) = [
        c["Properties"]
        for c in dev.resources("AWS::Lambda::EventInvokeConfig").values()
        if "HooksCanary" in json.dumps(c["Properties"]["FunctionName"])
    ]
    assert invoke_config["MaximumRetryAttempts"] == 0
    assert invoke_config["MaximumEventAgeInSeconds"] == 60
    (rule,) = [
        r["Properties"]
        for r in dev.resources("AWS::Events::Rule").values()
        if "HooksCanary" in json.dumps(r["Properties"]["Targets"])
    ]
    assert rule["Targets"][0]["RetryPolicy"] == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}


def test_the_namespace_injects_the_nlb_readiness_gate(dev):
    """Defect 3: pods are Ready only once they are healthy targets of the NLB (IP targets)."""
    namespace = next(o for o in dev.stack.workload.objects if o["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"
    nlb = next(o for o in dev.stack.workload.objects if o["kind"] == "Service" and o["spec"]["type"] == "LoadBalancer")
    assert nlb["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"] == "ip"


def test_the_deployment_leaves_the_replica_count_to_the_hpa(dev):
    """Defect 8: no spec.replicas while triton-hpa targets the Deployment."""
    objects = dev.stack.workload.objects
    deployment = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "triton-inference-server"
    )
    hpa = next(o for o in objects if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"]


def test_a_budget_the_timeout_cannot_hold_is_a_config_error():
    from dataclasses import replace

    from cdk_app.config import ConfigError

    config = load_config("prod")
    too_many = replace(
        config,
        autoscaling=replace(config.autoscaling, max_replicas=9),
        cluster=replace(config.cluster, gpu_nodes=replace(config.cluster.gpu_nodes, max_size=9)),
    )
    with pytest.raises(
        ConfigError,
        match=r"hooks.health_gate_timeout_seconds=900 cannot hold the gate's budget: "
        r"rollout 975 s \(120 s \+ 9 waves x 95 s\)",
    ):
        too_many.validate()
