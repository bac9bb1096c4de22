"""The CodePipeline (CDK Pipelines): source, the same test command as CI, stages in
order with the prod approval, and the post-deploy gate and load test per stage."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from cdk_app.config import ConfigError, load_pipeline_config
from cdk_app.pipeline_stack import RadStreamPipelineStack, ci_test_command
from tests.conftest import REPO_ROOT

CONNECTION = "arn:aws:codeconnections:us-east-1:111122223333:connection/0123-abcd"


@pytest.fixture(scope="module")
def pipeline_template() -> dict[str, Any]:
    # Structure only: the cdk-nag gate for the pipeline stack is checked separately (open item).
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    settings = load_pipeline_config({"connection_arn": CONNECTION, "repository": "radstream/platform"})
    stack = RadStreamPipelineStack(
        app, "RadStream-pipeline", settings=settings, env=cdk.Environment(region="us-east-1")
    )
    return Template.from_stack(stack).to_json()  # type: ignore[no-any-return]


def _pipeline(template: dict[str, Any]) -> dict[str, Any]:
    (pipeline,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    return pipeline["Properties"]


def test_the_pipeline_is_requested_with_its_source_or_not_at_all():
    with pytest.raises(ConfigError, match="pipeline.connection_arn is required"):
        load_pipeline_config({"repository": "radstream/platform"})
    with pytest.raises(ConfigError, match="is not a CodeConnections connection ARN"):
        load_pipeline_config({"connection_arn": "arn:aws:s3:::bucket", "repository": "radstream/platform"})
    with pytest.raises(ConfigError, match="pipeline.repository is required"):
        load_pipeline_config({"connection_arn": CONNECTION})


def test_synth_runs_the_same_test_command_as_ci(pipeline_template):
    command = ci_test_command()
    assert command == "make test"
    assert (REPO_ROOT / ".ci" / "run").read_text().strip().endswith(command)
    projects = [
        r["Properties"] for r in pipeline_template["Resources"].values() if r["Type"] == "AWS::CodeBuild::Project"
    ]
    (synth,) = [p for p in projects if "cdk synth -c pipeline=true" in json.dumps(p["Source"]["BuildSpec"])]
    build = json.loads(synth["Source"]["BuildSpec"])["phases"]["build"]["commands"]
    assert build.index(command) < next(i for i, c in enumerate(build) if "cdk synth" in c)
    assert synth["Environment"]["PrivilegedMode"] is True, "Docker for the image and Lambda bundling"


def test_stages_in_order_with_the_prod_approval_and_post_deploy_checks(pipeline_template):
    stages = _pipeline(pipeline_template)["Stages"]
    names = [s["Name"] for s in stages]
    assert names[:2] == ["Source", "Build"]
    assert names.index("Dev") < names.index("Prod")
    assert "UpdatePipeline" in names, "self-mutation"
    source_action = stages[0]["Actions"][0]
    assert source_action["Configuration"]["ConnectionArn"] == CONNECTION
    assert source_action["Configuration"]["FullRepositoryId"] == "radstream/platform"
    for stage_name, approval in (("Dev", False), ("Prod", True)):
        actions = sorted(next(s for s in stages if s["Name"] == stage_name)["Actions"], key=lambda a: a["RunOrder"])
        kinds = [(a["ActionTypeId"]["Category"], a["Name"]) for a in actions]
        assert any(c == "Approval" for c, _ in kinds) == approval, kinds
        deploy = max(a["RunOrder"] for a in actions if a["ActionTypeId"]["Category"] == "Deploy")
        post = {a["Name"]: a["RunOrder"] for a in actions if a["Name"] in ("HealthGate", "BurstLoadTest")}
        assert set(post) == {"HealthGate", "BurstLoadTest"}
        assert min(post.values()) > deploy, "the checks run after the stage is deployed"
        if approval:
            first_deploy = min(a["RunOrder"] for a in actions if a["ActionTypeId"]["Category"] == "Deploy")
            assert next(a["RunOrder"] for a in actions if a["ActionTypeId"]["Category"] == "Approval") < first_deploy


def test_post_deploy_commands_invoke_the_gate_and_start_the_load_test(pipeline_template):
    specs = [
        json.dumps(r["Properties"]["Source"]["BuildSpec"])
        for r in pipeline_template["Resources"].values()
        if r["Type"] == "AWS::CodeBuild::Project"
    ]
    assert sum("aws lambda invoke --function-name" in s for s in specs) == 2
    assert sum("aws codebuild start-build --project-name" in s for s in specs) == 2


def test_failures_notify_an_encrypted_topic(pipeline_template):
    resources = pipeline_template["Resources"].values()
    (rule,) = [r["Properties"] for r in resources if r["Type"] == "AWS::CodeStarNotifications::NotificationRule"]
    assert "codepipeline-pipeline-pipeline-execution-failed" in rule["EventTypeIds"]
    (topic,) = [r["Properties"] for r in resources if r["Type"] == "AWS::SNS::Topic"]
    assert "KmsMasterKeyId" in topic


def test_pipeline_app_passes_cdk_nag_and_cfn_lint(tmp_path):
    """The whole pipeline app (pipeline stack and both stage stacks) through the gates."""
    import subprocess
    import sys
    from pathlib import Path

    from cdk_app.app_factory import build_app

    context = {
        "pipeline": "true",
        "connection_arn": CONNECTION,
        "repository": "radstream/platform",
        "aws:cdk:bundling-stacks": [],
    }
    build_app(cdk.App(context=context, outdir=str(tmp_path))).synth()  # raises on any finding
    report = json.loads((tmp_path / "validation-report.json").read_text())
    assert [v for p in report.get("pluginReports", []) for v in p.get("violations", [])] == []
    templates = sorted(tmp_path.rglob("*.template.json"))
    assert any(t.name.startswith("RadStream-pipeline") for t in templates)
    assert len(templates) >= 3, "the pipeline stack and the dev and prod stage stacks"
    # E3703 (prefer Fn::Sub to Fn::Join) is a style rule on the ARNs CDK Pipelines writes itself.
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            "--ignore-checks",
            "W3005",
            "E3703",
            "--",
            *map(str, templates),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _projects(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CodeBuild::Project"]


def test_the_synth_step_and_the_image_build_get_the_configured_codebuild_sizes(pipeline_template):
    settings = load_pipeline_config({"connection_arn": CONNECTION, "repository": "radstream/platform"})
    projects = _projects(pipeline_template)
    (synth,) = [p for p in projects if "cdk synth -c pipeline=true" in json.dumps(p["Source"]["BuildSpec"])]
    assert settings.synth_compute_type == "LARGE"
    assert synth["Environment"]["ComputeType"] == "BUILD_GENERAL1_LARGE"
    docker = [
        p
        for p in projects
        if "cdk-assets" in json.dumps(p["Source"]["BuildSpec"]) and p["Environment"].get("PrivilegedMode")
    ]
    assert docker, "no Docker asset publishing project"
    assert {p["Environment"]["ComputeType"] for p in docker} == {"BUILD_GENERAL1_LARGE"}
    assert settings.asset_publishing_compute_type == "LARGE"
