"""How a hook's Lambda package is built: the staged packages plus its pinned wheels, for the
function's architecture, without running any code of that architecture.

``pip install --platform manylinux2014_aarch64 --only-binary=:all: --python-version 3.12
--implementation cp --target OUT -r requirements.txt`` picks the arm64 wheels on any host, so
an x86 laptop or the x86 CodeBuild image builds an arm64 package with no QEMU (issue 11: a
``docker build --platform linux/arm64`` with ``RUN`` steps fails there with ``exec format
error``). CDK runs this locally first (``LocalPipBundling``, the synthesizing Python's own pip);
only where that is refused does it fall back to the same command in the runtime's build image
for the host's own architecture.

``python -m cdk_app.lambda_bundling --report`` builds every hook's package this way and prints
its unzipped size, failing above ``MAX_UNZIPPED_MB`` (Lambda's limit is 250 MB).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_

# The wheel platform tag pip must select for each Lambda architecture.
WHEEL_PLATFORMS = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}
ARCHITECTURES = {"arm64": lambda_.Architecture.ARM_64, "x86_64": lambda_.Architecture.X86_64}
# Our own ceiling, 50 MB under Lambda's 250 MB, so a dependency bump is caught before a deploy.
MAX_UNZIPPED_MB = 200.0
# Installed, never used by a function: the console scripts and tritonclient's perf_analyzer and
# perf_client executables (37 MB of the health check's package).
PRUNED = ("bin",)


def requirements_file(hook: str) -> str:
    """The hook's pinned dependencies, relative to the staged folder (the asset's root)."""
    return f"lambdas/{hook}/requirements.txt"


def pip_install_args(requirements: str, target: str, *, architecture: str, python_version: str) -> list[str]:
    """pip's arguments that install ``requirements`` for the Lambda's platform into ``target``."""
    return [
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--platform",
        WHEEL_PLATFORMS[architecture],
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--only-binary=:all:",
        "--target",
        target,
        "-r",
        requirements,
    ]


def python_version(runtime: str) -> str:
    """``python3.12`` -> ``3.12``."""
    if not runtime.startswith("python"):
        raise ValueError(f"runtime {runtime!r} is not a Python runtime")
    return runtime.removeprefix("python")


def bundle(staged: Path, output: Path, *, hook: str, architecture: str, runtime: str) -> None:
    """The package: the staged packages and the hook's wheels, in ``output``."""
    shutil.copytree(staged, output, dirs_exist_ok=True)
    args = pip_install_args(
        str(staged / requirements_file(hook)),
        str(output),
        architecture=architecture,
        python_version=python_version(runtime),
    )
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)
    for name in PRUNED:
        shutil.rmtree(output / name, ignore_errors=True)


@jsii.implements(cdk.ILocalBundling)
class LocalPipBundling:
    """CDK's local bundling: the synthesizing interpreter's pip, no Docker at all."""

    def __init__(self, staged: Path, *, hook: str, architecture: str, runtime: str) -> None:
        self.staged, self.hook, self.architecture, self.runtime = staged, hook, architecture, runtime

    # jsii passes the bundling options too; this bundler needs none of them.
    def try_bundle(self, output_dir: str, *_options: Any, **_keywords: Any) -> bool:
        bundle(self.staged, Path(output_dir), hook=self.hook, architecture=self.architecture, runtime=self.runtime)
        return True


def docker_fallback_command(hook: str, *, architecture: str, runtime: str) -> list[str]:
    """The same install inside the runtime's build image, run for the host's own architecture."""
    args = pip_install_args(
        f"/asset-input/{requirements_file(hook)}",
        "/asset-output",
        architecture=architecture,
        python_version=python_version(runtime),
    )
    prune = " ".join(f"/asset-output/{name}" for name in PRUNED)
    return ["bash", "-c", f"cp -R /asset-input/. /asset-output/ && python -m pip {' '.join(args)} && rm -rf {prune}"]


def hook_code(staged: Path, *, hook: str, architecture: str, runtime: str) -> lambda_.Code:
    """The function's code asset: bundled locally with pip, in Docker only as a fallback."""
    lambda_runtime = lambda_.Runtime(runtime, lambda_.RuntimeFamily.PYTHON)
    return lambda_.Code.from_asset(
        str(staged),
        bundling=cdk.BundlingOptions(
            image=lambda_runtime.bundling_image,
            command=docker_fallback_command(hook, architecture=architecture, runtime=runtime),
            local=LocalPipBundling(staged, hook=hook, architecture=architecture, runtime=runtime),
        ),
    )


def directory_megabytes(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6


def report(output_dir: Path, hooks: tuple[str, ...], *, architecture: str, runtime: str) -> int:
    """Bundle each hook as a deploy does and print its unzipped size; 1 when one is over the ceiling."""
    from cdk_app.hooks import stage_lambda_source

    status = 0
    for hook in hooks:
        staged = stage_lambda_source(hook)
        target = output_dir / hook
        if target.exists():
            shutil.rmtree(target)
        bundle(staged, target, hook=hook, architecture=architecture, runtime=runtime)
        size = directory_megabytes(target)
        verdict = "ok" if size <= MAX_UNZIPPED_MB else f"OVER {MAX_UNZIPPED_MB:.0f} MB"
        print(f"{hook}: {size:.1f} MB unzipped ({architecture}, {runtime}) {verdict}")
        if size > MAX_UNZIPPED_MB:
            status = 1
    return status


def main(argv: list[str] | None = None) -> int:
    from cdk_app.config import load_config
    from cdk_app.hooks import HOOK_PACKAGES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", required=True)
    parser.add_argument("--output-dir", type=Path, default=Path("build/lambda-bundles"))
    args = parser.parse_args(argv)
    hooks_config = load_config("dev", {}).hooks
    return report(
        args.output_dir,
        HOOK_PACKAGES,
        architecture=hooks_config.lambda_architecture,
        runtime=hooks_config.python_runtime,
    )


if __name__ == "__main__":
    raise SystemExit(main())
