"""Synthesized stacks, built once per test session for each configuration tested."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from cdk_app.app_factory import build_app
from cdk_app.config import load_config

ADMIN_ROLE = "arn:aws:iam::111122223333:role/RadStreamPlatformAdmin"
VARIANTS: dict[str, dict[str, str]] = {
    "dev": {"stage": "dev", "public_api_cidrs": "198.51.100.0/24", "admin_role_arn": ADMIN_ROLE},
    "prod": {"stage": "prod"},
    "dev_s3_models": {"stage": "dev", "use_s3_models": "true"},
}


class Synthesized:
    def __init__(self, variant: str, outdir: Path) -> None:
        context = VARIANTS[variant]
        self.config = load_config(context["stage"], context)
        # No Docker here: the Lambda code is staged but not bundled.
        app = build_app(cdk.App(context={**context, "aws:cdk:bundling-stacks": []}, outdir=str(outdir)))
        self.assembly = app.synth()  # raises if any cdk-nag finding is unacknowledged
        self.stack = app.node.find_child(self.config.stack_name)
        self.template = Template.from_stack(self.stack)  # type: ignore[arg-type]
        self.template_path = outdir / f"{self.config.stack_name}.template.json"
        self.json: dict[str, Any] = json.loads(self.template_path.read_text())
        self.validation_report = outdir / "validation-report.json"

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.json["Resources"].items() if v["Type"] == resource_type}


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Synthesized]:
    return {variant: Synthesized(variant, tmp_path_factory.mktemp(variant)) for variant in VARIANTS}


@pytest.fixture(scope="session")
def dev(synthesized: dict[str, Synthesized]) -> Synthesized:
    return synthesized["dev"]


@pytest.fixture(scope="session")
def prod(synthesized: dict[str, Synthesized]) -> Synthesized:
    return synthesized["prod"]


def join_to_text(value: Any) -> str:
    """Flatten a CloudFormation Fn::Join of strings and tokens into text (tokens as <token>)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(join_to_text(part) for part in parts)
    return "<token>"


def manifest_objects(synth: Synthesized) -> list[dict[str, Any]]:
    """Every Kubernetes object CDK applies through the kubectl provider, prune labels removed."""
    objects: list[dict[str, Any]] = []
    for resource in synth.resources("Custom::AWSCDK-EKS-KubernetesResource").values():
        for obj in json.loads(join_to_text(resource["Properties"]["Manifest"])):
            labels = obj["metadata"].get("labels", {})
            for key in [k for k in labels if k.startswith("aws.cdk.eks/prune-")]:
                del labels[key]
            objects.append(obj)
    return objects


ASSET_HASH = re.compile(r"[0-9a-f]{64}")
