"""Two stages in one account and region never collide, and a failed first create leaves
nothing behind that blocks the retry."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cdk_app.config import STAGES, ConfigError, check_stages_can_share_accounts, load_config, load_pipeline_config

# The property that names a resource account-wide, per CloudFormation type.
NAME_PROPERTIES = {
    "AWS::EKS::Cluster": "Name",
    "AWS::EKS::Nodegroup": "NodegroupName",
    "AWS::ECR::Repository": "RepositoryName",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::CloudWatch::Dashboard": "DashboardName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::SSM::Parameter": "Name",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::CloudWatch::CompositeAlarm": "AlarmName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Lambda::Function": "FunctionName",
}
CONNECTION = "arn:aws:codeconnections:us-east-1:111122223333:connection/0123-abcd"


def named_resources(synth):
    for logical_id, resource in synth.json["Resources"].items():
        prop = NAME_PROPERTIES.get(resource["Type"])
        if prop and isinstance(name := resource.get("Properties", {}).get(prop), str):
            yield logical_id, resource, name


def test_every_fixed_physical_name_carries_the_stage(dev, prod):
    for synth in (dev, prod):
        names = {logical_id: name for logical_id, _, name in named_resources(synth)}
        assert len(names) >= 6
        assert {k: v for k, v in names.items() if synth.config.stage not in v} == {}


def test_dev_and_prod_share_no_physical_name(dev, prod):
    assert {n for _, _, n in named_resources(dev)}.isdisjoint(n for _, _, n in named_resources(prod))
    assert set(STAGES["dev"].physical_names.values()).isdisjoint(STAGES["prod"].physical_names.values())


def test_two_stages_with_the_same_names_in_one_account_are_refused():
    dev = load_config("dev")
    twin = replace(STAGES["prod"], cluster=replace(STAGES["prod"].cluster, name=dev.cluster.name))
    with pytest.raises(ConfigError, match="both deploy into account <deploying account> in us-east-1 with the EKS"):
        check_stages_can_share_accounts([dev, twin])
    # In accounts of their own the same names are fine.
    check_stages_can_share_accounts([replace(dev, account="111122223333"), replace(twin, account="444455556666")])


def test_the_pipeline_takes_each_stages_account_from_config():
    settings = load_pipeline_config(
        {"connection_arn": CONNECTION, "repository": "radstream/platform", "stage_accounts": "prod=444455556666"}
    )
    assert settings.stage_config("prod").account == "444455556666"
    assert settings.stage_config("dev").account is None  # the pipeline's own account
    with pytest.raises(ConfigError, match="is not <stage>=<12-digit account>"):
        load_pipeline_config({"connection_arn": CONNECTION, "repository": "radstream/x", "stage_accounts": "qa=1"})


def test_no_named_resource_is_retained_after_a_failed_first_create(dev, prod):
    """DeletionPolicy Retain on a fixed name: the rollback keeps it and the retry fails with AlreadyExists."""
    for synth in (dev, prod):
        blocking = {
            logical_id: name
            for logical_id, resource, name in named_resources(synth)
            if resource.get("DeletionPolicy") == "Retain"
        }
        assert blocking == {}
    (repository,) = dev.resources("AWS::ECR::Repository").values()
    assert repository["DeletionPolicy"] == "RetainExceptOnCreate"
    assert repository["UpdateReplacePolicy"] == "Retain"
    assert repository["Properties"]["EmptyOnDelete"] is True, "the rollback's delete would fail on the pushed image"


def test_the_pipelines_own_synth_keeps_the_stage_accounts():
    import json

    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from cdk_app.pipeline_stack import RadStreamPipelineStack

    settings = load_pipeline_config(
        {"connection_arn": CONNECTION, "repository": "radstream/platform", "stage_accounts": "prod=444455556666"}
    )
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    stack = RadStreamPipelineStack(
        app, "RadStream-pipeline", settings=settings, env=cdk.Environment(account="111122223333", region="us-east-1")
    )
    assert stack.stages["prod"].platform.account == "444455556666"
    text = json.dumps(Template.from_stack(stack).to_json())
    assert "-c stage_accounts=prod=444455556666" in text
