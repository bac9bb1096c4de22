"""Builds the CDK app for a stage; used by app.py and by the tests."""

from __future__ import annotations

import aws_cdk as cdk

from cdk_app.config import load_config
from cdk_app.platform_stack import RadStreamPlatformStack

DEFAULT_STAGE = "dev"


def build_app(app: cdk.App | None = None) -> cdk.App:
    app = app or cdk.App()
    stage = app.node.try_get_context("stage") or DEFAULT_STAGE
    config = load_config(stage)
    RadStreamPlatformStack(
        app,
        config.stack_name,
        config=config,
        env=cdk.Environment(account=config.account, region=config.region),
        description=f"RadStream Triton inference platform ({config.stage})",
    )
    return app
