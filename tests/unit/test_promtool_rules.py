"""The scaling signal's recording rules, checked and unit-tested by the real promtool."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from cdk_app.config import load_config
from cdk_app.scaling_signal import recording_rules
from tests.conftest import REPO_ROOT

STEPS = 'namespace="radstream", model!="radstream_pipeline"'

RULES = REPO_ROOT / "k8s_manifests" / "prometheus" / "recording_rules.yml"
TESTS = sorted((REPO_ROOT / "tests" / "unit" / "promtool").glob("*_test.yml"))


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not installed: run make install (Debian package prometheus)")
    return path


def test_rules_file_is_valid():
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


@pytest.mark.parametrize("test_file", TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file):
    result = subprocess.run(
        [promtool(), "test", "rules", str(test_file)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_catches_the_classic_wrong_query(tmp_path):
    """Summing success + failure as two vectors drops every pod without failures: the
    unit tests must fail on that version, or they prove nothing."""
    rules = recording_rules(load_config("dev"))
    step_rule = rules["groups"][0]["rules"][0]
    right = 'rate({__name__=~"nv_inference_request_(success|failure)", ' + STEPS + "}[1m]))"
    wrong = (
        f"rate(nv_inference_request_success{{{STEPS}}}[1m]))"
        f" + sum by (namespace, pod, model) (rate(nv_inference_request_failure{{{STEPS}}}[1m]))"
    )
    assert right in step_rule["expr"], "the rules changed shape: update this test"
    step_rule["expr"] = step_rule["expr"].replace(right, wrong)
    rules_dir = tmp_path / "k8s_manifests" / "prometheus"
    rules_dir.mkdir(parents=True)
    (rules_dir / "recording_rules.yml").write_text(yaml.safe_dump(rules))
    test_dir = tmp_path / "tests" / "unit" / "promtool"
    test_dir.mkdir(parents=True)
    shutil.copy(TESTS[0], test_dir / TESTS[0].name)
    result = subprocess.run(
        [promtool(), "test", "rules", str(test_dir / TESTS[0].name)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr
