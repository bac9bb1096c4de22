"""Registry: the ECR repository `radstream-triton` and the Triton image built from `triton/`.

The image is a ``DockerImageAsset``: ``cdk deploy`` (or the pipeline) builds it and
pushes it to the CDK assets repository, then ``cdk-ecr-deployment`` copies it into
`radstream-triton` under an immutable tag derived from the asset hash. The
Deployment references that tag, so the image every pod runs is the one scanned
on push and kept by the lifecycle rule of `radstream-triton`, never ``latest``.
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from cdk_ecr_deployment import DockerImageName, ECRDeployment
from constructs import Construct

from cdk_app.config import RegistryConfig

TRITON_DIR = Path(__file__).resolve().parents[1] / "triton"


class Registry(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: RegistryConfig) -> None:
        super().__init__(scope, construct_id)
        self.repository = ecr.Repository(
            self,
            "Repository",
            repository_name=config.repository_name,
            image_scan_on_push=True,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            encryption=ecr.RepositoryEncryption.KMS,
            # Kept when the stack is deleted or the repository replaced, but deleted (images
            # included) when the create that made it rolls back (DeletionPolicy
            # RetainExceptOnCreate): a failed first deploy leaves no repository of this fixed
            # name behind to block the retry with AlreadyExists.
            removal_policy=cdk.RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
            lifecycle_rules=[
                ecr.LifecycleRule(
                    description=f"Keep the last {config.keep_last_images} images",
                    max_image_count=config.keep_last_images,
                    tag_status=ecr.TagStatus.ANY,
                )
            ],
        )
        # The rollback's delete must not fail on the image the copy already pushed. The L2 allows
        # emptyOnDelete only with DESTROY; on the L1 it only acts when CloudFormation deletes,
        # which RetainExceptOnCreate limits to the rollback of the create.
        repository_resource = self.repository.node.default_child
        assert isinstance(repository_resource, ecr.CfnRepository)
        repository_resource.empty_on_delete = True
        self.image_asset = ecr_assets.DockerImageAsset(
            self,
            "TritonImage",
            directory=str(TRITON_DIR),
            platform=ecr_assets.Platform.LINUX_AMD64,
            exclude=["radstream_triton", "**/__pycache__"],
        )
        # Tag in radstream-triton: the asset hash, so each build has its own immutable tag.
        self.image_tag = f"triton-{self.image_asset.asset_hash[:16]}"
        self.image_uri = self.repository.repository_uri_for_tag(self.image_tag)
        # cdk-ecr-deployment grants its function ecr:* on every repository. Our own role
        # carries a permissions boundary, so the copy can only pull the asset and push
        # to radstream-triton whatever the library adds.
        copy_role = iam.Role(
            self,
            "CopyImageRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Copies the Triton image asset into radstream-triton",
        )
        copy_statements = [
            iam.PolicyStatement(
                sid="Logs",
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[
                    cdk.Stack.of(self).format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="/aws/lambda/*",
                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            ),
            iam.PolicyStatement(sid="Login", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
            iam.PolicyStatement(
                sid="PullAsset",
                actions=["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                resources=[self.image_asset.repository.repository_arn],
            ),
            iam.PolicyStatement(
                sid="PushToRadStreamTriton",
                actions=[
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:CompleteLayerUpload",
                    "ecr:DescribeImages",
                    "ecr:InitiateLayerUpload",
                    "ecr:PutImage",
                    "ecr:UploadLayerPart",
                ],
                resources=[self.repository.repository_arn],
            ),
        ]
        # Attached to the role (what it may do) and set as its boundary (the most it
        # can ever do): two policies, since one policy cannot be both without a cycle.
        iam.ManagedPolicy(self, "CopyImagePolicy", roles=[copy_role], statements=copy_statements)
        boundary = iam.ManagedPolicy(self, "CopyImageBoundary", statements=copy_statements)
        self.image_copy = ECRDeployment(
            self,
            "CopyImage",
            src=DockerImageName(self.image_asset.image_uri),
            dest=DockerImageName(self.image_uri),
            role=copy_role,
            memory_limit=config.image_copy_memory_mb,
        )
        iam.PermissionsBoundary.of(copy_role).apply(boundary)
