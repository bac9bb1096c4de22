"""Read-only checks of what a first deploy of a stage needs in the target account.

``make preflight STAGE=dev ACCOUNT=111122223333`` (or ``python -m cdk_app.preflight``)
prints one line per check, ``PASS``/``FAIL`` and why, and exits 1 when any check fails.
Every number it compares with comes from the stage's configuration (``cdk_app/config.py``);
nothing is created or changed in the account (Describe/Get/List calls only).

* Lambda concurrency: the account's concurrent-executions quota must leave Lambda's
  minimum of 100 unreserved after the stage's reserved concurrency (Lambda developer
  guide, "Configuring reserved concurrency": a function cannot reserve the last 100).
* G-instance vCPUs: the "Running On-Demand G and VT instances" quota (``L-DB2E81BA``, in
  vCPUs) must cover the GPU node group at its maximum size.
* AZs: each AZ ID of ``network.availability_zone_ids`` exists in the region, is not one EKS
  rejects, and offers every GPU instance type of the node group.
* CDK bootstrap: the ``CDKToolkit`` stack's version parameter is at least the version the
  templates check (their ``CheckBootstrapVersion`` rule).
* Docker: the Triton image and the Lambda bundles are built locally by ``cdk deploy``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from cdk_app.config import EKS_UNSUPPORTED_AZ_IDS, ConfigError, PlatformConfig, load_config

# Service Quotas codes (`aws service-quotas list-service-quotas --service-code ...`).
LAMBDA_CONCURRENCY_QUOTA = ("lambda", "L-B99A9384")  # Concurrent executions
G_INSTANCE_VCPU_QUOTA = ("ec2", "L-DB2E81BA")  # Running On-Demand G and VT instances (vCPUs)
# Lambda keeps this much concurrency unreserved in every account.
LAMBDA_MIN_UNRESERVED = 100
# The DefaultStackSynthesizer's qualifier and the oldest bootstrap version its templates
# accept (their CheckBootstrapVersion rule rejects 1-5; a test reads the rule).
BOOTSTRAP_QUALIFIER = "hnb659fds"
MIN_BOOTSTRAP_VERSION = 6


@dataclass(frozen=True)
class Result:
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.detail}"


def _quota(client: Any, service: str, code: str) -> float:
    """The applied quota, or AWS's default where the account never changed it."""
    try:
        return float(client.get_service_quota(ServiceCode=service, QuotaCode=code)["Quota"]["Value"])
    except ClientError as error:
        if error.response["Error"]["Code"] != "NoSuchResourceException":
            raise
        return float(client.get_aws_default_service_quota(ServiceCode=service, QuotaCode=code)["Quota"]["Value"])


def check_identity(session: Any, account: str) -> Result:
    actual = session.client("sts").get_caller_identity()["Account"]
    return Result("credentials", actual == account, f"caller account {actual}, target {account}")


def check_lambda_concurrency(session: Any, config: PlatformConfig) -> Result:
    limit = _quota(session.client("service-quotas"), *LAMBDA_CONCURRENCY_QUOTA)
    reserved = config.hooks.reserved_concurrency_total
    needed = reserved + LAMBDA_MIN_UNRESERVED
    return Result(
        "lambda-concurrency",
        limit >= needed,
        f"account limit {limit:g}, the stage reserves {reserved} and Lambda keeps {LAMBDA_MIN_UNRESERVED} "
        f"unreserved: needs >= {needed}" + ("" if limit >= needed else " (request an increase of quota L-B99A9384)"),
    )


def check_gpu_vcpus(session: Any, config: PlatformConfig) -> Result:
    group = config.cluster.gpu_nodes
    types = session.client("ec2").describe_instance_types(InstanceTypes=list(group.instance_types))["InstanceTypes"]
    per_node = max(t["VCpuInfo"]["DefaultVCpus"] for t in types)
    needed = group.max_size * per_node
    quota = _quota(session.client("service-quotas"), *G_INSTANCE_VCPU_QUOTA)
    return Result(
        "gpu-vcpu-quota",
        quota >= needed,
        f"G and VT on-demand quota {quota:g} vCPUs; {group.max_size} x {per_node} vCPUs "
        f"({'/'.join(group.instance_types)}) needs >= {needed}"
        + ("" if quota >= needed else " (request an increase of quota L-DB2E81BA)"),
    )


def check_availability_zones(session: Any, config: PlatformConfig) -> list[Result]:
    ec2 = session.client("ec2")
    zones = {z["ZoneId"]: z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]}
    instance_types = list(config.cluster.gpu_nodes.instance_types)
    offerings = ec2.describe_instance_type_offerings(
        LocationType="availability-zone-id", Filters=[{"Name": "instance-type", "Values": instance_types}]
    )["InstanceTypeOfferings"]
    offered: dict[str, set[str]] = {}
    for offering in offerings:
        offered.setdefault(offering["Location"], set()).add(offering["InstanceType"])
    results = []
    for az_id in config.network.availability_zone_ids:
        missing = sorted(set(instance_types) - offered.get(az_id, set()))
        if az_id not in zones:
            passed, detail = False, f"no such AZ ID in {config.region} (there: {', '.join(sorted(zones))})"
        elif az_id in EKS_UNSUPPORTED_AZ_IDS:
            passed, detail = False, f"{zones[az_id]} is an AZ EKS does not support"
        elif missing:
            passed, detail = False, f"{zones[az_id]} does not offer {', '.join(missing)}"
        else:
            passed, detail = True, f"{zones[az_id]} in this account; EKS supported; offers {', '.join(instance_types)}"
        results.append(Result(f"az {az_id}", passed, detail))
    return results


def check_bootstrap(session: Any) -> Result:
    name = f"/cdk-bootstrap/{BOOTSTRAP_QUALIFIER}/version"
    try:
        version = int(session.client("ssm").get_parameter(Name=name)["Parameter"]["Value"])
    except ClientError as error:
        if error.response["Error"]["Code"] != "ParameterNotFound":
            raise
        return Result("cdk-bootstrap", False, f"{name} not found: run cdk bootstrap aws://ACCOUNT/REGION")
    return Result(
        "cdk-bootstrap",
        version >= MIN_BOOTSTRAP_VERSION,
        f"bootstrap version {version}, templates need >= {MIN_BOOTSTRAP_VERSION}",
    )


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=60, check=False)


def check_docker(which: Callable[[str], str | None] | None = None, run: Runner | None = None) -> Result:
    which, run = which or shutil.which, run or _run
    docker = which("docker")
    if docker is None:
        return Result("docker", False, "docker is not on PATH: cdk deploy builds the Triton image and the hooks")
    info = run([docker, "info", "--format", "{{.ServerVersion}}"])
    if info.returncode != 0:
        return Result("docker", False, f"{docker} cannot reach a Docker daemon: {info.stderr.strip()[:200]}")
    return Result("docker", True, f"{docker}, daemon {info.stdout.strip()}")


def preflight(
    config: PlatformConfig,
    account: str,
    session: Any,
    which: Callable[[str], str | None] | None = None,
    run: Runner | None = None,
) -> list[Result]:
    checks: list[tuple[str, Callable[[], Result | list[Result]]]] = [
        ("credentials", lambda: check_identity(session, account)),
        ("lambda-concurrency", lambda: check_lambda_concurrency(session, config)),
        ("gpu-vcpu-quota", lambda: check_gpu_vcpus(session, config)),
        ("availability-zones", lambda: check_availability_zones(session, config)),
        ("cdk-bootstrap", lambda: check_bootstrap(session)),
        ("docker", lambda: check_docker(which, run)),
    ]
    results: list[Result] = []
    for name, check in checks:
        try:
            outcome = check()
        except (ClientError, BotoCoreError) as error:
            outcome = Result(name, False, f"AWS call failed: {error}")
        results.extend(outcome if isinstance(outcome, list) else [outcome])
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--account", required=True, help="the 12-digit account the stage deploys into")
    parser.add_argument("--region", help="default: the stage's configured region")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.stage, {"account": args.account, "region": args.region or ""})
    except ConfigError as error:
        print(f"FAIL  config: {error}")
        return 1
    session = boto3.session.Session(region_name=config.region)
    results = preflight(config, args.account, session)
    for result in results:
        print(result.line())
    failed = [r for r in results if not r.passed]
    passed = len(results) - len(failed)
    print(f"preflight of {config.stage} in {args.account}: {passed} of {len(results)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
