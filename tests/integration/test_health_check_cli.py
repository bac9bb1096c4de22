"""health_check.py against the live server, a server lacking models, and no server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from radstream_triton.cpu_repository import build_cpu_repository
from radstream_triton.server import LocalTritonServer, free_port
from tests.conftest import TRITON_DIR, pydicom_file

pytestmark = pytest.mark.integration

HEALTH_CHECK = TRITON_DIR / "health_check.py"


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTH_CHECK), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_healthy_server_exits_0_after_a_smoke_inference(triton_server):
    result = run_check("--url", triton_server.http_url, "--smoke", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == ["live", "ready", "models", "smoke_inference"]
    assert "FINDINGS[1, 14]" in report["checks"][-1]["detail"]


def test_smoke_inference_on_the_chest_xray_over_grpc(triton_server):
    result = run_check(
        "--url", triton_server.grpc_url, "--protocol", "grpc", "--smoke-image", str(pydicom_file("RG1_UNCR.dcm"))
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"HEALTHY {triton_server.grpc_url}: live, ready, models, smoke_inference"


def test_missing_expected_model_fails_with_its_name(triton_server):
    result = run_check("--url", triton_server.http_url, "--model", "cxr_classifier", "--model", "mammo_classifier")
    assert result.returncode == 1
    assert result.stdout.strip().endswith("models: models not READY: mammo_classifier")


def test_server_serving_without_some_models_is_unhealthy(tmp_path):
    repository = build_cpu_repository(tmp_path / "repo")
    shutil.rmtree(repository / "radstream_pipeline")
    shutil.rmtree(repository / "lesion_segmenter")
    with LocalTritonServer(repository, tmp_path, exit_timeout_secs=2) as partial:
        result = run_check("--url", partial.http_url)
    assert result.returncode == 1
    assert "models not READY: lesion_segmenter, radstream_pipeline" in result.stdout


def test_server_down_fails_at_the_liveness_check():
    url = f"127.0.0.1:{free_port()}"
    result = run_check("--url", url, "--timeout", "2", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["checks"][0]["name"] == "live" and not report["checks"][0]["ok"]
    assert report["summary"].startswith(f"UNHEALTHY {url}: live:")
