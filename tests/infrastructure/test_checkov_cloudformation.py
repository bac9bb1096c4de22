"""checkov's CloudFormation checks on every synthesized template: each stage, the S3-models variant
and the pipeline app with its two stages. Zero failures; every skip in
cdk_app/checkov_cloudformation.yaml has a reason and is still needed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from cdk_app.app_factory import build_app
from cdk_app.compliance import load_checkov_skips, logical_id_base
from tests.infrastructure.conftest import Synthesized
from tests.infrastructure.test_k8s_manifests import checkov_binary

CONNECTION = "arn:aws:codeconnections:us-east-1:111122223333:connection/0123-abcd"
CHECKOV_TIMEOUT_SECONDS = 180


@pytest.fixture(scope="module")
def pipeline_assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    outdir = tmp_path_factory.mktemp("pipeline")
    context = {"pipeline": "true", "connection_arn": CONNECTION, "repository": "radstream/platform"}
    build_app(cdk.App(context={**context, "aws:cdk:bundling-stacks": []}, outdir=str(outdir))).synth()
    return outdir


@pytest.fixture(scope="module")
def checkov_report(synthesized: dict[str, Synthesized], pipeline_assembly: Path) -> dict[str, Any]:
    directories = [synth.template_path.parent for synth in synthesized.values()] + [pipeline_assembly]
    # Not --quiet: that drops the skipped checks, which the staleness test reads. One directory per
    # run: with several -d, checkov 3.3 left the pipeline's own template out.
    command = [checkov_binary(), "--framework", "cloudformation", "--compact", "-o", "json", "--skip-download"]
    reports = []
    for directory in directories:
        result = subprocess.run(
            [*command, "-d", str(directory)], capture_output=True, text=True, timeout=CHECKOV_TIMEOUT_SECONDS
        )
        assert result.stdout.strip(), f"checkov printed nothing (exit {result.returncode}): {result.stderr[-2000:]}"
        document = json.loads(result.stdout)
        reports.extend(document if isinstance(document, list) else [document])
    merged: dict[str, Any] = {"failed_checks": [], "skipped_checks": [], "resource_count": 0}
    for report in reports:
        assert report["check_type"] == "cloudformation", report["check_type"]
        assert report["summary"]["parsing_errors"] == 0, report["summary"]
        merged["failed_checks"] += report["results"].get("failed_checks", [])
        merged["skipped_checks"] += report["results"].get("skipped_checks", [])
        merged["resource_count"] += report["summary"]["resource_count"]
    assert len(reports) == len(directories)
    assert merged["resource_count"] > 500, "checkov did not see the templates"
    return merged


def _resource(check: dict[str, Any]) -> str:
    return logical_id_base(check["resource"].split(".", 1)[1])


def test_no_template_has_a_checkov_finding(checkov_report):
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({Path(c['file_path']).name})"
        for c in checkov_report["failed_checks"]
    ]
    assert not failed, "\n".join(sorted(set(failed)))


def test_every_skip_is_needed_and_reasoned(checkov_report):
    used = {(c["check_id"], _resource(c)) for c in checkov_report["skipped_checks"]}
    skips = load_checkov_skips()
    assert len({(s.check, s.resource) for s in skips}) == len(skips), "one entry per check and resource"
    stale = [f"{s.check} {s.resource}" for s in skips if (s.check, s.resource) not in used]
    assert not stale, f"skips no template needs any more: {stale}"
    assert all(len(s.reason) > 20 for s in skips)


def test_hook_environments_are_encrypted_with_our_key(dev):
    for logical_id, function in dev.resources("AWS::Lambda::Function").items():
        if logical_id.startswith(("HooksHealthCheck", "HooksScaleEvents", "HooksInferenceEndpoint")):
            key = function["Properties"]["KmsKeyArn"]
            assert key["Fn::GetAtt"][0].startswith("HooksEnvironmentKey"), logical_id
