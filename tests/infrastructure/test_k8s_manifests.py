"""The committed k8s_manifests/ match the config, the Kubernetes schemas and checkov."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cdk_app.config import load_config
from cdk_app.render_manifests import RULES_FILE, render
from tests.conftest import REPO_ROOT

MANIFEST_DIR = REPO_ROOT / "k8s_manifests"
CHECKOV_CONFIG = MANIFEST_DIR / ".checkov.yaml"
RENDERED = render("dev")
# Every file takes a few seconds; the whole module stays well under 15 s.
CHECKOV_TIMEOUT_SECONDS = 60


def checkov_binary() -> str:
    found = shutil.which("checkov")
    if found:
        return found
    bundled = REPO_ROOT / ".tools" / "checkov-venv" / "bin" / "checkov"
    if bundled.is_file():
        return str(bundled)
    pytest.fail("checkov is not installed: run make install")


def run_checkov(directory: Path, config_file: Path | None) -> dict[str, Any]:
    """checkov's Kubernetes checks over ``directory``; offline (--skip-download)."""
    command = [checkov_binary(), "-d", str(directory), "--framework", "kubernetes", "--quiet", "--compact"]
    command += ["-o", "json", "--skip-download"]
    if config_file is not None:
        command += ["--config-file", str(config_file)]
    started = time.monotonic()
    result = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=CHECKOV_TIMEOUT_SECONDS, check=False
    )
    print(f"checkov took {time.monotonic() - started:.1f} s")
    assert result.stdout.strip(), f"checkov printed nothing (exit {result.returncode}): {result.stderr[-2000:]}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    (kubernetes,) = [r for r in reports if r["check_type"] == "kubernetes"]
    assert kubernetes["summary"]["parsing_errors"] == 0, kubernetes["summary"]
    assert kubernetes["summary"]["resource_count"] > 0, "checkov found no Kubernetes objects"
    return kubernetes


def failures(report: dict[str, Any]) -> list[str]:
    return [
        f"{check['check_id']} {check['check_name']} ({check['file_path']}: {check['resource']})"
        for check in report["results"]["failed_checks"]
    ]


def acknowledged_checks() -> list[str]:
    return list(yaml.safe_load(CHECKOV_CONFIG.read_text(encoding="utf-8"))["skip-check"])


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_committed_manifest_matches_the_config(name):
    path = MANIFEST_DIR / name
    assert path.is_file(), f"k8s_manifests/{name} is missing: run python -m cdk_app.render_manifests"
    assert (
        path.read_text(encoding="utf-8") == RENDERED[name]
    ), f"k8s_manifests/{name} differs from cdk_app/config.py: run python -m cdk_app.render_manifests"


def test_no_stray_manifest_files():
    on_disk = {
        str(path.relative_to(MANIFEST_DIR))
        for path in [*MANIFEST_DIR.rglob("*.yaml"), *MANIFEST_DIR.rglob("*.yml")]
        if not path.name.startswith(".")
    }
    assert on_disk == set(RENDERED), "k8s_manifests/ holds YAML the renderer does not write"


@pytest.mark.parametrize("name", sorted(set(RENDERED) - {RULES_FILE}))
def test_every_object_validates_against_the_cluster_kubernetes_version(name):
    version = f"{load_config('dev').cluster.kubernetes_version}.0"
    objects = [obj for obj in yaml.safe_load_all((MANIFEST_DIR / name).read_text(encoding="utf-8")) if obj]
    assert objects, f"{name} holds no object"
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']} is invalid for {version}: {error.message}")


def test_checkov_kubernetes_checks_pass():
    report = run_checkov(MANIFEST_DIR, CHECKOV_CONFIG)
    failed = failures(report)
    assert report["summary"]["failed"] == 0 and not failed, "checkov failures:\n" + "\n".join(failed)


def test_checkov_acknowledgements_are_needed_and_explained(tmp_path):
    """Each skip in .checkov.yaml still fires without it, and a comment right above it says why."""
    for name in RENDERED:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(MANIFEST_DIR / name, tmp_path / name)
    fired = {check["check_id"] for check in run_checkov(tmp_path, None)["results"]["failed_checks"]}
    skipped = acknowledged_checks()
    assert set(skipped) <= fired, f"no longer firing, remove from .checkov.yaml: {sorted(set(skipped) - fired)}"
    lines = CHECKOV_CONFIG.read_text(encoding="utf-8").splitlines()
    for check_id in skipped:
        index = next(i for i, line in enumerate(lines) if line.strip().startswith(f"- {check_id}"))
        explained = "#" in lines[index] or lines[index - 1].strip().startswith("#")
        assert explained, f"{check_id} in .checkov.yaml needs a reason in a comment next to it"
