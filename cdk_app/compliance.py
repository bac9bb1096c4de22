"""Synth-time compliance gates: cdk-nag's AwsSolutions and HIPAA Security packs on
every stack (radiology images are PHI). Synthesis fails on any finding that is not
acknowledged here; each acknowledgement names one resource, one rule and why."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
import jsii
import yaml
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks
from constructs import IConstruct

from cdk_app.config import STAGES, AddonVersions, RegistryConfig
from cdk_app.load_balancer import official_policy


@dataclass(frozen=True)
class Acknowledgement:
    path: str  # construct path below the stack, e.g. "Network/Vpc"
    rule: str  # e.g. "AwsSolutions::AwsSolutions-IAM4"
    reason: str


KUBECTL_HANDLER = "Cluster/Cluster/KubectlProvider/Handler"
KUBECTL_FRAMEWORK = "Cluster/Cluster/KubectlProvider/Provider/framework-onEvent"
# cdk-ecr-deployment's singleton function: its construct ID ends with the memory size.
ECR_COPY = f"Custom::CDKECRDeploymentbd07c930edb94112a20f03f096f53666{RegistryConfig().image_copy_memory_mb}MiB"
BUCKET_UPLOAD = "Custom::CDKBucketDeployment8693BB64968944B69AAFB0CC9EB8756C"
AWS = "AwsSolutions::AwsSolutions-"
HOOK_FUNCTIONS = ("HealthCheck", "Canary", "ScaleEvents", "InferenceEndpoint")
HIPAA = "HIPAA.Security::HIPAA.Security-"


def load_balancer_policy_wildcards() -> list[str]:
    """The wildcard resources of the controller's official policy (cdk-nag IAM5 reports each)."""
    resources: set[str] = set()
    for statement in official_policy(AddonVersions().load_balancer_controller_chart)["Statement"]:
        listed = statement["Resource"]
        resources.update(r for r in ([listed] if isinstance(listed, str) else listed) if "*" in r)
    return sorted(resources)


def _managed(policy: str) -> str:
    return f"{AWS}IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{policy}]"


NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")
PROVIDER_REASON = (
    "CDK-managed provisioning function ({what}); runs only during deployments, created and "
    "versioned by aws-cdk-lib/cdklabs, not configurable here"
)


def _provider_function(path: str, what: str, *, in_vpc: bool) -> tuple[Acknowledgement, ...]:
    reason = PROVIDER_REASON.format(what=what)
    rules = [
        (f"{HIPAA}LambdaConcurrency", f"{reason}: invoked once per deployment, concurrency is not a risk"),
        (f"{HIPAA}LambdaDLQ", f"{reason}: invoked synchronously by CloudFormation, which reports failures"),
    ]
    if not in_vpc:
        rules.append((f"{HIPAA}LambdaInsideVPC", f"{reason}: talks only to AWS APIs (ECR/S3), never to PHI"))
    return tuple(Acknowledgement(path + "/Resource", rule, why) for rule, why in rules)


ACKNOWLEDGEMENTS: tuple[Acknowledgement, ...] = (
    # --- EKS roles: AWS documents these managed policies as the required permissions.
    Acknowledgement(
        "Cluster/Cluster/Role/Resource",
        _managed("AmazonEKSClusterPolicy"),
        "EKS requires AmazonEKSClusterPolicy on the cluster role; AWS maintains it with the control plane",
    ),
    *(
        Acknowledgement(
            f"Cluster/Cluster/Nodegroup{group}Nodes/NodeGroupRole/Resource",
            _managed(policy),
            f"EKS managed node groups require {policy} on the node role (kubelet, CNI, image pulls); "
            "pods get AWS access through Pod Identity, not this role",
        )
        for group in ("System", "Gpu")
        for policy in NODE_POLICIES
    ),
    Acknowledgement(
        "Cluster/CloudWatchAgentRole/Resource",
        _managed("CloudWatchAgentServerPolicy"),
        "The policy AWS documents for the Container Insights agent: PutMetricData/PutLogEvents, which "
        "cannot be scoped to resources; bound to the agent's service account only through Pod Identity",
    ),
    Acknowledgement(
        "PrometheusCollector/Role/Resource",
        _managed("CloudWatchAgentServerPolicy"),
        "The policy AWS's Prometheus-on-EKS setup names for the standalone CloudWatch agent (EMF through "
        "PutLogEvents); bound to the cwagent-prometheus service account only through Pod Identity",
    ),
    # --- Cluster Autoscaler: least privilege as far as the APIs allow.
    Acknowledgement(
        "Cluster/ClusterAutoscalerPolicy/Resource",
        f"{AWS}IAM5[Resource::*]",
        "Describe* calls do not support resource-level permissions; SetDesiredCapacity and "
        "TerminateInstanceInAutoScalingGroup are limited by an aws:ResourceTag condition to this cluster's "
        "node groups",
    ),
    *(
        Acknowledgement(
            "Cluster/ClusterAutoscalerPolicy/Resource",
            f"{AWS}IAM5[Resource::arn:<AWS::Partition>:eks:{stage.region}:<AWS::AccountId>:nodegroup/"
            f"{stage.cluster.name}/*]",
            "eks:DescribeNodegroup on this cluster's node groups only (names are generated by EKS)",
        )
        for stage in STAGES.values()
    ),
    # --- AWS Load Balancer Controller: discovery calls and tag-conditioned management.
    *(
        Acknowledgement(
            "LoadBalancerController/Policy/Resource",
            f"{AWS}IAM5[Resource::{resource}]",
            "The controller's official iam_policy.json (cdk_app/data/), unchanged: Describe* calls have no "
            "resource-level permissions, and the controller names its load balancers, target groups, listeners "
            "and security groups at run time; mutations of existing ones require the elbv2.k8s.aws/cluster tag",
        )
        for resource in load_balancer_policy_wildcards()
    ),
    # --- Hook Lambdas (Python 3.12, in the VPC, traced).
    *(
        Acknowledgement(f"Hooks/{function}/ServiceRole/Resource", _managed(f"service-role/{policy}"), reason)
        for function in HOOK_FUNCTIONS
        for policy, reason in (
            ("AWSLambdaBasicExecutionRole", "Writes the function's own logs; the AWS-managed policy CDK attaches"),
            (
                "AWSLambdaVPCAccessExecutionRole",
                "Creates the ENIs of a VPC function (the hooks reach the EKS API and Triton's internal NLB)",
            ),
        )
    ),
    *(
        Acknowledgement(
            f"Hooks/{function}/Resource",
            f"{AWS}L1",
            "Python 3.12 on purpose: tritonclient 2.51 (Triton 24.10) needs numpy < 2, and numpy 1.26 stops at 3.12",
        )
        for function in HOOK_FUNCTIONS
    ),
    *(
        Acknowledgement(
            f"Hooks/{function}/ServiceRole/DefaultPolicy/Resource",
            f"{AWS}IAM5[Resource::*]",
            "xray:PutTraceSegments and xray:PutTelemetryRecords (active tracing) have no resource-level permissions",
        )
        for function in HOOK_FUNCTIONS
    ),
    *(
        Acknowledgement(
            f"Hooks/{function}/ServiceRole/DefaultPolicy/Resource",
            f"{HIPAA}IAMNoInlinePolicy",
            "Generated by CDK grants for exactly the resources this function uses (SSM parameter, buckets, "
            "queue, tracing); reviewed through the synthesized template and tests/infrastructure",
        )
        for function in HOOK_FUNCTIONS
    ),
    *(
        Acknowledgement(
            "Hooks/InferenceEndpoint/ServiceRole/DefaultPolicy/Resource",
            f"{AWS}IAM5[{finding}]",
            "CDK's read grant on the studies bucket and put grant on the results prefix (and their KMS key): "
            "action wildcards are CDK's read/write sets, resources are those two buckets only",
        )
        for finding in (
            "Action::kms:GenerateDataKey*",
            "Action::kms:ReEncrypt*",
            "Action::s3:Abort*",
            "Action::s3:GetBucket*",
            "Action::s3:GetObject*",
            "Action::s3:List*",
            "Resource::<InferenceApiResults5BB69A55.Arn>/results/*",
            "Resource::<InferenceApiStudiesF35F2403.Arn>/*",
        )
    ),
    Acknowledgement(
        "Hooks/InferenceEndpoint/Resource",
        f"{HIPAA}LambdaDLQ",
        "Invoked synchronously by Step Functions only, which retries and records every failure in the results "
        "bucket; a DLQ only applies to asynchronous invocations",
    ),
    *(
        Acknowledgement(
            "InferenceApi/LogHashKey/Resource",
            rule,
            "The key of the keyed hash of study ids in logs, not a credential: rotating it would break the "
            "correlation of a study's log lines across the retention period; replaced by hand if exposed",
        )
        for rule in (f"{AWS}SMG4", f"{HIPAA}SecretsManagerRotationEnabled")
    ),
    Acknowledgement(
        "Hooks/ScaleEventsState/Resource",
        f"{HIPAA}DynamoDBInBackupPlan",
        "The scale-event publisher's dedup state (what it has counted: HPA decision times, pod UIDs), no PHI; "
        "rebuilt by one baseline run if lost, and restoring an old copy would count scale events twice",
    ),
    # --- The RadStreamInference state machine.
    *(
        Acknowledgement(
            "InferenceApi/StateMachine/Role/DefaultPolicy/Resource",
            f"{AWS}IAM5[{finding}]",
            "Step Functions' logging (log delivery APIs) and X-Ray calls have no resource-level permissions; the "
            "rest is CDK's invoke grant on the endpoint (all versions) and put grant on the failures prefix",
        )
        for finding in (
            "Resource::*",
            "Action::kms:GenerateDataKey*",
            "Action::kms:ReEncrypt*",
            "Action::s3:Abort*",
            "Resource::<HooksInferenceEndpoint18C757A5.Arn>:*",
            "Resource::<InferenceApiResults5BB69A55.Arn>/failures/*",
        )
    ),
    Acknowledgement(
        "InferenceApi/StateMachine/Role/DefaultPolicy/Resource",
        f"{HIPAA}IAMNoInlinePolicy",
        "Generated by CDK from the state machine's logging, tracing and task grants",
    ),
    *(
        Acknowledgement(
            f"InferenceApi/{bucket}/Resource",
            f"{HIPAA}S3BucketReplicationEnabled",
            "Versioned and access-logged in one region; cross-region replication of PHI is a data-residency "
            "decision for the deploying organisation, not a default",
        )
        for bucket in ("Studies", "Results", "AccessLogs")
    ),
    Acknowledgement(
        "InferenceApi/AccessLogs/Resource",
        f"{HIPAA}S3DefaultEncryptionKMS",
        "S3 server access logging can only deliver to buckets encrypted with SSE-S3, not SSE-KMS",
    ),
    # --- The post-deploy load-test runner (CodeBuild in the VPC).
    *(
        Acknowledgement(
            f"LoadTest/Project/{policy}/Resource",
            f"{AWS}IAM5[{finding}]",
            "CodeBuild's generated grants for this project: its own log group, report groups and ENIs in the VPC "
            "(ec2 network-interface ARNs are unknown before creation), and read of its source asset",
        )
        for policy, findings in (
            ("PolicyDocument", ("Resource::*",)),
            (
                "Role/DefaultPolicy",
                (
                    "Action::s3:GetBucket*",
                    "Action::s3:GetObject*",
                    "Action::s3:List*",
                    "Action::kms:GenerateDataKey*",
                    "Action::kms:ReEncrypt*",
                    "Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:network-interface/*",
                    "Resource::arn:<AWS::Partition>:logs:us-east-1:<AWS::AccountId>:log-group:/aws/codebuild/"
                    "<LoadTestProject97E8B6FA>:*",
                    "Resource::arn:<AWS::Partition>:codebuild:us-east-1:<AWS::AccountId>:report-group/"
                    "<LoadTestProject97E8B6FA>-*",
                ),
            ),
        )
        for finding in findings
    ),
    *(
        Acknowledgement(
            f"LoadTest/Project/{policy}/Resource",
            f"{HIPAA}IAMNoInlinePolicy",
            "Generated by CodeBuild for this project's VPC access and logging",
        )
        for policy in ("PolicyDocument", "Role/DefaultPolicy")
    ),
    Acknowledgement(
        "LoadTest/Project/Resource",
        f"{HIPAA}CodeBuildProjectSourceRepoUrl",
        "The source is a CDK asset in S3 (the load-test tool), not a repository URL with credentials",
    ),
    # --- Network.
    Acknowledgement(
        "Network/Vpc/FlowLog/IAMRole/DefaultPolicy/Resource",
        f"{HIPAA}IAMNoInlinePolicy",
        "Created by ec2.FlowLog and scoped to its own log group; VPC flow log delivery only",
    ),
    *(
        Acknowledgement(
            f"Network/Vpc/publicSubnet{index}/DefaultRoute",
            f"{HIPAA}VPCNoUnrestrictedRouteToIGW",
            "Public subnets hold only the NAT gateways, which need the internet gateway route; nodes and "
            "pods live in private subnets without public IPs",
        )
        for index in (1, 2)
    ),
    # --- Optional S3 model store.
    Acknowledgement(
        "ModelStore/ReaderPolicy/Resource",
        f"{AWS}IAM5[Resource::<ModelStoreBucket9405F36E.Arn>/model_repository/*]",
        "Triton must read every file under the model repository prefix, and only that prefix",
    ),
    *(
        Acknowledgement(
            f"ModelStore/{bucket}/Resource",
            f"{HIPAA}S3BucketReplicationEnabled",
            "The bucket holds model files rebuilt from git on every deploy (no PHI); versioning covers "
            "accidental deletion, cross-region replication adds nothing",
        )
        for bucket in ("Bucket", "AccessLogs")
    ),
    Acknowledgement(
        "ModelStore/AccessLogs/Resource",
        f"{HIPAA}S3DefaultEncryptionKMS",
        "S3 server access logging can only deliver to buckets encrypted with SSE-S3, not SSE-KMS",
    ),
    # --- CDK-managed provider functions (kubectl, image copy, bucket upload).
    *_provider_function(KUBECTL_HANDLER, "kubectl/helm for the cluster", in_vpc=True),
    *_provider_function(KUBECTL_FRAMEWORK, "custom resource framework for kubectl", in_vpc=True),
    *_provider_function(ECR_COPY, "cdk-ecr-deployment image copy", in_vpc=False),
    *_provider_function(BUCKET_UPLOAD, "s3-deployment upload of the model repository", in_vpc=False),
    *(
        Acknowledgement(
            f"{path}/ServiceRole/Resource",
            _managed(f"service-role/{policy}"),
            PROVIDER_REASON.format(what=what) + f": {policy} is the role CDK attaches",
        )
        for path, what, policies in (
            (KUBECTL_HANDLER, "kubectl", ("AWSLambdaBasicExecutionRole", "AWSLambdaVPCAccessExecutionRole")),
            (KUBECTL_FRAMEWORK, "kubectl", ("AWSLambdaBasicExecutionRole", "AWSLambdaVPCAccessExecutionRole")),
            (BUCKET_UPLOAD, "model upload", ("AWSLambdaBasicExecutionRole",)),
        )
        for policy in policies
    ),
    Acknowledgement(
        f"{KUBECTL_HANDLER}/ServiceRole/Resource",
        _managed("AmazonEC2ContainerRegistryReadOnly"),
        PROVIDER_REASON.format(what="kubectl") + ": pulls the kubectl layer's helm charts from ECR",
    ),
    Acknowledgement(
        f"{KUBECTL_HANDLER}/ServiceRole/Resource",
        f"{AWS}IAM4[Policy::"
        '{"Fn::If":["ClusterKubectlProviderHandlerHasEcrPublic6FE395CA",{"Fn::Join":["",["arn:",'
        '{"Ref":"AWS::Partition"},":iam::aws:policy/AmazonElasticContainerRegistryPublicReadOnly"]]},'
        '{"Ref":"AWS::NoValue"}]}]',
        PROVIDER_REASON.format(what="kubectl") + ": ECR Public read, only in partitions that have it",
    ),
    *(
        Acknowledgement(
            f"{path}/ServiceRole/DefaultPolicy/Resource",
            f"{HIPAA}IAMNoInlinePolicy",
            PROVIDER_REASON.format(what=what) + ": CDK generates this policy from the resources it manages",
        )
        for path, what in (
            (KUBECTL_HANDLER, "kubectl"),
            (KUBECTL_FRAMEWORK, "kubectl"),
            (BUCKET_UPLOAD, "model upload"),
        )
    ),
    Acknowledgement(
        f"{KUBECTL_FRAMEWORK}/ServiceRole/DefaultPolicy/Resource",
        f"{AWS}IAM5[Resource::<ClusterKubectlProviderHandler93C0312D.Arn>:*]",
        PROVIDER_REASON.format(what="kubectl") + ": may invoke any version of the kubectl handler only",
    ),
    # --- The image copy (cdk-ecr-deployment) runs with our role under a permissions boundary.
    Acknowledgement(
        "Registry/CopyImageRole/DefaultPolicy/Resource",
        f"{AWS}IAM5[Resource::*]",
        "cdk-ecr-deployment adds ecr:* on all repositories; the role's permissions boundary "
        "(Registry/CopyImagePolicy) limits it to pulling the asset and pushing to radstream-triton",
    ),
    Acknowledgement(
        "Registry/CopyImageRole/DefaultPolicy/Resource",
        f"{HIPAA}IAMNoInlinePolicy",
        "Inline policy generated by cdk-ecr-deployment; bounded by the managed permissions boundary",
    ),
    *(
        Acknowledgement(
            f"Registry/{policy}/Resource",
            f"{AWS}IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource-level permissions",
        )
        for policy in ("CopyImagePolicy", "CopyImageBoundary")
    ),
    *(
        Acknowledgement(
            f"Registry/{policy}/Resource",
            f"{AWS}IAM5[Resource::arn:<AWS::Partition>:logs:us-east-1:<AWS::AccountId>:log-group:/aws/lambda/*]",
            "The library names its singleton function at deploy time, so its log group name is not known here",
        )
        for policy in ("CopyImagePolicy", "CopyImageBoundary")
    ),
    *(
        Acknowledgement(
            f"{BUCKET_UPLOAD}/ServiceRole/DefaultPolicy/Resource",
            f"{AWS}IAM5[{finding}]",
            PROVIDER_REASON.format(what="model upload") + ": CDK's grant for copying the asset into the bucket",
        )
        for finding in (
            "Action::kms:GenerateDataKey*",
            "Action::kms:ReEncrypt*",
            "Action::s3:Abort*",
            "Action::s3:DeleteObject*",
            "Action::s3:GetBucket*",
            "Action::s3:GetObject*",
            "Action::s3:List*",
            "Resource::<ModelStoreBucket9405F36E.Arn>/*",
            "Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-us-east-1/*",
        )
    ),
    *(
        Acknowledgement(
            f"{path}/Resource",
            f"{AWS}L1",
            PROVIDER_REASON.format(what=what) + ": its runtime is pinned by the CDK version",
        )
        for path, what in ((KUBECTL_HANDLER, "kubectl"), (BUCKET_UPLOAD, "model upload"))
    ),
)


def apply_compliance_checks(app: cdk.App, stacks: Iterable[cdk.Stack]) -> None:
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(), HIPAASecurityChecks())
    for stack in stacks:
        apply_checkov_skips(stack)
        for acknowledgement in ACKNOWLEDGEMENTS:
            target = _find(stack, acknowledgement.path)
            if target is None:
                continue
            cdk.Validations.of(target).acknowledge(
                cdk.Acknowledgment(id=acknowledgement.rule, reason=acknowledgement.reason)
            )


def _find(stack: cdk.Stack, path: str) -> IConstruct | None:
    node: IConstruct | None = stack
    for part in path.split("/"):
        node = node.node.try_find_child(part) if node is not None else None
    return node


# --- CDK Pipelines. The pipeline construct generates one role per action and per CodeBuild
# project; their names and logical IDs come from the construct, so these acknowledgements are
# generated per resource (one resource, one finding, one reason each), for exactly the
# findings that CDK Pipelines' own grants produce.
PIPELINE_ARTIFACT_FINDINGS: tuple[tuple[str, str], ...] = (
    *(
        (
            f"{AWS}IAM5[Action::{action}]",
            "CDK Pipelines' read/write grant on the pipeline's own KMS-encrypted artifact bucket and key",
        )
        for action in (
            "s3:GetBucket*",
            "s3:GetObject*",
            "s3:List*",
            "s3:Abort*",
            "s3:DeleteObject*",
            "kms:GenerateDataKey*",
            "kms:ReEncrypt*",
        )
    ),
    (f"{AWS}IAM5[Resource::<Artifacts82DD59A1.Arn>/*]", "Objects of the pipeline's own artifact bucket"),
    (f"{AWS}IAM5[Resource::*]", "CodeBuild report and ECR login calls without resource-level permissions"),
    (
        f"{AWS}IAM5[Resource::arn:<AWS::Partition>:logs:us-east-1:<AWS::AccountId>:log-group:/aws/codebuild/*]",
        "CodeBuild log groups of the pipeline's projects, named by CodeBuild at run time",
    ),
    (
        f"{AWS}IAM5[Resource::arn:<AWS::Partition>:codebuild:us-east-1:<AWS::AccountId>:report-group/*]",
        "CodeBuild report groups of the pipeline's projects, named by CodeBuild at run time",
    ),
    (
        f"{AWS}IAM5[Resource::arn:*:iam::<AWS::AccountId>:role/*]",
        "Self-mutation and asset publishing assume the CDK bootstrap roles of this account",
    ),
    (
        f"{AWS}IAM5[Resource::arn:<AWS::Partition>:lambda:*:*:function:*HooksHealthCheck*]",
        "The post-deploy gate invokes the stage's health-check function, whose name the stage generates",
    ),
    (
        f"{AWS}IAM5[Resource::arn:<AWS::Partition>:codebuild:*:*:project/LoadTestProject*]",
        "The post-deploy step starts the stage's load-test project, whose name the stage generates",
    ),
    (f"{HIPAA}IAMNoInlinePolicy", "Generated by CDK Pipelines for each action and project role"),
)


def acknowledge_cdk_pipelines(pipeline: IConstruct) -> None:
    """Acknowledge, per generated resource, the findings of CDK Pipelines' own grants."""
    stack = cdk.Stack.of(pipeline)
    for construct in pipeline.node.find_all():
        if isinstance(construct, cdk.aws_codebuild.CfnProject):
            logical_id = stack.get_logical_id(construct)
            cdk.Validations.of(construct).acknowledge(
                cdk.Acknowledgment(
                    id=f"{HIPAA}CodeBuildProjectSourceRepoUrl",
                    reason="Source is the pipeline's artifact (CODEPIPELINE), never a repository URL with credentials",
                )
            )
            policy = construct.node.scope.node.try_find_child("Role") if construct.node.scope else None
            default_policy = policy.node.try_find_child("DefaultPolicy") if policy else None
            target = default_policy.node.try_find_child("Resource") if default_policy else None
            if target is not None:
                for resource in (
                    f"logs:us-east-1:<AWS::AccountId>:log-group:/aws/codebuild/<{logical_id}>:*",
                    f"codebuild:us-east-1:<AWS::AccountId>:report-group/<{logical_id}>-*",
                ):
                    cdk.Validations.of(target).acknowledge(
                        cdk.Acknowledgment(
                            id=f"{AWS}IAM5[Resource::arn:<AWS::Partition>:{resource}]",
                            reason="This CodeBuild project's own log group and report groups",
                        )
                    )
        if isinstance(construct, cdk.aws_iam.CfnPolicy):
            for rule, reason in PIPELINE_ARTIFACT_FINDINGS:
                cdk.Validations.of(construct).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))
    for bucket in ("Artifacts", "AccessLogs"):
        target = stack.node.try_find_child(bucket)
        if target is not None:
            cdk.Validations.of(target.node.default_child or target).acknowledge(
                cdk.Acknowledgment(
                    id=f"{HIPAA}S3BucketReplicationEnabled",
                    reason="Pipeline artifacts are rebuilt from git on every run; replication adds nothing",
                )
            )
    access_logs = stack.node.try_find_child("AccessLogs")
    if access_logs is not None:
        cdk.Validations.of(access_logs.node.default_child or access_logs).acknowledge(
            cdk.Acknowledgment(
                id=f"{HIPAA}S3DefaultEncryptionKMS",
                reason="S3 server access logging can only deliver to buckets encrypted with SSE-S3, not SSE-KMS",
            )
        )


# --- checkov's CloudFormation checks: the skips, one file, written into each template.
CHECKOV_SKIPS_FILE = Path(__file__).with_name("checkov_cloudformation.yaml")
_CDK_HASH = re.compile(r"[0-9A-F]{8}$")


@dataclass(frozen=True)
class CheckovSkip:
    check: str  # e.g. CKV_AWS_116
    resource: str  # logical ID without CDK's 8-character hash suffix
    reason: str


def load_checkov_skips(path: Path = CHECKOV_SKIPS_FILE) -> tuple[CheckovSkip, ...]:
    entries = yaml.safe_load(path.read_text(encoding="utf-8"))["skips"]
    skips = tuple(CheckovSkip(str(e["check"]), str(e["resource"]), str(e["reason"]).strip()) for e in entries)
    for skip in skips:
        if not skip.reason:
            raise ValueError(f"{path.name}: {skip.check} on {skip.resource} has no reason")
    return skips


def logical_id_base(logical_id: str) -> str:
    """``HooksInferenceEndpoint18C757A5`` -> ``HooksInferenceEndpoint``."""
    return _CDK_HASH.sub("", logical_id) if len(logical_id) > 8 else logical_id


def apply_checkov_skips(stack: cdk.Stack) -> None:
    """Writes the skips of ``checkov_cloudformation.yaml`` into ``stack``'s template at synth."""
    cdk.Aspects.of(stack).add(CheckovSkips(load_checkov_skips()))


@jsii.implements(cdk.IAspect)
class CheckovSkips:
    """Adds ``Metadata.checkov.skip`` (id and comment) to each resource a skip names."""

    def __init__(self, skips: Iterable[CheckovSkip]) -> None:
        self.by_resource: dict[str, list[CheckovSkip]] = {}
        for skip in skips:
            self.by_resource.setdefault(skip.resource, []).append(skip)

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, cdk.CfnResource):
            return
        logical_id = cdk.Stack.of(node).resolve(node.logical_id)
        skips = self.by_resource.get(logical_id_base(str(logical_id)), [])
        if skips:
            node.add_metadata("checkov", {"skip": [{"id": s.check, "comment": s.reason} for s in skips]})
