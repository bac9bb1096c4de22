"""Lambda hooks: the post-deploy health gate (also the one-minute canary), the
scale-event metrics publisher, and the inference endpoint Step Functions calls.

Each is a Lambda function (arm64) whose zip holds the packages as in the repository
(``lambdas/common`` and ``lambdas/<name>``, handler ``lambdas.<name>.handler.handler``) and the
hook's pinned arm64 wheels (``cdk_app/lambda_bundling.py``), in the VPC's private subnets behind
one security group that the Triton NLB and the EKS API admit.
The health gate runs as a CDK Trigger after the workload is applied, and again whenever
the image, the model repository or the rendered workload changes (``cdk_app/release.py``): a
failed check fails the deployment and CloudFormation rolls back. The canary is its own function
(same code, ``HEALTH_CHECK_MODE=canary``) with a short timeout and no asynchronous retries.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_ssm as ssm
from aws_cdk import triggers
from constructs import Construct, IConstruct

from cdk_app.autoscaling import prometheus_service_target
from cdk_app.config import PlatformConfig, gate_budget
from cdk_app.lambda_bundling import ARCHITECTURES, hook_code
from cdk_app.network import LOG_RETENTION
from cdk_app.scaling_signal import POD_QUEUE_RULE

REPO_ROOT = Path(__file__).resolve().parents[1]
LAMBDAS_DIR = REPO_ROOT / "lambdas"
STAGING_DIR = REPO_ROOT / "build" / "lambda-src"
HOOK_PACKAGES = ("health_check", "inference_endpoint", "scale_events")
RUNTIMES = {"python3.12": lambda_.Runtime.PYTHON_3_12}


def handler_path(hook: str) -> str:
    """The dotted path the Lambda runtime imports: the package layout is the repository's."""
    return f"lambdas.{hook}.handler.handler"


def stage_lambda_source(hook: str, staging_dir: Path = STAGING_DIR) -> Path:
    """The hook's zip root: ``lambdas/__init__.py``, ``lambdas/common`` and ``lambdas/<hook>``, as in the repository.

    Symbolic links are copied as the files they point to: ``lambdas/health_check/triton_health.py``
    links to ``triton/health_check.py`` (the container's HEALTHCHECK), so the Lambda ships that one source.
    """
    if hook not in HOOK_PACKAGES:
        raise ValueError(f"unknown hook {hook!r}; the hooks are {', '.join(HOOK_PACKAGES)}")
    target = staging_dir / hook
    if target.exists():
        shutil.rmtree(target)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    (target / "lambdas").mkdir(parents=True)
    shutil.copyfile(LAMBDAS_DIR / "__init__.py", target / "lambdas" / "__init__.py")
    for package in ("common", hook):
        shutil.copytree(LAMBDAS_DIR / package, target / "lambdas" / package, ignore=ignore)
    return target


class Hooks(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        cluster: eks.Cluster,
        triton_url: ssm.IStringParameter,
        execute_after: list[Construct],
        release: dict[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.vpc = vpc
        hooks, workload = config.hooks, config.workload
        self.security_group = security_group
        # The EKS API (private endpoint) admits the hooks.
        cluster.cluster_security_group.add_ingress_rule(
            self.security_group, ec2.Port.tcp(443), "RadStream hooks to the EKS API"
        )
        self.log_key = kms.Key(self, "LogKey", enable_key_rotation=True, description="Encrypts RadStream hook logs")
        self.log_key.grant_encrypt_decrypt(iam.ServicePrincipal(f"logs.{cdk.Aws.REGION}.amazonaws.com"))
        # The functions' environment (cluster endpoint and CA, parameter names) and the scale-event
        # state at rest under our key.
        self.environment_key = kms.Key(
            self,
            "EnvironmentKey",
            enable_key_rotation=True,
            description="Encrypts RadStream hook environments and the scale-event state",
        )
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.log_key,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        cluster_env = {
            "CLUSTER_NAME": cluster.cluster_name,
            "CLUSTER_ENDPOINT": cluster.cluster_endpoint,
            "CLUSTER_CA": cluster.cluster_certificate_authority_data,
            "NAMESPACE": workload.namespace,
            "DEPLOYMENT_NAME": workload.deployment_name,
            "HPA_NAME": config.autoscaling.hpa_name,
            "METRICS_NAMESPACE": hooks.metrics_namespace,
            "TRITON_URL_PARAMETER": triton_url.parameter_name,
        }

        budget = gate_budget(config)
        # The gate: the Trigger and the pipeline invoke it synchronously; its environment carries the
        # release (image, model repository, workload) so that any change of it is a new version to gate.
        self.health_check = self._function(
            "HealthCheck",
            "health_check",
            timeout=hooks.health_gate_timeout_seconds,
            memory=512,
            reserved_concurrency=hooks.health_gate_reserved_concurrency,
            environment={
                **cluster_env,
                "HEALTH_CHECK_MODE": "gate",
                "ROLLOUT_TIMEOUT_SECONDS": str(budget.rollout_seconds),
                "TRITON_TIMEOUT_SECONDS": str(hooks.gate_triton_timeout_seconds),
                "TRITON_DEADLINE_SECONDS": str(hooks.gate_triton_deadline_seconds),
                "TRITON_RETRY_SECONDS": str(hooks.gate_triton_retry_seconds),
                "CRASH_RESTARTS": str(hooks.gate_crash_restarts),
                "BACKOFF_POLLS": str(hooks.gate_backoff_polls),
                "REQUIRE_TARGET_HEALTH": "true",
                **(release or {}),
            },
            async_invocations=True,
        )
        # The canary: every minute, the Triton checks once; a late or retried run would publish a stale
        # Availability, so no asynchronous retries and events older than a minute are dropped.
        self.canary = self._function(
            "Canary",
            "health_check",
            timeout=hooks.canary_timeout_seconds,
            memory=512,
            reserved_concurrency=hooks.canary_reserved_concurrency,
            environment={
                **cluster_env,
                "HEALTH_CHECK_MODE": "canary",
                "ROLLOUT_TIMEOUT_SECONDS": str(budget.rollout_seconds),
                "TRITON_TIMEOUT_SECONDS": str(hooks.canary_triton_timeout_seconds),
            },
            async_invocations=True,
            retry_attempts=0,
            max_event_age_seconds=hooks.canary_max_event_age_seconds,
        )
        # What the scale-event publisher has already counted (lambdas/scale_events/state.py): the Lambda's
        # data, one item per stage written with a versioned conditional put; no stack update touches it.
        self.scale_events_state = dynamodb.Table(
            self,
            "ScaleEventsState",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.environment_key,
            time_to_live_attribute="expires_at",
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=cdk.RemovalPolicy.DESTROY,  # a cache of what was counted: a new stack starts a baseline
        )
        monitoring, scaling = config.monitoring, config.autoscaling
        self.scale_events = self._function(
            "ScaleEvents",
            "scale_events",
            timeout=hooks.scale_events_timeout_seconds,
            memory=256,
            reserved_concurrency=hooks.scale_events_reserved_concurrency,
            environment={
                **cluster_env,
                "STATE_TABLE_NAME": self.scale_events_state.table_name,
                "STATE_TTL_SECONDS": str(hooks.scale_events_state_ttl_seconds),
                "SCALE_UP_DEADLINE_SECONDS": str(config.observability.time_to_scale_seconds),
                # The scaling signal as the HPA sees it (the pods' average of the recording rule), from the
                # in-cluster Prometheus through the API server's service proxy: one sample per rule evaluation.
                "SIGNAL_SERVICE": f"{monitoring.namespace}/{prometheus_service_target(config)}",
                "SIGNAL_QUERY": f'avg({POD_QUEUE_RULE}{{namespace="{workload.namespace}"}})',
                "SIGNAL_TARGET": str(scaling.queue_time_target_us),
                "SIGNAL_STEP_SECONDS": str(monitoring.rule_evaluation_interval_seconds),
            },
            async_invocations=True,
        )
        self.scale_events_state.grant(self.scale_events, "dynamodb:GetItem", "dynamodb:PutItem")
        self.inference_endpoint = self._function(
            "InferenceEndpoint",
            "inference_endpoint",
            timeout=hooks.inference_timeout_seconds,
            memory=hooks.inference_memory_mb,
            reserved_concurrency=hooks.inference_reserved_concurrency,
            environment={
                "TRITON_URL_PARAMETER": triton_url.parameter_name,
                "TRITON_URL_CACHE_SECONDS": str(hooks.triton_url_cache_seconds),
                "TRITON_TIMEOUT_SECONDS": str(hooks.triton_timeout_seconds),
                "INFERENCE_DEADLINE_SECONDS": str(hooks.inference_deadline_seconds),
                "S3_PHASE_BUDGET_SECONDS": str(hooks.s3_phase_budget_seconds),
                "S3_CONNECT_TIMEOUT_SECONDS": str(hooks.s3_connect_timeout_seconds),
                "S3_READ_TIMEOUT_SECONDS": str(hooks.s3_read_timeout_seconds),
                "S3_MAX_ATTEMPTS": str(hooks.s3_max_attempts),
                "MODEL_VERSIONS_CACHE_SECONDS": str(hooks.model_versions_cache_seconds),
                "STAGE": config.stage,
                "MAX_IMAGE_BYTES": str(hooks.max_image_bytes),
                "FINDING_THRESHOLD": str(hooks.finding_threshold),
                "RESULTS_PREFIX": hooks.results_prefix,
                "METRICS_NAMESPACE": hooks.metrics_namespace,
            },
            async_invocations=False,
        )
        for function in (self.health_check, self.canary, self.scale_events, self.inference_endpoint):
            triton_url.grant_read(function)

        # Read-only Kubernetes access, to the workload's namespace only (the canary needs none).
        self.access_entries: dict[str, IConstruct] = {}
        for name, function in (("HealthCheck", self.health_check), ("ScaleEvents", self.scale_events)):
            role = function.role
            assert role is not None
            cluster.grant_access(
                f"{name}View",
                role.role_arn,
                [
                    eks.AccessPolicy.from_access_policy_name(
                        "AmazonEKSViewPolicy",
                        access_scope_type=eks.AccessScopeType.NAMESPACE,
                        namespaces=[workload.namespace],
                    )
                ],
            )
            entry = cluster.node.try_find_child(f"{name}View")
            assert entry is not None, f"grant_access created no access entry {name}View"
            self.access_entries[name] = entry
        # The scale-events hook also reads the scaling signal from Prometheus through the service proxy:
        # its access entry puts it in the group cdk_app/autoscaling.py binds to that one permission.
        signal_entry = self.access_entries["ScaleEvents"].node.default_child
        assert isinstance(signal_entry, cdk.CfnResource)
        signal_entry.add_property_override("KubernetesGroups", [monitoring.signal_readers_group])

        # The gate: after the workload and the NLB exist; failure rolls the stack back.
        self.health_gate = triggers.Trigger(
            self,
            "HealthGate",
            handler=self.health_check,
            execute_after=execute_after,
            execute_on_handler_change=True,
            invocation_type=triggers.InvocationType.REQUEST_RESPONSE,
            timeout=cdk.Duration.seconds(hooks.health_gate_timeout_seconds),
        )
        # Without its access entry the gate's first Kubernetes call gets 401 and rolls the stack back.
        self.health_gate.node.add_dependency(self.access_entries["HealthCheck"])
        every_minute = events.Schedule.rate(cdk.Duration.minutes(1))
        events.Rule(
            self,
            "CanarySchedule",
            description="RadStream availability canary (Triton checks every minute)",
            schedule=every_minute,
            targets=[
                targets.LambdaFunction(
                    self.canary,
                    retry_attempts=0,
                    max_event_age=cdk.Duration.seconds(hooks.canary_max_event_age_seconds),
                )
            ],
        )
        events.Rule(
            self,
            "ScaleEventsSchedule",
            description="RadStream scale-event metrics every minute",
            schedule=every_minute,
            targets=[targets.LambdaFunction(self.scale_events, retry_attempts=0)],
        )

    def _function(
        self,
        construct_id: str,
        name: str,
        *,
        timeout: int,
        memory: int,
        reserved_concurrency: int,
        environment: dict[str, str],
        async_invocations: bool,
        retry_attempts: int | None = None,
        max_event_age_seconds: int | None = None,
    ) -> lambda_.Function:
        hooks = self.config.hooks
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            retention=LOG_RETENTION[hooks.log_retention_days],
            encryption_key=self.log_key,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        return lambda_.Function(
            self,
            construct_id,
            code=hook_code(
                stage_lambda_source(name),
                hook=name,
                architecture=hooks.lambda_architecture,
                runtime=hooks.python_runtime,
            ),
            handler=handler_path(name),
            runtime=RUNTIMES[hooks.python_runtime],
            architecture=ARCHITECTURES[hooks.lambda_architecture],
            timeout=cdk.Duration.seconds(timeout),
            memory_size=memory,
            reserved_concurrent_executions=reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            vpc=self.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[self.security_group],
            dead_letter_queue=self.dead_letters if async_invocations else None,
            environment_encryption=self.environment_key,
            retry_attempts=retry_attempts,
            max_event_age=cdk.Duration.seconds(max_event_age_seconds) if max_event_age_seconds else None,
            environment={
                **environment,
                "POWERTOOLS_SERVICE_NAME": f"radstream-{name.replace('_', '-')}",
                "STAGE": self.config.stage,  # the Stage dimension of every hook metric
                "POWERTOOLS_METRICS_NAMESPACE": hooks.metrics_namespace,
            },
        )
