"""The CDK app synthesizes for each stage, without Docker or AWS credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from cdk_app.app_factory import build_app
from cdk_app.config import ConfigError, load_config
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_stage_stack_carries_the_in_cluster_endpoint(stage):
    app = build_app(cdk.App(context={"stage": stage}))
    stack = app.node.find_child(load_config(stage).stack_name)
    outputs = Template.from_stack(stack).find_outputs("InferenceEndpoint")
    assert outputs["InferenceEndpoint"]["Value"] == "http://triton-inference-service.radstream.svc.cluster.local:8000"


def test_unknown_stage_is_a_clear_error():
    with pytest.raises(ConfigError, match="stage='qa' is unknown; choose one of dev, prod"):
        build_app(cdk.App(context={"stage": "qa"}))


def test_app_py_runs_and_writes_a_cloud_assembly(tmp_path):
    env = {**os.environ, "CDK_OUTDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert "RadStream-dev" in manifest["artifacts"]
