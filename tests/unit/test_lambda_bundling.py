"""How the hooks' packages are built: arm64 wheels picked by pip on any host, never arm64 code run
under emulation (issue 11: the x86 CodeBuild image has no QEMU for ``docker build --platform linux/arm64``)."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_

from cdk_app.hooks import HOOK_PACKAGES, handler_path, stage_lambda_source
from cdk_app.lambda_bundling import docker_fallback_command, hook_code, pip_install_args, requirements_file


def test_pip_selects_arm64_wheels_for_the_lambda_runtime_without_building_anything():
    args = pip_install_args("reqs.txt", "out", architecture="arm64", python_version="3.12")
    assert args[args.index("--platform") + 1] == "manylinux2014_aarch64"
    assert args[args.index("--python-version") + 1] == "3.12"
    assert args[args.index("--implementation") + 1] == "cp"
    # Only wheels: a source distribution would run its build on the host, for the host.
    assert "--only-binary=:all:" in args
    assert args[args.index("--target") + 1] == "out"


def test_the_docker_fallback_runs_pip_for_the_host_not_an_arm64_container():
    for hook in HOOK_PACKAGES:
        command = docker_fallback_command(hook, architecture="arm64", runtime="python3.12")
        script = command[-1]
        assert "--platform manylinux2014_aarch64" in script
        assert f"-r /asset-input/{requirements_file(hook)}" in script
        assert "docker" not in script and "linux/arm64" not in script


def test_every_hook_has_its_pinned_requirements_in_its_package():
    for hook in HOOK_PACKAGES:
        lines = [
            line.strip()
            for line in (Path("lambdas") / hook / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert lines, hook
        assert all("==" in line for line in lines), f"{hook}: every requirement is pinned: {lines}"


def test_cdk_bundles_locally_with_pip_when_bundling_runs(tmp_path: Path):
    """A real synth with bundling on: CDK calls the local bundler (no Docker on this machine)."""
    staged = stage_lambda_source("scale_events", tmp_path / "staged")
    # A tiny pure-Python wheel instead of the hook's ~60 MB of dependencies.
    (staged / requirements_file("scale_events")).write_text("six==1.16.0\n")
    app = cdk.App(outdir=str(tmp_path / "out"))
    stack = cdk.Stack(app, "Bundled")
    lambda_.Function(
        stack,
        "Hook",
        code=hook_code(staged, hook="scale_events", architecture="arm64", runtime="python3.12"),
        handler=handler_path("scale_events"),
        runtime=lambda_.Runtime.PYTHON_3_12,
        architecture=lambda_.Architecture.ARM_64,
    )
    app.synth()
    assets = json.loads((tmp_path / "out" / "Bundled.assets.json").read_text())["files"]
    (asset,) = [a for a in assets.values() if a["source"]["packaging"] == "zip"]
    bundled = tmp_path / "out" / asset["source"]["path"]
    assert (bundled / "lambdas" / "scale_events" / "handler.py").is_file()
    assert (bundled / "lambdas" / "common" / "eks_client.py").is_file()
    assert (bundled / "six.py").is_file(), "the pinned wheel was installed at the package root"
