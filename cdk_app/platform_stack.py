"""The RadStream platform stack: composes the constructs of one stage."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from cdk_app.config import PlatformConfig


class RadStreamPlatformStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        cdk.CfnOutput(
            self,
            "InferenceEndpoint",
            value=f"http://{config.triton.in_cluster_address}",
            description="In-cluster Triton endpoint (HTTP) for Step Functions' callers",
        )
