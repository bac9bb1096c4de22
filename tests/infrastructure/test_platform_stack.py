"""The synthesized platform: the properties that matter to whoever deploys and runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_cdk.assertions import Match

from cdk_app.render_manifests import RULES_FILE, render
from tests.conftest import REPO_ROOT
from tests.infrastructure.conftest import ADMIN_ROLE, VARIANTS, join_to_text, manifest_objects


def test_gpu_node_group_has_the_nvidia_ami_taint_label_and_sizes(dev, prod):
    for synth, (low, high) in ((dev, (2, 4)), (prod, (2, 5))):
        synth.template.has_resource_properties(
            "AWS::EKS::Nodegroup",
            {
                "NodegroupName": f"radstream-{synth.config.stage}-gpu",
                "AmiType": "AL2023_x86_64_NVIDIA",
                "InstanceTypes": ["g5.xlarge"],
                "ScalingConfig": {"MinSize": low, "MaxSize": high, "DesiredSize": low},
                "Taints": [{"Effect": "NO_SCHEDULE", "Key": "nvidia.com/gpu", "Value": "true"}],
                "Labels": Match.object_like({"k8s.amazonaws.com/accelerator": "nvidia-g5"}),
                "Tags": Match.object_like(
                    {
                        "k8s.io/cluster-autoscaler/enabled": "true",
                        f"k8s.io/cluster-autoscaler/radstream-{synth.config.stage}": "owned",
                        "k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu": "true:NoSchedule",
                    }
                ),
            },
        )


def test_system_node_group_has_two_cpu_nodes(dev):
    dev.template.has_resource_properties(
        "AWS::EKS::Nodegroup",
        {
            "NodegroupName": "radstream-dev-system",
            "AmiType": "AL2023_x86_64_STANDARD",
            "ScalingConfig": {"MinSize": 2, "MaxSize": 4, "DesiredSize": 2},
        },
    )


def test_nodes_require_imdsv2_and_encrypted_disks(dev):
    templates = dev.resources("AWS::EC2::LaunchTemplate")
    assert len(templates) == 2
    for template in templates.values():
        data = template["Properties"]["LaunchTemplateData"]
        assert data["MetadataOptions"]["HttpTokens"] == "required"
        (device,) = data["BlockDeviceMappings"]
        assert device["Ebs"]["Encrypted"] is True


def test_cluster_logs_everything_and_encrypts_secrets_with_a_rotated_key(dev):
    (cluster,) = dev.resources("AWS::EKS::Cluster").values()
    properties = cluster["Properties"]
    assert properties["Name"] == "radstream-dev"
    assert properties["Version"] == "1.36"
    assert properties["ComputeConfig"] == {"Enabled": False}, "not Auto Mode"
    enabled = {entry["Type"] for entry in properties["Logging"]["ClusterLogging"]["EnabledTypes"]}
    assert enabled == {"api", "audit", "authenticator", "controllerManager", "scheduler"}
    (encryption,) = properties["EncryptionConfig"]
    assert encryption["Resources"] == ["secrets"]
    key_id = encryption["Provider"]["KeyArn"]["Fn::GetAtt"][0]
    assert dev.json["Resources"][key_id]["Properties"]["EnableKeyRotation"] is True


def test_api_endpoint_is_limited_in_dev_and_private_in_prod(dev, prod):
    dev_vpc = next(iter(dev.resources("AWS::EKS::Cluster").values()))["Properties"]["ResourcesVpcConfig"]
    assert dev_vpc["EndpointPublicAccess"] is True
    assert dev_vpc["EndpointPrivateAccess"] is True
    assert dev_vpc["PublicAccessCidrs"] == ["198.51.100.0/24"]
    prod_vpc = next(iter(prod.resources("AWS::EKS::Cluster").values()))["Properties"]["ResourcesVpcConfig"]
    assert prod_vpc["EndpointPublicAccess"] is False
    assert prod_vpc["EndpointPrivateAccess"] is True


def test_admin_role_gets_a_cluster_admin_access_entry(dev, prod):
    (entry,) = [
        e for e in dev.resources("AWS::EKS::AccessEntry").values() if e["Properties"]["PrincipalArn"] == ADMIN_ROLE
    ]
    (policy,) = entry["Properties"]["AccessPolicies"]
    assert policy["AccessScope"] == {"Type": "cluster"}
    assert "AmazonEKSClusterAdminPolicy" in json.dumps(policy["PolicyArn"])
    assert not [
        e for e in prod.resources("AWS::EKS::AccessEntry").values() if e["Properties"]["PrincipalArn"] == ADMIN_ROLE
    ]


def test_addons_are_pinned(dev):
    addons = {
        a["Properties"]["AddonName"]: a["Properties"].get("AddonVersion")
        for a in dev.resources("AWS::EKS::Addon").values()
    }
    versions = dev.config.cluster.addons
    assert addons == {
        "vpc-cni": versions.vpc_cni,
        "coredns": versions.coredns,
        "kube-proxy": versions.kube_proxy,
        "eks-pod-identity-agent": versions.pod_identity_agent,
        "metrics-server": versions.metrics_server,
        "amazon-cloudwatch-observability": versions.cloudwatch_observability,
    }
    assert all(v.startswith("v1.36") for k, v in addons.items() if k == "kube-proxy")


def test_device_plugin_and_cluster_autoscaler_charts_are_pinned_and_wired(dev):
    charts = {c["Properties"]["Chart"]: c["Properties"] for c in dev.resources("Custom::AWSCDK-EKS-HelmChart").values()}
    assert charts["nvidia-device-plugin"]["Version"] == dev.config.cluster.addons.nvidia_device_plugin_chart
    plugin_values = json.loads(charts["nvidia-device-plugin"]["Values"])
    assert plugin_values["nodeSelector"] == {"k8s.amazonaws.com/accelerator": "nvidia-g5"}
    assert plugin_values["tolerations"][0]["key"] == "nvidia.com/gpu"
    autoscaler = charts["cluster-autoscaler"]
    assert autoscaler["Version"] == dev.config.cluster.addons.cluster_autoscaler_chart
    values = json.loads(autoscaler["Values"]) if isinstance(autoscaler["Values"], str) else autoscaler["Values"]
    text = json.dumps(values)
    assert '"clusterName": "radstream-dev"' in text
    assert dev.config.cluster.addons.cluster_autoscaler_image_tag in text
    dev.template.has_resource_properties(
        "AWS::EKS::PodIdentityAssociation", {"Namespace": "kube-system", "ServiceAccount": "cluster-autoscaler"}
    )


def test_ecr_repository_scans_encrypts_is_immutable_and_keeps_ten_images(dev):
    (repository,) = dev.resources("AWS::ECR::Repository").values()
    properties = repository["Properties"]
    assert properties["RepositoryName"] == "radstream-triton-dev"
    assert properties["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert properties["ImageTagMutability"] == "IMMUTABLE"
    assert properties["EncryptionConfiguration"]["EncryptionType"] == "KMS"
    (rule,) = json.loads(properties["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
    assert rule["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 10}
    assert rule["action"] == {"type": "expire"}


def test_network_has_endpoints_flow_logs_and_two_azs(dev):
    endpoints = dev.resources("AWS::EC2::VPCEndpoint")
    services = sorted(join_service(e["Properties"]["ServiceName"]) for e in endpoints.values())
    assert services == sorted(["autoscaling", "ec2", "ecr.api", "ecr.dkr", "logs", "monitoring", "s3", "sts"])
    dev.template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL", "ResourceType": "VPC"})
    private = [s for s in dev.resources("AWS::EC2::Subnet").values() if not s["Properties"]["MapPublicIpOnLaunch"]]
    assert len(private) == 4  # 2 AZs x (public without auto-assigned IPs, private)


def join_service(name: Any) -> str:
    text = name if isinstance(name, str) else "".join(p if isinstance(p, str) else "" for p in name["Fn::Join"][1])
    return text.split(".", 3)[-1] if text.startswith("com.amazonaws.") else text


WILDCARD_ALLOWED = {
    # statement sid -> why a "*" resource is unavoidable
    "DescribeCapacity": "Describe* APIs have no resource-level permissions",
    "ScaleOwnNodeGroupsOnly": "scoped by the aws:ResourceTag condition instead",
    "Login": "ecr:GetAuthorizationToken has no resource-level permissions",
    "Discover": "the load balancer controller's Describe*/Get* calls have no resource-level permissions",
    "CreateTaggedForThisCluster": "scoped by the aws:RequestTag condition instead",
    "TagOnCreate": "scoped by the aws:RequestTag and ec2:CreateAction conditions instead",
    "ManageOwnedOnly": "scoped by the aws:ResourceTag condition instead",
    "ServiceLinkedRole": "scoped by the iam:AWSServiceName condition instead",
}


# Actions AWS offers no resource-level permissions for (tracing, Step Functions log delivery).
NO_RESOURCE_LEVEL_ACTIONS = {
    "xray:PutTelemetryRecords",
    "xray:PutTraceSegments",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
    # CodeBuild in a VPC: ENI management, which AWS documents with Resource "*".
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcs",
}


def _statements(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return list(resource["Properties"]["PolicyDocument"]["Statement"])


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_iam_wildcard_resources_are_only_the_unavoidable_ones(synthesized):
    for synth in synthesized.values():
        policies = {**synth.resources("AWS::IAM::Policy"), **synth.resources("AWS::IAM::ManagedPolicy")}
        for logical_id, resource in policies.items():
            if logical_id.startswith("RegistryCopyImageRoleDefaultPolicy"):
                continue  # cdk-ecr-deployment's own grant: bounded, see the next test
            if logical_id.startswith("LoadBalancerControllerPolicy"):
                continue  # the controller's official policy, unchanged: test_load_balancer_policy.py
            for statement in _statements(resource):
                if "*" not in _as_list(statement["Resource"]):
                    continue
                if set(_as_list(statement["Action"])) <= NO_RESOURCE_LEVEL_ACTIONS:
                    continue
                assert statement.get("Sid") in WILDCARD_ALLOWED, (logical_id, statement)
                if "condition instead" in WILDCARD_ALLOWED[statement["Sid"]]:
                    assert statement.get("Condition"), (logical_id, statement)
                if statement["Sid"] == "ScaleOwnNodeGroupsOnly":
                    assert f"aws:ResourceTag/k8s.io/cluster-autoscaler/{synth.config.cluster.name}" in json.dumps(
                        statement["Condition"]
                    )


def test_image_copy_role_is_bounded_to_the_two_repositories(dev):
    (role,) = [r for k, r in dev.resources("AWS::IAM::Role").items() if k.startswith("RegistryCopyImageRole")]
    boundary_id = role["Properties"]["PermissionsBoundary"]["Ref"]
    assert boundary_id.startswith("RegistryCopyImageBoundary")
    boundary = dev.json["Resources"][boundary_id]
    push = next(s for s in _statements(boundary) if s["Sid"] == "PushToRadStreamTriton")
    assert push["Resource"] == {"Fn::GetAtt": [next(iter(dev.resources("AWS::ECR::Repository"))), "Arn"]}
    assert {s["Sid"] for s in _statements(boundary)} == {"Logs", "Login", "PullAsset", "PushToRadStreamTriton"}


def test_outputs_name_the_cluster_the_registry_and_the_endpoint(dev):
    outputs = dev.json["Outputs"]
    assert outputs["ClusterName"]["Value"] == {"Ref": "ClusterE5FE51C4"} or "Ref" in outputs["ClusterName"]["Value"]
    assert "EcrRepositoryUri" in outputs
    assert outputs["InferenceEndpoint"]["Value"] == "http://triton-inference-service.radstream.svc.cluster.local:8000"


def _without_image(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cleaned = json.loads(json.dumps(objects))
    for obj in cleaned:
        annotations = obj["metadata"].get("annotations", {})
        if "service.beta.kubernetes.io/aws-load-balancer-security-groups" in annotations:
            annotations["service.beta.kubernetes.io/aws-load-balancer-security-groups"] = "<security group>"
        if obj["kind"] in ("Deployment", "DaemonSet"):
            for container in obj["spec"]["template"]["spec"]["containers"]:
                if not container["image"].startswith("registry.k8s.io/"):
                    container["image"] = "<image>"
    return cleaned


def test_cdk_applies_the_same_objects_as_k8s_manifests(dev):
    rendered = [
        obj
        for name, text in render("dev").items()
        if name != RULES_FILE  # Prometheus rules, shipped through the Prometheus chart instead
        for obj in yaml.safe_load_all(text)
        if obj
    ]
    applied = manifest_objects(dev)
    key = lambda obj: (obj["kind"], obj["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, applied)) == sorted(map(key, rendered))
    assert sorted(_without_image(applied), key=key) == sorted(_without_image(rendered), key=key)


def test_deployment_runs_the_copied_image_by_immutable_tag(dev):
    (deployment,) = [
        o
        for o in manifest_objects(dev)
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "triton-inference-server"
    ]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    repository, tag = image.rsplit(":", 1)
    assert repository.endswith("/<token>"), "the repository is radstream-triton's URI token"
    assert tag.startswith("triton-") and tag != "latest"


def test_s3_model_store_is_encrypted_versioned_tls_only_and_read_by_triton(synthesized):
    synth = synthesized["dev_s3_models"]
    buckets = {k: b for k, b in synth.resources("AWS::S3::Bucket").items() if k.startswith("ModelStore")}
    (store,) = [b for b in buckets.values() if "KMSMasterKeyID" in json.dumps(b["Properties"]["BucketEncryption"])]
    assert store["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert store["Properties"]["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True
    policies = json.dumps(
        [p for k, p in synth.resources("AWS::S3::BucketPolicy").items() if k.startswith("ModelStore")]
    )
    assert '"aws:SecureTransport": "false"' in policies
    synth.template.has_resource_properties(
        "AWS::EKS::PodIdentityAssociation", {"Namespace": "radstream", "ServiceAccount": "triton-inference-server"}
    )
    (deployment,) = [
        o
        for o in manifest_objects(synth)
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "triton-inference-server"
    ]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODEL_REPOSITORY"].startswith("s3://<token>/model_repository")
    (reader,) = [
        p for k, p in synth.resources("AWS::IAM::ManagedPolicy").items() if k.startswith("ModelStoreReaderPolicy")
    ]
    actions = {
        a
        for s in reader["Properties"]["PolicyDocument"]["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert actions == {"s3:ListBucket", "s3:GetObject", "kms:Decrypt"}


def test_every_variant_passes_cdk_nag_with_no_unacknowledged_finding(synthesized):
    for variant, synth in synthesized.items():
        report = json.loads(synth.validation_report.read_text())
        failures = [
            violation for plugin in report.get("pluginReports", []) for violation in plugin.get("violations", [])
        ]
        assert failures == [], f"{variant}: {failures[:3]}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_templates_pass_cfn_lint(synthesized, variant):
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            "--ignore-checks",
            "W3005",
            "--",
            str(synthesized[variant].template_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cdk_nag_blocks_an_unacknowledged_finding(tmp_path):
    """The gate really gates: the same app with the acknowledgements removed fails to synthesize."""
    import aws_cdk as cdk

    from cdk_app import compliance
    from cdk_app.app_factory import build_app

    saved = compliance.ACKNOWLEDGEMENTS
    compliance.ACKNOWLEDGEMENTS = tuple(a for a in saved if "ClusterAutoscalerPolicy" not in a.path)
    try:
        app = build_app(cdk.App(context={"stage": "dev", "aws:cdk:bundling-stacks": []}, outdir=str(tmp_path)))
        with pytest.raises(RuntimeError, match="ValidationFailed"):
            app.synth()
    finally:
        compliance.ACKNOWLEDGEMENTS = saved
    report = (tmp_path / "validation-report.json").read_text()
    assert "ClusterAutoscalerPolicy" in report and "AwsSolutions-IAM5" in report


def test_python_app_synthesizes_into_cdk_out_and_rejects_a_broken_config(tmp_path):
    env = {**os.environ, "CDK_OUTDIR": str(tmp_path), "RADSTREAM_SKIP_BUNDLING": "1"}
    ok = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert (tmp_path / "RadStream-dev.template.json").exists()

    env["CDK_CONTEXT_JSON"] = json.dumps({"stage": "dev", "public_api_cidrs": "10.0.0.300/32"})
    bad = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert bad.returncode == 1
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "RadStream config error: cluster.public_api_cidrs[0]: '10.0.0.300/32' is not a valid IPv4 CIDR"
    )


def _chart_values(synth, chart: str) -> dict[str, Any]:
    (properties,) = [
        c["Properties"]
        for c in synth.resources("Custom::AWSCDK-EKS-HelmChart").values()
        if c["Properties"]["Chart"] == chart
    ]
    return {
        "version": properties["Version"],
        "namespace": properties["Namespace"],
        **json.loads(join_to_text(properties["Values"])),
    }


def test_prometheus_scrapes_triton_and_records_the_scaling_signal(dev):
    values = _chart_values(dev, "prometheus")
    assert values["version"] == dev.config.monitoring.prometheus_chart
    assert values["namespace"] == "monitoring"
    assert values["server"]["global"]["scrape_interval"] == f"{dev.config.monitoring.scrape_interval_seconds}s" == "5s"
    (job,) = yaml.safe_load(values["extraScrapeConfigs"])
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["radstream"]}}]
    records = [r["record"] for g in values["serverFiles"]["recording_rules.yml"]["groups"] for r in g["rules"]]
    assert "radstream:triton_queue_time_per_request_us" in records


def test_prometheus_adapter_serves_the_metric_the_hpa_reads(dev):
    values = _chart_values(dev, "prometheus-adapter")
    assert values["version"] == dev.config.monitoring.prometheus_adapter_chart
    assert values["prometheus"]["url"] == "http://prometheus-server.monitoring.svc"
    (rule,) = values["rules"]["custom"]
    assert rule["name"]["as"] == dev.config.autoscaling.queue_metric_name
    (hpa,) = [o for o in manifest_objects(dev) if o["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == rule["name"]["as"]


def test_cluster_autoscaler_is_tuned_for_fast_gpu_scale_up(dev):
    args = _chart_values(dev, "cluster-autoscaler")["extraArgs"]
    assert args["scan-interval"] == "10s"
    assert args["expander"] == "least-waste"
    assert args["expendable-pods-priority-cutoff"] == dev.config.autoscaling.overprovisioning_priority


def test_load_balancer_controller_runs_with_pod_identity(dev):
    values = _chart_values(dev, "aws-load-balancer-controller")
    assert values["version"] == dev.config.cluster.addons.load_balancer_controller_chart
    assert values["clusterName"] == "radstream-dev"
    dev.template.has_resource_properties(
        "AWS::EKS::PodIdentityAssociation",
        {"Namespace": "kube-system", "ServiceAccount": "aws-load-balancer-controller"},
    )
    # The policy is the controller's official one: tests/infrastructure/test_load_balancer_policy.py.


def test_triton_nlb_admits_only_the_hooks_and_its_address_goes_to_ssm(dev):
    groups = dev.resources("AWS::EC2::SecurityGroup")
    (nlb_id,) = [k for k in groups if k.startswith("TritonEndpointNlbSecurityGroup")]
    (hooks_id,) = [k for k in groups if k.startswith("HooksSecurityGroup")]
    ingress = groups[nlb_id]["Properties"].get("SecurityGroupIngress", [])
    ingress += [
        r["Properties"]
        for r in dev.resources("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [nlb_id, "GroupId"]}
    ]
    assert sorted(rule["FromPort"] for rule in ingress) == [8000, 8001]
    assert all(rule["SourceSecurityGroupId"] == {"Fn::GetAtt": [hooks_id, "GroupId"]} for rule in ingress)
    (nlb_service,) = [o for o in manifest_objects(dev) if o["metadata"]["name"] == "triton-inference-service-nlb"]
    annotation = nlb_service["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-security-groups"]
    assert annotation == "<token>", "the real NLB security group id, resolved at deploy time"
    (parameter,) = [
        p
        for p in dev.resources("AWS::SSM::Parameter").values()
        if p["Properties"].get("Name") == "/radstream/dev/triton-url"
    ]
    assert "Value" in json.dumps(parameter["Properties"]["Value"]), "the address comes from the Service status"


def test_the_image_copy_function_is_sized_from_config(dev):
    memory = [
        r["Properties"]["MemorySize"]
        for r in dev.resources("AWS::Lambda::Function").values()
        if "CDKECRDeployment" in json.dumps(r["Properties"].get("Description", ""))
        or r["Properties"].get("MemorySize") == dev.config.registry.image_copy_memory_mb
    ]
    assert dev.config.registry.image_copy_memory_mb == 10240
    assert memory == [dev.config.registry.image_copy_memory_mb]
