"""The RadStream platform stack: composes the constructs of one stage."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from cdk_app.autoscaling import Autoscaling
from cdk_app.cluster import Cluster
from cdk_app.config import PlatformConfig
from cdk_app.hooks import Hooks
from cdk_app.inference_api import InferenceApi
from cdk_app.inference_workload import BAKED_MODEL_REPOSITORY, InferenceWorkload
from cdk_app.load_balancer import LoadBalancerController, TritonEndpoint
from cdk_app.loadtest_runner import LoadTestRunner
from cdk_app.metric_catalog import collector_addon_configuration
from cdk_app.model_store import ModelStore
from cdk_app.network import Network
from cdk_app.observability import Observability
from cdk_app.prometheus_collector_construct import PrometheusCollector
from cdk_app.registry import Registry
from cdk_app.release import gate_environment


class RadStreamPlatformStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.network = Network(self, "Network", config=config.network, cluster_name=config.cluster.name)
        self.registry = Registry(self, "Registry", config=config.registry)
        self.cluster = Cluster(
            self,
            "Cluster",
            config=config.cluster,
            autoscaling=config.autoscaling,
            vpc=self.network.vpc,
            cloudwatch_agent_configuration=collector_addon_configuration(config),
        )

        model_repository = BAKED_MODEL_REPOSITORY
        self.model_store: ModelStore | None = None
        if config.model_store.use_s3:
            self.model_store = ModelStore(self, "ModelStore", config=config.model_store)
            model_repository = self.model_store.uri
            identity = eks.CfnPodIdentityAssociation(
                self,
                "TritonModelStoreIdentity",
                cluster_name=self.cluster.cluster.cluster_name,
                namespace=config.workload.namespace,
                service_account=config.workload.service_account_name,
                role_arn=self.model_store.reader_role.role_arn,
            )
            identity.node.add_dependency(self.cluster.addons["eks-pod-identity-agent"])

        # Hooks reach Triton through an internal NLB that admits only their security group.
        self.hooks_security_group = ec2.SecurityGroup(
            self, "HooksSecurityGroup", vpc=self.network.vpc, description="RadStream hook Lambdas"
        )
        self.load_balancer_controller = LoadBalancerController(
            self, "LoadBalancerController", config=config, cluster=self.cluster.cluster, vpc=self.network.vpc
        )
        self.load_balancer_controller.node.add_dependency(self.cluster.system_nodes)
        self.triton_endpoint = TritonEndpoint(
            self, "TritonEndpoint", config=config, vpc=self.network.vpc, clients=self.hooks_security_group
        )

        self.workload = InferenceWorkload(
            self,
            "InferenceWorkload",
            config=config,
            cluster=self.cluster.cluster,
            image_uri=self.registry.image_uri,
            model_repository=model_repository,
            nlb_security_group_id=self.triton_endpoint.security_group.security_group_id,
        )
        self.workload.node.add_dependency(self.load_balancer_controller)
        self.autoscaling = Autoscaling(self, "Autoscaling", config=config, cluster=self.cluster.cluster)
        self.autoscaling.node.add_dependency(self.cluster.system_nodes)
        # Pods need the image copied into radstream-triton, GPU nodes and the device plugin.
        self.workload.node.add_dependency(self.registry.image_copy)
        self.workload.node.add_dependency(self.cluster.gpu_nodes)
        self.workload.node.add_dependency(self.cluster.device_plugin)
        if self.model_store is not None:
            self.workload.node.add_dependency(self.model_store.deployment)

        self.triton_url = self.triton_endpoint.publish_address(self.cluster.cluster, after=self.workload)

        self.hooks = Hooks(
            self,
            "Hooks",
            config=config,
            vpc=self.network.vpc,
            security_group=self.hooks_security_group,
            cluster=self.cluster.cluster,
            triton_url=self.triton_url,
            # The gate runs once the workload is applied and the NLB has an address, and again on every
            # change of the image, the model repository or the workload objects.
            execute_after=[self.workload, self.triton_endpoint],
            release=gate_environment(self.registry.image_uri, self.workload.objects),
        )
        self.inference_api = InferenceApi(self, "InferenceApi", config=config, endpoint=self.hooks.inference_endpoint)
        self.load_test = LoadTestRunner(
            self,
            "LoadTest",
            vpc=self.network.vpc,
            security_group=self.hooks_security_group,
            triton_url=self.triton_url,
            log_retention_days=config.hooks.log_retention_days,
        )
        # Dashboard, alarms and their topics; the Prometheus agent writes into the log group created here.
        self.observability = Observability(self, "Observability", config=config)
        # Scrapes Triton: in the add-on's namespace, with its Role in the workload's.
        self.prometheus_collector = PrometheusCollector(
            self,
            "PrometheusCollector",
            config=config,
            cluster=self.cluster.cluster,
            pod_identity_agent=self.cluster.addons["eks-pod-identity-agent"],
            after=[
                self.cluster.addons["amazon-cloudwatch-observability"],
                self.workload.namespace,
                self.observability.prometheus_log_group,
            ],
        )

        # Read by the pipeline's post-deploy steps.
        self.health_check_function_output = cdk.CfnOutput(
            self, "HealthCheckFunctionName", value=self.hooks.health_check.function_name
        )
        self.load_test_project_output = cdk.CfnOutput(
            self, "LoadTestProjectName", value=self.load_test.project.project_name
        )
        cdk.CfnOutput(self, "ClusterName", value=self.cluster.cluster.cluster_name)
        cdk.CfnOutput(self, "EcrRepositoryUri", value=self.registry.repository.repository_uri)
        cdk.CfnOutput(self, "TritonImage", value=self.registry.image_uri)
        cdk.CfnOutput(
            self,
            "InferenceEndpoint",
            value=f"http://{config.workload.in_cluster_address}",
            description="In-cluster Triton endpoint (HTTP) for Step Functions' callers",
        )
        cdk.CfnOutput(
            self,
            "TritonInternalUrl",
            value=self.triton_url.string_value,
            description="Triton's internal NLB address (host:port), reachable from the hooks' security group",
        )
        cdk.CfnOutput(
            self,
            "TritonUrlParameter",
            value=self.triton_url.parameter_name,
            description="SSM parameter holding Triton's internal NLB address (host:port) for the hooks",
        )
