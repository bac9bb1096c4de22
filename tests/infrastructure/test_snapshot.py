"""Backstops: a masked template snapshot (catches unreviewed drift anywhere in the
template) and the CDK CLI's own synth, as the README tells users to run it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SNAPSHOT = Path(__file__).parent / "snapshots" / "RadStream-dev.template.json"
MASKS = [
    (re.compile(r"[0-9a-f]{64}"), "<asset-hash>"),
    (re.compile(r"triton-[0-9a-f]{16}"), "triton-<asset-hash>"),
    # Lambda version logical IDs end with a hash of the function's code.
    (re.compile(r"(CurrentVersion[0-9A-F]{8})[0-9a-f]{32}"), r"\1<code-hash>"),
]


def masked(template_text: str) -> str:
    for pattern, replacement in MASKS:
        template_text = pattern.sub(replacement, template_text)
    return json.dumps(json.loads(template_text), indent=1, sort_keys=True) + "\n"


def test_dev_template_matches_the_reviewed_snapshot(synthesized):
    current = masked(synthesized["dev"].template_path.read_text())
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(current)
    assert SNAPSHOT.exists(), "no snapshot yet: run UPDATE_SNAPSHOTS=1 make pytest"
    assert (
        current == SNAPSHOT.read_text()
    ), "the synthesized template changed; review the diff, then run UPDATE_SNAPSHOTS=1 make pytest"


def test_cdk_cli_synthesizes_the_prod_stage(tmp_path):
    cdk = shutil.which("cdk") or str(REPO_ROOT / ".tools" / "node_modules" / ".bin" / "cdk")
    if not Path(cdk).exists():
        pytest.fail("the cdk CLI is not installed: run make install")
    result = subprocess.run(
        [cdk, "synth", "--quiet", "-c", "stage=prod", "--output", str(tmp_path)],
        cwd=REPO_ROOT,
        # cdk.json runs `python3 app.py`: this interpreter's venv first.
        env={
            **os.environ,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
            "RADSTREAM_SKIP_BUNDLING": "1",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    template = json.loads((tmp_path / "RadStream-prod.template.json").read_text())
    clusters = [r for r in template["Resources"].values() if r["Type"] == "AWS::EKS::Cluster"]
    assert clusters[0]["Properties"]["ResourcesVpcConfig"]["EndpointPublicAccess"] is False
