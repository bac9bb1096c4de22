"""The inference API for the orchestration team: the `RadStreamInference` Step
Functions state machine over the inference endpoint Lambda, and the encrypted S3
buckets for studies in and results out (failures recorded beside the results)."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_ssm as ssm
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from cdk_app.buckets import access_logs_bucket
from cdk_app.config import PlatformConfig
from cdk_app.network import LOG_RETENTION
from cdk_app.state_machine_definition import FAILURES_PREFIX, build_definition


class InferenceApi(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: PlatformConfig, endpoint: lambda_.Function
    ) -> None:
        super().__init__(scope, construct_id)
        hooks = config.hooks
        self.key = kms.Key(self, "Key", enable_key_rotation=True, description="Encrypts RadStream studies and results")
        self.key.grant_encrypt_decrypt(iam.ServicePrincipal(f"logs.{cdk.Aws.REGION}.amazonaws.com"))
        self.access_logs = access_logs_bucket(self, "AccessLogs", expiry_days=hooks.log_retention_days)
        self.studies = self._bucket(
            "Studies",
            "studies/",
            s3.LifecycleRule(
                expiration=cdk.Duration.days(hooks.input_expiry_days),
                noncurrent_version_expiration=cdk.Duration.days(hooks.results_noncurrent_expiry_days),
            ),
        )
        self.results = self._bucket(
            "Results",
            "results/",
            s3.LifecycleRule(noncurrent_version_expiration=cdk.Duration.days(hooks.results_noncurrent_expiry_days)),
        )
        self.studies.grant_read(endpoint)
        self.results.grant_put(endpoint, f"{hooks.results_prefix}/*")
        endpoint.add_environment("RESULTS_BUCKET", self.results.bucket_name)
        # The stage's key for the keyed hash (HMAC-SHA256) of study ids in the endpoint's logs.
        self.log_hash_key = secretsmanager.Secret(
            self,
            "LogHashKey",
            secret_name=hooks.log_hash_key_secret(config.stage),
            description="Key of the keyed hash of study ids in RadStream logs (rotating it breaks log correlation)",
            encryption_key=self.key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False
            ),
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        self.log_hash_key.grant_read(endpoint)
        endpoint.add_environment("LOG_HASH_KEY_SECRET", self.log_hash_key.secret_arn)

        log_group = logs.LogGroup(
            self,
            "StateMachineLogs",
            retention=LOG_RETENTION[hooks.log_retention_days],
            encryption_key=self.key,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        definition = build_definition(
            endpoint.function_arn,
            self.results.bucket_name,
            triton_retry=hooks.triton_retry,
            storage_retry=hooks.storage_retry,
            lambda_crash_retry=hooks.lambda_crash_retry,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=hooks.state_machine_name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_string(cdk.Stack.of(self).to_json_string(definition)),
            # No execution data: inputs and outputs name patients' studies (ids, keys, findings).
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            tracing_enabled=True,
        )
        endpoint.grant_invoke(self.state_machine)
        self.results.grant_put(self.state_machine, f"{FAILURES_PREFIX}/*")

        ssm.StringParameter(
            self,
            "StateMachineArnParameter",
            parameter_name=f"/radstream/{config.stage}/state-machine-arn",
            string_value=self.state_machine.state_machine_arn,
            description="ARN of the RadStreamInference state machine",
        )
        cdk.CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn)
        cdk.CfnOutput(self, "StudiesBucket", value=self.studies.bucket_name)
        cdk.CfnOutput(self, "ResultsBucket", value=self.results.bucket_name)

    def _bucket(self, construct_id: str, log_prefix: str, lifecycle: s3.LifecycleRule) -> s3.Bucket:
        return s3.Bucket(
            self,
            construct_id,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=log_prefix,
            lifecycle_rules=[lifecycle],
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
