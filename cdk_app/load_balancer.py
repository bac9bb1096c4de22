"""AWS Load Balancer Controller (Helm, Pod Identity) so that Triton can be reached
from the hook Lambdas through an internal Network Load Balancer.

The in-cluster name of the ClusterIP Service does not resolve outside the cluster
and a ClusterIP is not routable from a Lambda: the controller provisions an
internal NLB (IP targets) for the `LoadBalancer` Service built in
``k8s_workload.internal_nlb_service``, fronted by a security group that admits only
the hook Lambdas' security group.

The controller's permissions are the project's official policy for the pinned
controller (``docs/install/iam_policy.json`` of the release tag), kept unchanged in
``cdk_app/data/`` and loaded here: a hand-trimmed policy missed the calls ELB makes
on the controller's behalf (``elasticloadbalancing:AddTags`` on create, checked
under ``elasticloadbalancing:CreateAction``; listener tags; ingress rules on the
pods' security group), so no NLB was ever created (controller issues #2692, #3399,
#3428). ``tests/infrastructure/test_load_balancer_policy.py`` compares the
synthesized policy with the file and evaluates the calls RadStream's NLB needs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from cdk_app.cluster import pod_identity_role
from cdk_app.config import ConfigError, PlatformConfig

SERVICE_ACCOUNT = "aws-load-balancer-controller"
CLUSTER_TAG = "elbv2.k8s.aws/cluster"
DATA_DIR = Path(__file__).resolve().parent / "data"
# Chart version -> (controller tag, commit of the tag, git blob hash of docs/install/iam_policy.json there).
POLICY_SOURCES: dict[str, tuple[str, str, str]] = {
    "3.5.0": ("v3.5.0", "11eb202c97e4ae2ee45e0658c4cde9a4b59f33d4", "761d0e733c41089c91ea009dd29faf71918085e5"),
}
POLICY_REPOSITORY = "https://github.com/kubernetes-sigs/aws-load-balancer-controller"


def policy_path(chart_version: str) -> Path:
    """The vendored official policy of the controller that chart ``chart_version`` installs."""
    if chart_version not in POLICY_SOURCES:
        raise ConfigError(
            f"cluster.addons.load_balancer_controller_chart={chart_version!r} has no vendored IAM policy: add "
            f"docs/install/iam_policy.json of that release to cdk_app/data/ and POLICY_SOURCES"
        )
    return DATA_DIR / f"aws-load-balancer-controller-iam-policy-v{chart_version}.json"


def official_policy(chart_version: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(policy_path(chart_version).read_text())
    return document


class LoadBalancerController(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: PlatformConfig, cluster: eks.Cluster, vpc: ec2.IVpc
    ) -> None:
        super().__init__(scope, construct_id)
        cluster_name = config.cluster.name
        chart_version = config.cluster.addons.load_balancer_controller_chart
        self.role = pod_identity_role(self, "Role", "AWS Load Balancer Controller (Pod Identity)")
        document = official_policy(chart_version)
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            roles=[self.role],
            description=f"AWS Load Balancer Controller {POLICY_SOURCES[chart_version][0]}: official iam_policy.json",
            # Statement for statement as published (minimize=False overrides the app's minimizePolicies
            # flag), so the deployed policy is comparable with the file.
            document=iam.PolicyDocument(
                minimize=False, statements=[iam.PolicyStatement.from_json(s) for s in document["Statement"]]
            ),
        )
        association = eks.CfnPodIdentityAssociation(
            self,
            "Identity",
            cluster_name=cluster.cluster_name,
            namespace="kube-system",
            service_account=SERVICE_ACCOUNT,
            role_arn=self.role.role_arn,
        )
        self.chart = eks.HelmChart(  # in this scope, so dependencies on the construct apply
            self,
            "Chart",
            cluster=cluster,  # type: ignore[arg-type]
            chart="aws-load-balancer-controller",
            repository="https://aws.github.io/eks-charts",
            version=config.cluster.addons.load_balancer_controller_chart,
            namespace="kube-system",
            release="aws-load-balancer-controller",
            values={
                "clusterName": cluster_name,
                "region": cdk.Stack.of(self).region,
                "vpcId": vpc.vpc_id,
                "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
                "nodeSelector": {"radstream.io/role": "system"},
                # Only Services that ask for it (loadBalancerClass); nothing else in the cluster.
                "enableServiceMutatorWebhook": False,
            },
        )
        self.chart.node.add_dependency(association)


class TritonEndpoint(Construct):
    """The internal NLB's security group, its address once provisioned, and the SSM
    parameter through which the hooks find Triton (never a hard-coded address)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        vpc: ec2.IVpc,
        clients: ec2.ISecurityGroup,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        workload = config.workload
        self.security_group = ec2.SecurityGroup(
            self, "NlbSecurityGroup", vpc=vpc, description="Triton internal NLB: hook Lambdas only"
        )
        for port, name in ((workload.http_port, "HTTP"), (workload.grpc_port, "gRPC")):
            self.security_group.add_ingress_rule(clients, ec2.Port.tcp(port), f"Triton {name} from the hooks")
        self.service_name = f"{workload.service_name}-nlb"

    def publish_address(self, cluster: eks.Cluster, after: Construct) -> ssm.StringParameter:
        """Reads the NLB's DNS name from the Service status and stores ``host:port`` in SSM."""
        workload = self.config.workload
        self.address = eks.KubernetesObjectValue(
            self,
            "Address",
            cluster=cluster,  # type: ignore[arg-type]  # a gap in the jsii typings of aws_eks_v2
            object_type="service",
            object_name=self.service_name,
            object_namespace=workload.namespace,
            json_path=".status.loadBalancer.ingress[0].hostname",
            timeout=cdk.Duration.minutes(10),
        )
        self.address.node.add_dependency(after)
        return ssm.StringParameter(
            self,
            "Url",
            parameter_name=self.config.hooks.triton_url_parameter(self.config.stage),
            string_value=f"{self.address.value}:{workload.http_port}",
            description="Triton's internal NLB address (host:port) for the RadStream hooks",
        )
