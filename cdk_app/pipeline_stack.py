"""Continuous deployment with CDK Pipelines: source from a CodeConnections connection,
a synth step that runs the same lint-and-test command as CI (read from `.ci/run`),
then `cdk synth`; `dev` deploys automatically and `prod` after a manual approval;
after each stage the health gate is invoked again and a burst load test runs inside
the VPC. Self-mutating; failures notify a KMS-encrypted SNS topic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codestarnotifications as notifications
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import pipelines
from constructs import Construct

from cdk_app.buckets import access_logs_bucket
from cdk_app.compliance import apply_checkov_skips
from cdk_app.config import PipelineConfig, PlatformConfig
from cdk_app.network import LOG_RETENTION
from cdk_app.platform_stack import RadStreamPlatformStack

CI_SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "run"
PIPELINE_NAME = "radstream"


def ci_test_command(script: Path = CI_SCRIPT) -> str:
    """The command `.ci/run` executes (its last line that is not a comment or shell setup)."""
    lines = [line.strip() for line in script.read_text().splitlines()]
    commands = [line for line in lines if line and not line.startswith(("#", "set ", "cd "))]
    if not commands:
        raise ValueError(f"{script} runs no command")
    return commands[-1]


class RadStreamStage(cdk.Stage):
    """One deployment stage: the platform stack for that stage's configuration."""

    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.platform = RadStreamPlatformStack(
            self,
            "Platform",
            stack_name=config.stack_name,
            config=config,
            env=cdk.Environment(account=config.account, region=config.region),
        )
        # Here, not in app_factory: CDK Pipelines synthesizes the stage while the pipeline is built.
        apply_checkov_skips(self.platform)


# The gate step's shell, run by CodeBuild in one shell, in order (tests/integration/test_pipeline_gate_step.py
# runs it against a Lambda Invoke endpoint whose gate outlasts the CLI's default 60 s read timeout).
# --cli-read-timeout 0: no read timeout, the synchronous invoke returns when the gate does (up to its
# Lambda timeout); AWS_MAX_ATTEMPTS=1: a retried invoke would start a second gate beside the first.
# On a function error the step prints the gate's own one-line reason (errorMessage) and fails.
HEALTH_GATE_COMMANDS: tuple[str, ...] = (
    'AWS_MAX_ATTEMPTS=1 aws lambda invoke --function-name "$HEALTH_FUNCTION" '
    '--payload \'{"source": "pipeline"}\' --cli-binary-format raw-in-base64-out '
    "--cli-read-timeout 0 --cli-connect-timeout 10 gate.json > invoke.json",
    "cat invoke.json",
    "if grep -q FunctionError invoke.json; then "
    'python3 -c \'import json; print(json.load(open("gate.json")).get("errorMessage", "health gate failed"))\'; '
    "exit 1; fi",
    'python3 -c \'import json; print(json.load(open("gate.json"))["summary"])\'',
)


def health_gate_step(stage: RadStreamStage) -> pipelines.CodeBuildStep:
    """Invokes the deployed health gate (a pipeline payload) and waits for its outcome; fails with its reason."""
    return pipelines.CodeBuildStep(
        "HealthGate",
        env_from_cfn_outputs={"HEALTH_FUNCTION": stage.platform.health_check_function_output},
        commands=list(HEALTH_GATE_COMMANDS),
        role_policy_statements=[
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[f"arn:{cdk.Aws.PARTITION}:lambda:*:*:function:*HooksHealthCheck*"],
            )
        ],
    )


def load_test_step(stage: RadStreamStage) -> pipelines.CodeBuildStep:
    """Starts the in-VPC load-test project of the stage and fails when its build fails."""
    return pipelines.CodeBuildStep(
        "BurstLoadTest",
        env_from_cfn_outputs={"LOADTEST_PROJECT": stage.platform.load_test_project_output},
        commands=[
            'BUILD=$(aws codebuild start-build --project-name "$LOADTEST_PROJECT" --query build.id --output text)',
            'while STATUS=$(aws codebuild batch-get-builds --ids "$BUILD" --query "builds[0].buildStatus" '
            '--output text) && [ "$STATUS" = IN_PROGRESS ]; do sleep 10; done',
            'echo "load test $BUILD: $STATUS"',
            '[ "$STATUS" = SUCCEEDED ]',
        ],
        role_policy_statements=[
            iam.PolicyStatement(
                actions=["codebuild:StartBuild", "codebuild:BatchGetBuilds"],
                resources=[f"arn:{cdk.Aws.PARTITION}:codebuild:*:*:project/LoadTestProject*"],
            )
        ],
    )


class RadStreamPipelineStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: PipelineConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        key = kms.Key(self, "Key", enable_key_rotation=True, description="Encrypts the RadStream pipeline")
        key.grant_encrypt_decrypt(iam.ServicePrincipal(f"logs.{cdk.Aws.REGION}.amazonaws.com"))
        build_logs = logs.LogGroup(
            self, "BuildLogs", retention=LOG_RETENTION[365], encryption_key=key, removal_policy=cdk.RemovalPolicy.RETAIN
        )
        artifacts = s3.Bucket(
            self,
            "Artifacts",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=access_logs_bucket(self, "AccessLogs", expiry_days=365),
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        source = pipelines.CodePipelineSource.connection(
            settings.repository or "", settings.branch, connection_arn=settings.connection_arn or ""
        )
        self.synth_step = pipelines.CodeBuildStep(
            "Synth",
            input=source,
            commands=[
                # The same lint-and-test command as CI (.ci/run), then the cloud assembly.
                ci_test_command(),
                "RADSTREAM_SKIP_BUNDLING=0 .tools/node_modules/.bin/cdk synth -c pipeline=true"
                f" -c connection_arn={settings.connection_arn} -c repository={settings.repository}"
                f" -c branch={settings.branch}"
                # The stages' accounts, so the pipeline's own synth keeps deploying where it was told.
                + (
                    " -c stage_accounts=" + ",".join(f"{stage}={account}" for stage, account in settings.stage_accounts)
                    if settings.stage_accounts
                    else ""
                ),
            ],
            primary_output_directory="cdk.out",
            build_environment=codebuild.BuildEnvironment(
                compute_type=codebuild.ComputeType[settings.synth_compute_type]
            ),
        )
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            pipeline_name=PIPELINE_NAME,
            synth=self.synth_step,
            artifact_bucket=artifacts,
            self_mutation=True,
            docker_enabled_for_synth=True,
            asset_publishing_code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(
                    compute_type=codebuild.ComputeType[settings.asset_publishing_compute_type]
                )
            ),
            code_build_defaults=pipelines.CodeBuildOptions(
                logging=cdk.aws_codebuild.LoggingOptions(
                    cloud_watch=cdk.aws_codebuild.CloudWatchLoggingOptions(log_group=build_logs)
                )
            ),
        )
        self.stages: dict[str, RadStreamStage] = {}
        for stage_name in settings.stages:
            config = settings.stage_config(stage_name)
            stage = RadStreamStage(self, stage_name.capitalize(), config=config)
            self.stages[stage_name] = stage
            pre = (
                [pipelines.ManualApprovalStep(f"Approve{stage_name.capitalize()}")]
                if stage_name in settings.approval_before
                else []
            )
            self.pipeline.add_stage(stage, pre=pre, post=[health_gate_step(stage), load_test_step(stage)])
        self.pipeline.build_pipeline()

        self.failures = sns.Topic(
            self, "Failures", display_name="RadStream pipeline failures", master_key=key, enforce_ssl=True
        )
        notifications.NotificationRule(
            self,
            "NotifyFailures",
            source=self.pipeline.pipeline,
            events=["codepipeline-pipeline-pipeline-execution-failed", "codepipeline-pipeline-stage-execution-failed"],
            targets=[self.failures],
            detail_type=notifications.DetailType.BASIC,
        )
