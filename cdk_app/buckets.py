"""S3 buckets shared by the constructs that store data: the same hardening everywhere."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from constructs import Construct


def access_logs_bucket(scope: Construct, construct_id: str, expiry_days: int | None = None) -> s3.Bucket:
    """Target of S3 server access logging: private, TLS only, versioned, retained.

    SSE-S3, because server access logging cannot deliver to an SSE-KMS bucket.
    """
    return s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        versioned=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
        lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(expiry_days))] if expiry_days else None,
        removal_policy=cdk.RemovalPolicy.RETAIN,
    )
