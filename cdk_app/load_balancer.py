"""AWS Load Balancer Controller (Helm, Pod Identity) so that Triton can be reached
from the hook Lambdas through an internal Network Load Balancer.

The in-cluster name of the ClusterIP Service does not resolve outside the cluster
and a ClusterIP is not routable from a Lambda: the controller provisions an
internal NLB (IP targets) for the `LoadBalancer` Service built in
``k8s_workload.internal_nlb_service``, fronted by a security group that admits only
the hook Lambdas' security group.

The controller's policy is written for what RadStream uses (NLB, IP targets,
security groups); mutating calls are limited to resources the controller tagged
for this cluster (``elbv2.k8s.aws/cluster``).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from cdk_app.cluster import pod_identity_role
from cdk_app.config import PlatformConfig

SERVICE_ACCOUNT = "aws-load-balancer-controller"
CLUSTER_TAG = "elbv2.k8s.aws/cluster"

READ_ACTIONS = [
    "ec2:DescribeAccountAttributes",
    "ec2:DescribeAddresses",
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeInternetGateways",
    "ec2:DescribeVpcs",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeInstances",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeTags",
    "ec2:GetSecurityGroupsForVpc",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeLoadBalancerAttributes",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeListenerAttributes",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetGroupAttributes",
    "elasticloadbalancing:DescribeTargetHealth",
    "elasticloadbalancing:DescribeTags",
    "elasticloadbalancing:DescribeCapacityReservation",
]
CREATE_ACTIONS = [
    "elasticloadbalancing:CreateLoadBalancer",
    "elasticloadbalancing:CreateTargetGroup",
    "ec2:CreateSecurityGroup",
]
OWNED_RESOURCE_ACTIONS = [
    "elasticloadbalancing:CreateListener",
    "elasticloadbalancing:DeleteListener",
    "elasticloadbalancing:ModifyListener",
    "elasticloadbalancing:ModifyLoadBalancerAttributes",
    "elasticloadbalancing:SetSecurityGroups",
    "elasticloadbalancing:SetSubnets",
    "elasticloadbalancing:SetIpAddressType",
    "elasticloadbalancing:DeleteLoadBalancer",
    "elasticloadbalancing:ModifyTargetGroup",
    "elasticloadbalancing:ModifyTargetGroupAttributes",
    "elasticloadbalancing:DeleteTargetGroup",
    "elasticloadbalancing:RegisterTargets",
    "elasticloadbalancing:DeregisterTargets",
    "elasticloadbalancing:AddTags",
    "elasticloadbalancing:RemoveTags",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:RevokeSecurityGroupIngress",
    "ec2:DeleteSecurityGroup",
]


class LoadBalancerController(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: PlatformConfig, cluster: eks.Cluster, vpc: ec2.IVpc
    ) -> None:
        super().__init__(scope, construct_id)
        cluster_name = config.cluster.name
        owned = {"StringEquals": {f"aws:ResourceTag/{CLUSTER_TAG}": cluster_name}}
        self.role = pod_identity_role(self, "Role", "AWS Load Balancer Controller (Pod Identity)")
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(sid="Discover", actions=READ_ACTIONS, resources=["*"]),
                iam.PolicyStatement(
                    sid="CreateTaggedForThisCluster",
                    actions=CREATE_ACTIONS,
                    resources=["*"],
                    conditions={"StringEquals": {f"aws:RequestTag/{CLUSTER_TAG}": cluster_name}},
                ),
                iam.PolicyStatement(
                    sid="TagOnCreate",
                    actions=["ec2:CreateTags", "elasticloadbalancing:AddTags"],
                    resources=["*"],
                    conditions={
                        "StringEquals": {f"aws:RequestTag/{CLUSTER_TAG}": cluster_name},
                        "StringLike": {
                            "ec2:CreateAction": ["CreateSecurityGroup"],
                        },
                    },
                ),
                iam.PolicyStatement(
                    sid="ManageOwnedOnly", actions=OWNED_RESOURCE_ACTIONS, resources=["*"], conditions=owned
                ),
                iam.PolicyStatement(
                    sid="ServiceLinkedRole",
                    actions=["iam:CreateServiceLinkedRole"],
                    resources=["*"],
                    conditions={"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}},
                ),
            ],
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
