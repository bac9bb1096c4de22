"""The AWS Load Balancer Controller's policy: the official v3.5.0 iam_policy.json, loaded
from cdk_app/data/, and the calls the controller makes for RadStream's internal NLB allowed.

The calls and their authorization context follow the controller's v3.5.0 source (tags on
create, the backend security group rules) and the ELB/EC2 authorization docs: ELB authorizes
``elasticloadbalancing:AddTags`` for the tags given at creation, with
``elasticloadbalancing:CreateAction``; EC2 authorizes ``CreateSecurityGroup`` on the new group
and on the VPC, and ``CreateTags`` with ``ec2:CreateAction``.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from cdk_app.load_balancer import POLICY_SOURCES, official_policy, policy_path
from tests.infrastructure.conftest import manifest_objects
from tests.infrastructure.iam_eval import Request, allowed

ACCOUNT = "111122223333"
REGION = "us-east-1"
ELB = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}"
NLB = f"{ELB}:loadbalancer/net/k8s-radstrea-tritonin-0123456789/0123456789abcdef"
TARGET_GROUP = f"{ELB}:targetgroup/k8s-radstrea-tritonin-0123456789/0123456789abcdef"
LISTENER = f"{ELB}:listener/net/k8s-radstrea-tritonin-0123456789/0123456789abcdef/fedcba9876543210"
EC2 = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
# The EKS cluster security group: on the nodes' (and so the IP-target pods') ENIs; EKS tags it
# kubernetes.io/cluster/<name>, never elbv2.k8s.aws/cluster.
POD_SECURITY_GROUP = f"{EC2}:security-group/sg-0c1u5te4000000000"
NEW_SECURITY_GROUP = f"{EC2}:security-group/sg-0backend000000000"
VPC = f"{EC2}:vpc/vpc-0123456789abcdef0"
ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer"


def _normalised(document: dict[str, Any]) -> list[dict[str, Any]]:
    """IAM reads a one-element list and its element alike; CloudFormation output drops such lists."""

    def one(value: Any) -> Any:
        if isinstance(value, list):
            return value[0] if len(value) == 1 else value
        if isinstance(value, dict):
            return {k: one(v) for k, v in value.items()}
        return value

    return [one(statement) for statement in document["Statement"]]


def controller_policy(synth: Any) -> dict[str, Any]:
    (policy,) = [
        r["Properties"]["PolicyDocument"]
        for logical_id, r in synth.resources("AWS::IAM::ManagedPolicy").items()
        if logical_id.startswith("LoadBalancerControllerPolicy")
    ]
    return policy  # type: ignore[no-any-return]


def test_the_vendored_file_is_the_official_v3_5_0_policy():
    tag, commit, blob = POLICY_SOURCES["3.5.0"]
    assert (tag, commit) == ("v3.5.0", "11eb202c97e4ae2ee45e0658c4cde9a4b59f33d4")
    # git's own object id of the file equals the blob at docs/install/iam_policy.json in the tag.
    hashed = subprocess.run(["git", "hash-object", str(policy_path("3.5.0"))], capture_output=True, text=True)
    assert hashed.stdout.strip() == blob


def test_the_synthesized_policy_is_the_file_statement_for_statement(dev, prod):
    official = official_policy(dev.config.cluster.addons.load_balancer_controller_chart)
    for synth in (dev, prod):
        synthesized = controller_policy(synth)
        assert synthesized["Version"] == official["Version"]
        assert _normalised(synthesized) == _normalised(official)


@pytest.fixture(scope="module")
def nlb_service(dev) -> dict[str, Any]:
    (service,) = [
        o
        for o in manifest_objects(dev)
        if o["kind"] == "Service" and o["spec"].get("loadBalancerClass") == "service.k8s.aws/nlb"
    ]
    return service


def _creation_requests(cluster_name: str) -> list[Request]:
    tags = {
        "elbv2.k8s.aws/cluster": cluster_name,
        "service.k8s.aws/stack": "radstream/triton-inference-service-nlb",
        "service.k8s.aws/resource": "LoadBalancer",
    }
    owned = {"elbv2.k8s.aws/cluster": cluster_name}
    return [
        # The NLB, its target groups and listeners, each created with tags.
        Request("elasticloadbalancing:CreateLoadBalancer", NLB, request_tags=tags),
        Request(
            "elasticloadbalancing:AddTags",
            NLB,
            request_tags=tags,
            context={"elasticloadbalancing:CreateAction": "CreateLoadBalancer"},
        ),
        Request("elasticloadbalancing:CreateTargetGroup", TARGET_GROUP, request_tags=tags),
        Request(
            "elasticloadbalancing:AddTags",
            TARGET_GROUP,
            request_tags=tags,
            context={"elasticloadbalancing:CreateAction": "CreateTargetGroup"},
        ),
        Request("elasticloadbalancing:CreateListener", NLB, request_tags=tags, resource_tags=owned),
        Request(
            "elasticloadbalancing:AddTags",
            LISTENER,
            request_tags=tags,
            context={"elasticloadbalancing:CreateAction": "CreateListener"},
        ),
        Request("elasticloadbalancing:ModifyLoadBalancerAttributes", NLB, resource_tags=owned),
        Request("elasticloadbalancing:SetSecurityGroups", NLB, resource_tags=owned),
        Request("elasticloadbalancing:ModifyTargetGroupAttributes", TARGET_GROUP, resource_tags=owned),
        Request("elasticloadbalancing:RegisterTargets", TARGET_GROUP, resource_tags=owned),
        Request("elasticloadbalancing:DeregisterTargets", TARGET_GROUP, resource_tags=owned),
        # The shared backend security group: authorized on the new group and on the VPC.
        Request("ec2:CreateSecurityGroup", NEW_SECURITY_GROUP, request_tags=owned),
        Request("ec2:CreateSecurityGroup", VPC),
        Request(
            "ec2:CreateTags",
            NEW_SECURITY_GROUP,
            request_tags=owned,
            context={"ec2:CreateAction": "CreateSecurityGroup"},
        ),
    ]


def test_the_controller_may_create_and_tag_the_nlb_its_target_groups_and_listeners(dev):
    policy = controller_policy(dev)
    denied = [(r.action, r.resource) for r in _creation_requests(dev.config.cluster.name) if not allowed(policy, r)]
    assert denied == []


def test_the_nlb_reaches_the_pods_on_http_and_grpc_and_its_health_checks_pass(dev, nlb_service):
    workload = dev.config.workload
    annotations = nlb_service["metadata"]["annotations"]
    target_ports = {workload.http_port, workload.grpc_port}
    assert {p["port"] for p in nlb_service["spec"]["ports"]} == target_ports
    # Health checks go to a port the backend rules open (the traffic port or one of the target ports).
    health_port = annotations.get(f"{ANNOTATION}-healthcheck-port", "traffic-port")
    assert health_port == "traffic-port" or int(health_port) in target_ports
    if annotations.get(f"{ANNOTATION}-manage-backend-security-group-rules", "true") == "true":
        # The controller adds the NLB's rules to the pods' security group (the cluster security group).
        policy = controller_policy(dev)
        for action in ("ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"):
            assert allowed(policy, Request(action, POD_SECURITY_GROUP)), action
    else:
        # Otherwise the stack must open the pods' security group to the NLB's group itself.
        ingress = [
            r["Properties"]
            for r in dev.resources("AWS::EC2::SecurityGroupIngress").values()
            if "ClusterSecurityGroupId" in json.dumps(r["Properties"].get("GroupId"))
        ]
        opened = {(i["FromPort"], i["ToPort"]) for i in ingress if "NlbSecurityGroup" in json.dumps(i)}
        assert {(port, port) for port in target_ports} <= opened
    # The NLB's own group lets the traffic out to the pods.
    (nlb_group,) = [
        r["Properties"]
        for logical_id, r in dev.resources("AWS::EC2::SecurityGroup").items()
        if logical_id.startswith("TritonEndpointNlbSecurityGroup")
    ]
    assert {"CidrIp": "0.0.0.0/0", "Description": "Allow all outbound traffic by default", "IpProtocol": "-1"} in (
        nlb_group["SecurityGroupEgress"]
    )


def test_the_evaluator_denies_what_the_old_hand_written_policy_denied():
    """The evaluator is not permissive: the tag-on-create call under the old policy's only
    tagging statement (an ec2:CreateAction condition) and an untagged group are denied."""
    old = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["ec2:CreateTags", "elasticloadbalancing:AddTags"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"aws:RequestTag/elbv2.k8s.aws/cluster": "c"},
                    "StringLike": {"ec2:CreateAction": ["CreateSecurityGroup"]},
                },
            },
            {
                "Effect": "Allow",
                "Action": ["ec2:AuthorizeSecurityGroupIngress"],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:ResourceTag/elbv2.k8s.aws/cluster": "c"}},
            },
        ]
    }
    tags = {"elbv2.k8s.aws/cluster": "c"}
    create = {"elasticloadbalancing:CreateAction": "CreateLoadBalancer"}
    assert not allowed(old, Request("elasticloadbalancing:AddTags", NLB, request_tags=tags, context=create))
    assert not allowed(old, Request("ec2:AuthorizeSecurityGroupIngress", POD_SECURITY_GROUP))
    assert allowed(old, Request("ec2:AuthorizeSecurityGroupIngress", POD_SECURITY_GROUP, resource_tags=tags))
