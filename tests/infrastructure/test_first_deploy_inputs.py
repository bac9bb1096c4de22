"""What `make preflight` compares with is what the template deploys: the reserved Lambda
concurrency, the bootstrap version the template checks, and the AZs by ID."""

from __future__ import annotations

import json

import pytest

from cdk_app.config import ConfigError, load_config
from cdk_app.preflight import MIN_BOOTSTRAP_VERSION


def test_the_reserved_concurrency_preflight_checks_is_the_templates(dev, prod):
    for synth in (dev, prod):
        reserved = [
            r["Properties"]["ReservedConcurrentExecutions"]
            for r in synth.resources("AWS::Lambda::Function").values()
            if "ReservedConcurrentExecutions" in r["Properties"]
        ]
        assert sum(reserved) == synth.config.hooks.reserved_concurrency_total


def test_preflight_asks_for_the_bootstrap_version_the_template_checks(dev):
    rule = dev.json["Rules"]["CheckBootstrapVersion"]["Assertions"][0]["Assert"]
    rejected = rule["Fn::Not"][0]["Fn::Contains"][0]
    assert max(int(v) for v in rejected) + 1 == MIN_BOOTSTRAP_VERSION


def test_subnets_are_placed_by_the_configured_az_ids_not_by_getazs_order(dev, prod):
    for synth in (dev, prod):
        assert "Fn::GetAZs" not in json.dumps(synth.json)
        subnets = synth.resources("AWS::EC2::Subnet").values()
        placed = sorted(s["Properties"]["AvailabilityZoneId"] for s in subnets)
        assert all("AvailabilityZone" not in s["Properties"] for s in subnets)
        ids = synth.config.network.availability_zone_ids
        assert placed == sorted(ids * 2), "one public and one node subnet per configured AZ ID"


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (("use1-az1", "use1-az3"), "EKS does not support use1-az3"),
        (("use1-az1",), "must name 2 distinct AZ IDs"),
        (("use1-az1", "us-east-1a"), "is not an AZ ID"),
    ],
)
def test_az_ids_that_cannot_hold_the_cluster_are_refused(ids, message):
    from dataclasses import replace

    dev = load_config("dev")
    with pytest.raises(ConfigError, match=message):
        replace(dev, network=replace(dev.network, availability_zone_ids=ids)).validate()
