"""Inference workload: applies the Kubernetes objects built by ``k8s_workload``
(the same objects rendered into `k8s_manifests/`) to the cluster."""

from __future__ import annotations

from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from cdk_app.config import PlatformConfig
from cdk_app.k8s_workload import build_workload_objects

BAKED_MODEL_REPOSITORY = "/opt/radstream/model_repository"


class InferenceWorkload(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        cluster: eks.Cluster,
        image_uri: str,
        model_repository: str = BAKED_MODEL_REPOSITORY,
        nlb_security_group_id: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.objects = build_workload_objects(config, image_uri, model_repository, nlb_security_group_id)
        namespace, *rest = self.objects
        # Created in this construct's scope (not cluster.add_manifest), so that dependencies
        # declared on the workload (image copied, GPU nodes up) apply to these resources.
        self.namespace = eks.KubernetesManifest(self, "Namespace", cluster=cluster, manifest=[namespace])  # type: ignore[arg-type]
        # One manifest resource for the rest: applied together, after the namespace exists.
        self.workload = eks.KubernetesManifest(self, "Workload", cluster=cluster, manifest=rest)  # type: ignore[arg-type]
        self.workload.node.add_dependency(self.namespace)
