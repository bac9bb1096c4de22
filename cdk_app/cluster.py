"""Cluster: EKS (managed node groups, not Auto Mode) with a CPU system node group,
the GPU node group for Triton, the add-ons, NVIDIA's device plugin and the
Cluster Autoscaler (Pod Identity, least privilege)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk.lambda_layer_kubectl_v36 import KubectlV36Layer
from constructs import Construct

from cdk_app.config import AutoscalingConfig, ClusterConfig, NodeGroupConfig

KUBERNETES_VERSIONS = {"1.36": eks.KubernetesVersion.V1_36}
AMI_TYPES = {
    "AL2023_x86_64_STANDARD": eks.NodegroupAmiType.AL2023_X86_64_STANDARD,
    "AL2023_x86_64_NVIDIA": eks.NodegroupAmiType.AL2023_X86_64_NVIDIA,
}
ALL_LOG_TYPES = [
    eks.ClusterLoggingTypes.API,
    eks.ClusterLoggingTypes.AUDIT,
    eks.ClusterLoggingTypes.AUTHENTICATOR,
    eks.ClusterLoggingTypes.CONTROLLER_MANAGER,
    eks.ClusterLoggingTypes.SCHEDULER,
]
CLUSTER_AUTOSCALER_SERVICE_ACCOUNT = "cluster-autoscaler"
CLOUDWATCH_AGENT_NAMESPACE = "amazon-cloudwatch"
CLOUDWATCH_AGENT_SERVICE_ACCOUNT = "cloudwatch-agent"


def pod_identity_role(scope: Construct, construct_id: str, description: str) -> iam.Role:
    """A role that only EKS Pod Identity can assume (no static keys, no OIDC trust)."""
    principal = iam.ServicePrincipal("pods.eks.amazonaws.com")
    role = iam.Role(scope, construct_id, assumed_by=principal, description=description)
    role.assume_role_policy.add_statements(  # type: ignore[union-attr]
        iam.PolicyStatement(actions=["sts:TagSession"], principals=[principal])
    )
    return role


class Cluster(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ClusterConfig,
        autoscaling: AutoscalingConfig,
        vpc: ec2.IVpc,
        cloudwatch_agent_configuration: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.autoscaling = autoscaling
        # configuration_values of amazon-cloudwatch-observability (metric_catalog.collector_addon_configuration).
        self.cloudwatch_agent_configuration = cloudwatch_agent_configuration
        self.secrets_key = kms.Key(
            self, "SecretsKey", enable_key_rotation=True, description=f"Envelope encryption of {config.name} secrets"
        )
        endpoint = (
            eks.EndpointAccess.PUBLIC_AND_PRIVATE.only_from(*config.public_api_cidrs)
            if config.public_api_cidrs
            else eks.EndpointAccess.PRIVATE
        )
        self.cluster = eks.Cluster(
            self,
            "Cluster",
            cluster_name=config.name,
            version=KUBERNETES_VERSIONS[config.kubernetes_version],
            default_capacity_type=eks.DefaultCapacityType.NODEGROUP,
            default_capacity=0,
            vpc=vpc,
            vpc_subnets=[ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)],
            endpoint_access=endpoint,
            secrets_encryption_key=self.secrets_key,
            cluster_logging=ALL_LOG_TYPES,
            kubectl_provider_options=eks.KubectlProviderOptions(kubectl_layer=KubectlV36Layer(self, "KubectlLayer")),
        )
        if config.admin_role_arn:
            self.cluster.grant_access(
                "AdminAccess",
                config.admin_role_arn,
                [
                    eks.AccessPolicy.from_access_policy_name(
                        "AmazonEKSClusterAdminPolicy", access_scope_type=eks.AccessScopeType.CLUSTER
                    )
                ],
            )

        self.system_nodes = self._node_group(config.system_nodes, labels={"radstream.io/role": "system"})
        self.gpu_nodes = self._node_group(
            config.gpu_nodes,
            labels={config.gpu_label_key: config.gpu_label_value, "radstream.io/role": "gpu"},
            taints=[
                eks.TaintSpec(
                    effect=eks.TaintEffect.NO_SCHEDULE, key=config.gpu_taint_key, value=config.gpu_taint_value
                )
            ],
        )
        self.addons = self._addons()
        self.device_plugin: eks.HelmChart
        self._nvidia_device_plugin()
        self._cluster_autoscaler()

    def _node_group(
        self, group: NodeGroupConfig, labels: dict[str, str], taints: list[eks.TaintSpec] | None = None
    ) -> eks.Nodegroup:
        name = group.name.capitalize()
        launch_template = ec2.LaunchTemplate(
            self,
            f"{name}LaunchTemplate",
            require_imdsv2=True,
            # 2 hops: containers that read instance metadata (Container Insights agent) still
            # can; credentials come from Pod Identity, never from the node role.
            http_put_response_hop_limit=2,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        group.disk_size_gib, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3
                    ),
                )
            ],
        )
        autoscaler_tags = {
            "k8s.io/cluster-autoscaler/enabled": "true",
            f"k8s.io/cluster-autoscaler/{self.config.name}": "owned",
            **{f"k8s.io/cluster-autoscaler/node-template/label/{key}": value for key, value in labels.items()},
            **{
                f"k8s.io/cluster-autoscaler/node-template/taint/{taint.key}": f"{taint.value}:NoSchedule"
                for taint in taints or []
            },
        }
        return self.cluster.add_nodegroup_capacity(
            f"{name}Nodes",
            nodegroup_name=f"{self.config.name}-{group.name}",
            instance_types=[ec2.InstanceType(t) for t in group.instance_types],
            ami_type=AMI_TYPES[group.ami_type],
            min_size=group.min_size,
            max_size=group.max_size,
            desired_size=group.desired_size,
            labels=labels,
            taints=taints,
            tags=autoscaler_tags,
            launch_template_spec=eks.LaunchTemplateSpec(
                id=launch_template.launch_template_id or "", version=launch_template.latest_version_number
            ),
            subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        )

    def _addons(self) -> dict[str, eks.Addon]:
        versions = self.config.addons
        pinned = {
            "vpc-cni": versions.vpc_cni,
            "coredns": versions.coredns,
            "kube-proxy": versions.kube_proxy,
            "eks-pod-identity-agent": versions.pod_identity_agent,
            "metrics-server": versions.metrics_server,
            "amazon-cloudwatch-observability": versions.cloudwatch_observability,
        }
        configuration: dict[str, Mapping[str, Any] | None] = {
            "amazon-cloudwatch-observability": self.cloudwatch_agent_configuration,
            # Enforce NetworkPolicies (the default deny and Triton's ingress policy): the add-on's
            # network policy agent, off unless asked for ("Configure your cluster for Kubernetes
            # network policies", EKS user guide; the add-on schema takes the string "true").
            "vpc-cni": {"enableNetworkPolicy": "true"} if self.config.enforce_network_policies else None,
        }
        addons: dict[str, eks.Addon] = {}
        for name, version in pinned.items():
            addon = eks.Addon(
                self,
                f"Addon-{name}",
                cluster=self.cluster,  # type: ignore[arg-type]  # a gap in the jsii typings of aws_eks_v2
                addon_name=name,
                addon_version=version,
                configuration_values=configuration.get(name),
            )
            # EKS installs vpc-cni, kube-proxy and coredns itself (self-managed); creating the managed
            # add-on over them fails with ConfigurationConflict unless the add-on may overwrite them
            # (AWS::EKS::Addon ResolveConflicts; aws_eks_v2.Addon has no prop for it).
            cfn_addon = addon.node.default_child
            assert isinstance(cfn_addon, eks.CfnAddon)
            cfn_addon.resolve_conflicts = self.config.addon_resolve_conflicts
            addons[name] = addon
        # Add-ons with pods need somewhere to run.
        for name in ("coredns", "metrics-server", "amazon-cloudwatch-observability"):
            addons[name].node.add_dependency(self.system_nodes)
        agent_role = pod_identity_role(self, "CloudWatchAgentRole", "Container Insights agent (Pod Identity)")
        agent_role.add_managed_policy(iam.ManagedPolicy.from_aws_managed_policy_name("CloudWatchAgentServerPolicy"))
        association = eks.CfnPodIdentityAssociation(
            self,
            "CloudWatchAgentIdentity",
            cluster_name=self.cluster.cluster_name,
            namespace=CLOUDWATCH_AGENT_NAMESPACE,
            service_account=CLOUDWATCH_AGENT_SERVICE_ACCOUNT,
            role_arn=agent_role.role_arn,
        )
        association.node.add_dependency(addons["eks-pod-identity-agent"])
        addons["amazon-cloudwatch-observability"].node.add_dependency(association)
        return addons

    def _nvidia_device_plugin(self) -> None:
        config = self.config
        values: dict[str, Any] = {
            # No Node Feature Discovery here: select GPU nodes by our own label instead.
            "affinity": None,
            "nodeSelector": {config.gpu_label_key: config.gpu_label_value},
            "tolerations": [
                {"key": config.gpu_taint_key, "operator": "Exists", "effect": "NoSchedule"},
            ],
        }
        self.device_plugin = self.cluster.add_helm_chart(
            "NvidiaDevicePlugin",
            chart="nvidia-device-plugin",
            repository="https://nvidia.github.io/k8s-device-plugin",
            version=config.addons.nvidia_device_plugin_chart,
            namespace="kube-system",
            release="nvidia-device-plugin",
            values=values,
        )

    def _cluster_autoscaler(self) -> None:
        config, scaling = self.config, self.autoscaling
        role = pod_identity_role(self, "ClusterAutoscalerRole", "Cluster Autoscaler (Pod Identity)")
        # A customer-managed policy (not inline), so it is reviewed and versioned on its own.
        iam.ManagedPolicy(
            self,
            "ClusterAutoscalerPolicy",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    sid="DescribeCapacity",
                    # Describe calls cannot be scoped to resources.
                    actions=[
                        "autoscaling:DescribeAutoScalingGroups",
                        "autoscaling:DescribeAutoScalingInstances",
                        "autoscaling:DescribeLaunchConfigurations",
                        "autoscaling:DescribeScalingActivities",
                        "autoscaling:DescribeTags",
                        "ec2:DescribeImages",
                        "ec2:DescribeInstanceTypes",
                        "ec2:DescribeLaunchTemplateVersions",
                        "ec2:GetInstanceTypesFromInstanceRequirements",
                    ],
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    sid="ScaleOwnNodeGroupsOnly",
                    actions=["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
                    resources=["*"],
                    conditions={"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{config.name}": "owned"}},
                ),
                iam.PolicyStatement(
                    sid="ReadOwnNodeGroups",
                    actions=["eks:DescribeNodegroup"],
                    resources=[
                        cdk.Stack.of(self).format_arn(
                            service="eks", resource="nodegroup", resource_name=f"{config.name}/*"
                        )
                    ],
                ),
            ],
        )
        association = eks.CfnPodIdentityAssociation(
            self,
            "ClusterAutoscalerIdentity",
            cluster_name=self.cluster.cluster_name,
            namespace="kube-system",
            service_account=CLUSTER_AUTOSCALER_SERVICE_ACCOUNT,
            role_arn=role.role_arn,
        )
        association.node.add_dependency(self.addons["eks-pod-identity-agent"])
        chart = self.cluster.add_helm_chart(
            "ClusterAutoscaler",
            chart="cluster-autoscaler",
            repository="https://kubernetes.github.io/autoscaler",
            version=config.addons.cluster_autoscaler_chart,
            namespace="kube-system",
            release="cluster-autoscaler",
            values={
                "autoDiscovery": {"clusterName": config.name},
                "awsRegion": cdk.Stack.of(self).region,
                "image": {"tag": config.addons.cluster_autoscaler_image_tag},
                "rbac": {"serviceAccount": {"create": True, "name": CLUSTER_AUTOSCALER_SERVICE_ACCOUNT}},
                "nodeSelector": {"radstream.io/role": "system"},
                "extraArgs": {
                    "balance-similar-node-groups": True,
                    "skip-nodes-with-system-pods": False,
                    # React to pending GPU pods (evicted placeholders) within seconds.
                    "scan-interval": f"{scaling.cluster_autoscaler_scan_interval_seconds}s",
                    "expander": scaling.cluster_autoscaler_expander,
                    "scale-down-unneeded-time": f"{scaling.cluster_autoscaler_scale_down_unneeded_seconds}s",
                    "scale-down-delay-after-add": f"{scaling.cluster_autoscaler_scale_down_delay_after_add_seconds}s",
                    # Placeholders sit at this priority: pending ones still trigger a scale-up.
                    "expendable-pods-priority-cutoff": scaling.overprovisioning_priority,
                },
            },
        )
        chart.node.add_dependency(association)
        chart.node.add_dependency(self.system_nodes)
