"""Model store (optional): an S3 bucket holding `triton/model_repository`, read by
Triton through ``MODEL_REPOSITORY=s3://...`` with a Pod Identity role that can read
only that bucket. Default is off: the repository is baked into the image."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3_deployment
from constructs import Construct

from cdk_app.buckets import access_logs_bucket
from cdk_app.cluster import pod_identity_role
from cdk_app.config import ModelStoreConfig
from cdk_app.registry import TRITON_DIR


class ModelStore(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: ModelStoreConfig) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(self, "Key", enable_key_rotation=True, description="Encrypts the RadStream model store")
        self.access_logs = access_logs_bucket(self, "AccessLogs")
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="model-store/",
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        self.deployment = s3_deployment.BucketDeployment(
            self,
            "Upload",
            sources=[s3_deployment.Source.asset(str(TRITON_DIR / "model_repository"))],
            destination_bucket=self.bucket,
            destination_key_prefix=config.s3_prefix,
            prune=True,
        )
        self.uri = f"s3://{self.bucket.bucket_name}/{config.s3_prefix}"
        self.reader_role = pod_identity_role(self, "ReaderRole", "Triton reads the model store (Pod Identity)")
        iam.ManagedPolicy(
            self,
            "ReaderPolicy",
            roles=[self.reader_role],
            statements=[
                iam.PolicyStatement(actions=["s3:ListBucket"], resources=[self.bucket.bucket_arn]),
                iam.PolicyStatement(
                    actions=["s3:GetObject"], resources=[self.bucket.arn_for_objects(f"{config.s3_prefix}/*")]
                ),
                iam.PolicyStatement(actions=["kms:Decrypt"], resources=[self.key.key_arn]),
            ],
        )
