"""`make preflight` under moto: a ready account passes every check, a fresh account fails
the ones a first deploy would fail on, each on its own line, with exit code 1.

moto serves the EC2 (AZs, their IDs, instance-type offerings, vCPUs), SSM and STS calls from
its own data. Its Service Quotas backend holds only VPC quotas, so the tests give the account
its Lambda and EC2 quotas through that backend (``account_quotas``); the boto3 calls, their
serialization and the quota lookup stay real.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.servicequotas.exceptions import NoSuchResource
from moto.servicequotas.models import ServiceQuotasBackend

from cdk_app import preflight
from cdk_app.config import load_config

REGION = "us-east-1"


@pytest.fixture
def account_quotas(monkeypatch):
    quotas: dict[tuple[str, str], float] = {}
    original = ServiceQuotasBackend.get_service_quota

    def get_service_quota(self, service_code, quota_code):
        if (service_code, quota_code) in quotas:
            return {"ServiceCode": service_code, "QuotaCode": quota_code, "Value": quotas[service_code, quota_code]}
        if service_code == "vpc":
            return original(self, service_code, quota_code)
        raise NoSuchResource

    monkeypatch.setattr(ServiceQuotasBackend, "get_service_quota", get_service_quota)
    return quotas


@pytest.fixture
def aws():
    with mock_aws():
        yield boto3.session.Session(region_name=REGION)


def docker_daemon(command):
    assert command[1:] == ["info", "--format", "{{.ServerVersion}}"]
    return subprocess.CompletedProcess(command, 0, stdout="27.3.1\n", stderr="")


def by_name(results):
    return {r.name: r for r in results}


def test_a_ready_account_passes_every_check(aws, account_quotas):
    account_quotas[preflight.LAMBDA_CONCURRENCY_QUOTA] = 1000
    account_quotas[preflight.G_INSTANCE_VCPU_QUOTA] = 64
    aws.client("ssm").put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="28", Type="String")
    config = load_config("dev")
    results = preflight.preflight(config, DEFAULT_ACCOUNT_ID, aws, which=lambda _: "/usr/bin/docker", run=docker_daemon)
    assert [r.name for r in results if not r.passed] == []
    names = by_name(results)
    assert set(names) == {
        "credentials",
        "lambda-concurrency",
        "gpu-vcpu-quota",
        *(f"az {az}" for az in config.network.availability_zone_ids),
        "cdk-bootstrap",
        "docker",
    }
    # The numbers come from the configuration: 20 + 2 + 1 + 1 reserved (endpoint, gate, canary,
    # scale events), 4 x g5.xlarge (4 vCPUs).
    assert config.hooks.reserved_concurrency_total == 24
    assert "reserves 24" in names["lambda-concurrency"].detail
    assert "needs >= 124" in names["lambda-concurrency"].detail
    assert "needs >= 16" in names["gpu-vcpu-quota"].detail


def test_a_fresh_account_fails_where_the_first_deploy_would(aws, account_quotas):
    account_quotas[preflight.LAMBDA_CONCURRENCY_QUOTA] = 10
    account_quotas[preflight.G_INSTANCE_VCPU_QUOTA] = 8
    dev = load_config("dev")
    # use1-az3 (EKS rejects it), an ID that does not exist, and use1-az5, which has no g6e (moto's offerings data).
    config = replace(
        dev,
        network=replace(dev.network, availability_zone_ids=("use1-az3", "use1-az9", "use1-az5")),
        cluster=replace(dev.cluster, gpu_nodes=replace(dev.cluster.gpu_nodes, instance_types=("g6e.xlarge",))),
    )
    results = by_name(preflight.preflight(config, "444455556666", aws, which=lambda _: None))
    assert {name for name, r in results.items() if not r.passed} == set(results)
    assert "caller account 123456789012, target 444455556666" in results["credentials"].detail
    assert "account limit 10" in results["lambda-concurrency"].detail
    assert "quota 8 vCPUs" in results["gpu-vcpu-quota"].detail
    assert "EKS does not support" in results["az use1-az3"].detail
    assert "no such AZ ID" in results["az use1-az9"].detail
    assert "does not offer g6e.xlarge" in results["az use1-az5"].detail
    assert "not found: run cdk bootstrap" in results["cdk-bootstrap"].detail
    assert "not on PATH" in results["docker"].detail


def test_an_old_bootstrap_and_a_stopped_docker_daemon_fail(aws):
    aws.client("ssm").put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="5", Type="String")
    assert not preflight.check_bootstrap(aws).passed
    stopped = subprocess.CompletedProcess([], 1, stdout="", stderr="Cannot connect to the Docker daemon")
    result = preflight.check_docker(which=lambda _: "/usr/bin/docker", run=lambda _: stopped)
    assert not result.passed
    assert "Cannot connect" in result.detail


def test_the_command_prints_one_line_per_check_and_exits_1_on_a_failure(aws, account_quotas, capsys, monkeypatch):
    account_quotas[preflight.LAMBDA_CONCURRENCY_QUOTA] = 1000
    account_quotas[preflight.G_INSTANCE_VCPU_QUOTA] = 64
    monkeypatch.setattr(preflight.shutil, "which", lambda _: None)  # no Docker on this machine
    assert preflight.main(["--stage", "dev", "--account", DEFAULT_ACCOUNT_ID]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert all(line.startswith(("PASS  ", "FAIL  ")) for line in lines[:-1])
    assert [line.split(":")[0] for line in lines if line.startswith("FAIL")] == ["FAIL  cdk-bootstrap", "FAIL  docker"]
    assert lines[-1].endswith("checks passed")
