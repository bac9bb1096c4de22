"""Builds the CDK app for a stage; used by app.py and by the tests."""

from __future__ import annotations

import os

import aws_cdk as cdk

from cdk_app.compliance import acknowledge_cdk_pipelines, apply_compliance_checks
from cdk_app.config import load_config, load_pipeline_config
from cdk_app.pipeline_stack import RadStreamPipelineStack
from cdk_app.platform_stack import RadStreamPlatformStack

DEFAULT_STAGE = "dev"
SKIP_BUNDLING_ENV = "RADSTREAM_SKIP_BUNDLING"
# Context keys (`cdk synth -c key=value`) that override the stage's configuration.
OVERRIDE_KEYS = ("account", "region", "public_api_cidrs", "admin_role_arn", "use_s3_models")
PIPELINE_KEYS = ("connection_arn", "repository", "branch", "stage_accounts")
# Feature flags set in code (not only cdk.json) so `python app.py`, the CLI and the
# tests synthesize the same templates.
FEATURE_FLAGS: dict[str, object] = {
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
    "@aws-cdk/aws-iam:minimizePolicies": True,
    "@aws-cdk/core:checkSecretUsage": True,
    "@aws-cdk/aws-ec2:restrictDefaultSecurityGroup": True,
    "@aws-cdk/core:target-partitions": ["aws"],
}


def build_app(app: cdk.App | None = None) -> cdk.App:
    if app is None:
        # No Docker (tests, `make synth` here): skip bundling the Lambda code; `cdk deploy` needs it.
        skip: dict[str, object] | None = (
            {"aws:cdk:bundling-stacks": []} if os.environ.get(SKIP_BUNDLING_ENV) == "1" else None
        )
        app = cdk.App(outdir=None if os.environ.get("CDK_OUTDIR") else "cdk.out", post_cli_context=skip)
    for flag, value in FEATURE_FLAGS.items():
        if app.node.try_get_context(flag) is None:
            app.node.set_context(flag, value)
    if str(app.node.try_get_context("pipeline")).lower() == "true":
        # The pipeline deploys every stage itself; no standalone stage stack beside it.
        settings = load_pipeline_config(
            {key: str(value) for key in PIPELINE_KEYS if (value := app.node.try_get_context(key)) is not None}
        )
        pipeline = RadStreamPipelineStack(
            app,
            "RadStream-pipeline",
            settings=settings,
            env=cdk.Environment(account=load_config(DEFAULT_STAGE).account, region=load_config(DEFAULT_STAGE).region),
            description="RadStream continuous deployment (CDK Pipelines)",
        )
        apply_compliance_checks(app, [pipeline, *(stage.platform for stage in pipeline.stages.values())])
        acknowledge_cdk_pipelines(pipeline.pipeline)
        return app
    stage = app.node.try_get_context("stage") or DEFAULT_STAGE
    overrides = {key: str(value) for key in OVERRIDE_KEYS if (value := app.node.try_get_context(key)) is not None}
    config = load_config(stage, overrides)
    stack = RadStreamPlatformStack(
        app,
        config.stack_name,
        config=config,
        env=cdk.Environment(account=config.account, region=config.region),
        description=f"RadStream Triton inference platform ({config.stage})",
    )
    apply_compliance_checks(app, [stack])
    return app
