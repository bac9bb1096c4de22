"""Applies the standalone Prometheus collector (``cdk_app.prometheus_collector``) to the cluster,
with its IAM role bound through EKS Pod Identity."""

from __future__ import annotations

from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct, IDependable

from cdk_app.cluster import pod_identity_role
from cdk_app.config import PlatformConfig
from cdk_app.prometheus_collector import build_collector_objects


class PrometheusCollector(Construct):
    """Applies ``build_collector_objects`` and binds the agent's IAM role through Pod Identity."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        cluster: eks.Cluster,
        pod_identity_agent: IDependable,
        after: list[IDependable],
    ) -> None:
        super().__init__(scope, construct_id)
        self.objects = build_collector_objects(config)
        self.role = pod_identity_role(self, "Role", "CloudWatch agent scraping Triton's metrics (Pod Identity)")
        self.role.add_managed_policy(iam.ManagedPolicy.from_aws_managed_policy_name("CloudWatchAgentServerPolicy"))
        self.identity = eks.CfnPodIdentityAssociation(
            self,
            "Identity",
            cluster_name=cluster.cluster_name,
            namespace=config.collector.namespace,
            service_account=config.collector.service_account_name,
            role_arn=self.role.role_arn,
        )
        self.identity.node.add_dependency(pod_identity_agent)
        self.manifest = eks.KubernetesManifest(self, "Manifest", cluster=cluster, manifest=self.objects)  # type: ignore[arg-type]
        # The credentials exist before the first pod starts; the namespace (the add-on's), the
        # workload namespace (for the Role) and the log group before anything is applied.
        self.manifest.node.add_dependency(self.identity)
        for dependency in after:
            self.manifest.node.add_dependency(dependency)
