"""EKS add-ons: created over the self-managed copies EKS installs, and vpc-cni enforcing
the NetworkPolicies the workload ships."""

from __future__ import annotations

import json

from tests.infrastructure.conftest import manifest_objects

SELF_MANAGED_BY_EKS = ("vpc-cni", "kube-proxy", "coredns")


def _addons(synth):
    return {r["Properties"]["AddonName"]: r["Properties"] for r in synth.resources("AWS::EKS::Addon").values()}


def test_every_addon_overwrites_what_eks_installed_itself(dev, prod):
    for synth in (dev, prod):
        addons = _addons(synth)
        assert set(SELF_MANAGED_BY_EKS) <= set(addons)
        assert {name: a.get("ResolveConflicts") for name, a in addons.items()} == dict.fromkeys(addons, "OVERWRITE")


def test_vpc_cni_enforces_the_network_policies_the_workload_ships(dev, prod):
    for synth in (dev, prod):
        configuration = json.loads(_addons(synth)["vpc-cni"]["ConfigurationValues"])
        assert configuration["enableNetworkPolicy"] == "true"
        policies = [o for o in manifest_objects(synth) if o["kind"] == "NetworkPolicy"]
        assert policies, "nothing to enforce: the workload's NetworkPolicies are missing"
