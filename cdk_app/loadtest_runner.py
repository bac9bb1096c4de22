"""A CodeBuild project inside the VPC that runs RadStream's load-test tool against
Triton's internal NLB: the pipeline's post-deploy burst test starts it and fails the
stage when the error rate or p99 exceeds the thresholds in config."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from cdk_app.config import PipelineConfig
from cdk_app.network import LOG_RETENTION

TRITON_DIR = Path(__file__).resolve().parents[1] / "triton"
# What the tool imports, pinned like requirements-local.txt.
LOADTEST_PACKAGES = (
    "tritonclient[http,grpc]==2.51.0",
    "numpy==1.26.4",
    "pydicom==3.0.1",
    "pydicom-data==1.0.0",
    "pillow==11.0.0",
    "matplotlib==3.10.8",
    "rich==15.0.0",
)


def loadtest_command(settings: PipelineConfig) -> str:
    return (
        'python -m radstream_triton.loadtest --url "$TRITON_URL" --protocol http --profile burst'
        f" --time-scale {settings.loadtest_time_scale} --max-error-rate {settings.loadtest_max_error_rate}"
        f" --max-p99-ms {settings.loadtest_max_p99_ms} --output-dir report --no-progress"
    )


class LoadTestRunner(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        triton_url: ssm.IStringParameter,
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        settings = PipelineConfig()
        source = s3_assets.Asset(
            self, "Tool", path=str(TRITON_DIR), exclude=["model_repository", "**/__pycache__", "Dockerfile"]
        )
        key = kms.Key(self, "Key", enable_key_rotation=True, description="Encrypts the RadStream load-test runner")
        key.grant_encrypt_decrypt(cdk.aws_iam.ServicePrincipal(f"logs.{cdk.Aws.REGION}.amazonaws.com"))
        log_group = logs.LogGroup(
            self,
            "Logs",
            retention=LOG_RETENTION[log_retention_days],
            encryption_key=key,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        self.project = codebuild.Project(
            self,
            "Project",
            description="RadStream post-deploy burst load test against Triton's internal NLB",
            source=codebuild.Source.s3(bucket=source.bucket, path=source.s3_object_key),
            vpc=vpc,
            subnet_selection=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[security_group],
            encryption_key=key,
            environment=codebuild.BuildEnvironment(build_image=codebuild.LinuxBuildImage.STANDARD_7_0),
            environment_variables={
                "TRITON_URL": codebuild.BuildEnvironmentVariable(
                    type=codebuild.BuildEnvironmentVariableType.PARAMETER_STORE, value=triton_url.parameter_name
                )
            },
            logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=log_group)),
            timeout=cdk.Duration.minutes(15),
            build_spec=codebuild.BuildSpec.from_object(
                {
                    "version": "0.2",
                    "phases": {
                        "install": {"commands": [f"pip install {' '.join(repr(p) for p in LOADTEST_PACKAGES)}"]},
                        "build": {"commands": [loadtest_command(settings)]},
                    },
                    "artifacts": {"files": ["report/**/*"]},
                }
            ),
        )
        triton_url.grant_read(self.project)
