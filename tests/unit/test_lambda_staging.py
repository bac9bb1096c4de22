"""What PythonFunction bundles: each hook staged at the zip root imports cleanly,
and the health check carries triton/health_check.py itself (one source)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cdk_app.hooks import SHARED_FILES, stage_lambda_source
from tests.conftest import TRITON_DIR


@pytest.mark.parametrize("name", sorted(SHARED_FILES))
def test_staged_handler_imports_at_the_zip_root(name):
    staged = stage_lambda_source(name)
    # A clean interpreter that sees only the staged folder and the installed packages,
    # as the Lambda runtime does (no repository on the path).
    code = "import sys; sys.path[:0] = [sys.argv[1]]; import handler; assert callable(handler.handler)"
    result = subprocess.run(
        [sys.executable, "-I", "-c", code, str(staged)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=staged,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_health_check_lambda_ships_the_container_health_check_unchanged():
    staged = stage_lambda_source("health_check")
    assert (staged / "triton_health.py").read_bytes() == (TRITON_DIR / "health_check.py").read_bytes()
    assert (staged / "common").is_dir()
