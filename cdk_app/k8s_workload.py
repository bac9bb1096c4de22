"""The Triton workload's Kubernetes objects, built as plain dicts from the config.

One builder for both consumers: the CDK stack applies these objects to the
cluster (with the real image, by its immutable asset-hash tag), and
``cdk_app.render_manifests`` writes the same objects to ``k8s_manifests/`` for
review and for static checks (kubernetes-validate, checkov).

The admin key: the Deployment mounts Secret ``workload.admin_key_secret_name``
(key ``admin-key``) as a read-only file and points ``TRITON_ADMIN_KEY_FILE`` at it
(``triton/start_triton.sh`` reads it at start-up). Operators who need the admin
APIs create the Secret (``kubectl create secret generic triton-admin-key
--from-literal=admin-key=...``); no secret value ever appears in these objects.
It is ``optional``: without it start_triton.sh locks the admin APIs with a random
key nobody knows, which is the safe default.

AWS permissions come from EKS Pod Identity, which is bound to the
ServiceAccount outside the cluster: the ServiceAccount needs no annotation.
"""

from __future__ import annotations

from typing import Any, Final

from cdk_app.config import PlatformConfig, WorkloadConfig, gate_budget
from cdk_app.scaling_signal import hpa_queue_metric

Manifest = dict[str, Any]

DEFAULT_MODEL_REPOSITORY: Final = "/opt/radstream/model_repository"
# The entry's name inside the Secret, not a secret value.
ADMIN_KEY_SECRET_KEY: Final = "admin-key"  # noqa: S105
ADMIN_KEY_MOUNT_PATH: Final = "/var/run/secrets/radstream"
CONTAINER_NAME: Final = "triton"
TRITON_LOG_LEVEL: Final = "info"
# A pod must listen on its own IP; the local mode binds loopback instead.
TRITON_BIND_ADDRESS: Final = "0.0.0.0"  # noqa: S104
# Python backend stubs exchange tensors through /dev/shm; a memory-backed
# emptyDir counts against the container's memory limit, hence the bound.
SHM_SIZE_LIMIT: Final = "1Gi"
TMP_SIZE_LIMIT: Final = "1Gi"
REVISION_HISTORY_LIMIT: Final = 5
# registry.k8s.io's pause image (runs as 65535): what placeholder pods run.
PAUSE_IMAGE: Final = "registry.k8s.io/pause:3.10"
PAUSE_USER: Final = 65535
OVERPROVISIONING_NAME: Final = "gpu-overprovisioning"
# Stands for the NLB's security group in rendered files; CDK passes the real one.
PLACEHOLDER_SECURITY_GROUP: Final = "sg-0123456789abcdef0"
PREPULL_NAME: Final = "triton-image-prepull"
# checkov acknowledgements scoped to one object each (annotations checkov reads).
NO_PROBE_ANNOTATIONS: Final = {
    "checkov.io/skip1": "CKV_K8S_8=runs no service: a liveness probe would only restart a process that serves nothing",
    "checkov.io/skip2": "CKV_K8S_9=runs no service and is never a Service endpoint: readiness means nothing",
}
# Namespaces whose pods may scrape Triton's metrics port.
METRICS_SCRAPER_NAMESPACES: Final = ("amazon-cloudwatch", "monitoring")
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"
# The AWS Load Balancer Controller's webhook injects its target-health readiness gate into pods created
# in a namespace with this label (IP targets only): a pod is Ready only once it is a healthy NLB target.
# https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/deploy/pod_readiness_gate/
READINESS_GATE_INJECT_LABEL: Final = "elbv2.k8s.aws/pod-readiness-gate-inject"
# The webhook acts only at pod creation: this annotation (new with the label) rolls the pods of an
# existing cluster once, so that every Triton pod gets the gate.
POD_TEMPLATE_ANNOTATIONS: Final = {"radstream/nlb-readiness-gate": "target-health"}


def selector_labels(workload: WorkloadConfig) -> dict[str, str]:
    """The Deployment's selector; immutable once applied, so kept minimal."""
    return {"app.kubernetes.io/name": workload.app_label}


PLATFORM_LABELS: Final = {"app.kubernetes.io/part-of": "radstream", "app.kubernetes.io/managed-by": "radstream-cdk"}


def common_labels(workload: WorkloadConfig) -> dict[str, str]:
    return {**selector_labels(workload), "app.kubernetes.io/component": "inference-server", **PLATFORM_LABELS}


def _metadata(config: PlatformConfig, name: str, labels: dict[str, str] | None = None) -> Manifest:
    labels = common_labels(config.workload) if labels is None else labels
    return {"name": name, "namespace": config.workload.namespace, "labels": labels}


def namespace(config: PlatformConfig) -> Manifest:
    """The namespace, with Pod Security Admission enforcing the restricted profile."""
    psa: dict[str, str] = {}
    for mode in ("enforce", "audit", "warn"):
        psa[f"pod-security.kubernetes.io/{mode}"] = "restricted"
        psa[f"pod-security.kubernetes.io/{mode}-version"] = "latest"
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": config.workload.namespace,
            "labels": {**PLATFORM_LABELS, **psa, READINESS_GATE_INJECT_LABEL: "enabled"},
        },
    }


def service_account(config: PlatformConfig) -> Manifest:
    # Triton never calls the Kubernetes API: no token in the pod.
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(config, config.workload.service_account_name),
        "automountServiceAccountToken": False,
    }


def _container_ports(workload: WorkloadConfig) -> list[Manifest]:
    return [
        {"name": "http", "containerPort": workload.http_port, "protocol": "TCP"},
        {"name": "grpc", "containerPort": workload.grpc_port, "protocol": "TCP"},
        {"name": "metrics", "containerPort": workload.metrics_port, "protocol": "TCP"},
    ]


def _container_env(workload: WorkloadConfig, model_repository: str) -> list[Manifest]:
    """Every variable start_triton.sh reads, so the pod never relies on image defaults."""
    return [
        {"name": "MODEL_REPOSITORY", "value": model_repository},
        {"name": "TRITON_HTTP_PORT", "value": str(workload.http_port)},
        {"name": "TRITON_GRPC_PORT", "value": str(workload.grpc_port)},
        {"name": "TRITON_METRICS_PORT", "value": str(workload.metrics_port)},
        {"name": "TRITON_LOG_LEVEL", "value": TRITON_LOG_LEVEL},
        {"name": "TRITON_EXIT_TIMEOUT_SECS", "value": str(workload.triton_exit_timeout_seconds)},
        {"name": "TRITON_BIND_ADDRESS", "value": TRITON_BIND_ADDRESS},
        {"name": "TRITON_ADMIN_KEY_FILE", "value": f"{ADMIN_KEY_MOUNT_PATH}/{ADMIN_KEY_SECRET_KEY}"},
    ]


def _resources(workload: WorkloadConfig) -> Manifest:
    # GPUs are extended resources: the request must equal the limit.
    gpus = str(workload.gpus_per_pod)
    return {
        "requests": {"cpu": workload.cpu_request, "memory": workload.memory_request, "nvidia.com/gpu": gpus},
        "limits": {"cpu": workload.cpu_limit, "memory": workload.memory_limit, "nvidia.com/gpu": gpus},
    }


def _probes(workload: WorkloadConfig) -> Manifest:
    """Startup covers model loading; after it, readiness gates traffic and liveness restarts a hung server."""
    return {
        "startupProbe": {
            "httpGet": {"path": workload.ready_path, "port": "http"},
            "periodSeconds": workload.startup_probe_period_seconds,
            "failureThreshold": workload.startup_probe_failure_threshold,
        },
        "readinessProbe": {
            "httpGet": {"path": workload.ready_path, "port": "http"},
            "periodSeconds": workload.readiness_period_seconds,
        },
        "livenessProbe": {
            "httpGet": {"path": workload.live_path, "port": "http"},
            "periodSeconds": workload.liveness_period_seconds,
        },
    }


def _container_security_context() -> Manifest:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_security_context(workload: WorkloadConfig) -> Manifest:
    # The image's unprivileged user (triton/Dockerfile); fsGroup makes the emptyDirs writable to it.
    return {
        "runAsNonRoot": True,
        "runAsUser": workload.run_as_user,
        "runAsGroup": workload.run_as_user,
        "fsGroup": workload.run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container(workload: WorkloadConfig, image_uri: str, model_repository: str) -> Manifest:
    return {
        "name": CONTAINER_NAME,
        "image": image_uri,
        # The image is ~15 GB under an immutable tag: never pull it again for a restart.
        "imagePullPolicy": "IfNotPresent",
        "ports": _container_ports(workload),
        "env": _container_env(workload, model_repository),
        "resources": _resources(workload),
        **_probes(workload),
        # The sleep lets endpoints and load balancers drop the pod before Triton stops accepting requests.
        "lifecycle": {"preStop": {"exec": {"command": ["/bin/sleep", str(workload.pre_stop_sleep_seconds)]}}},
        "securityContext": _container_security_context(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
            {"name": "dshm", "mountPath": "/dev/shm"},  # noqa: S108
            {"name": "admin-key", "mountPath": ADMIN_KEY_MOUNT_PATH, "readOnly": True},
        ],
    }


def _volumes(workload: WorkloadConfig) -> list[Manifest]:
    # The root filesystem is read-only; Triton writes only to /tmp and /dev/shm.
    return [
        {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE_LIMIT}},
        # Optional: without the Secret the file is absent and the admin APIs stay locked.
        {
            "name": "admin-key",
            "secret": {"secretName": workload.admin_key_secret_name, "optional": True, "defaultMode": 0o440},
        },
    ]


def _topology_spread(workload: WorkloadConfig) -> list[Manifest]:
    """Spread replicas over nodes and zones when capacity allows, never block scheduling on it."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": topology_key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector_labels(workload)},
            # Count only the pods of the same revision, so a rollout does not skew the spread.
            "matchLabelKeys": ["pod-template-hash"],
        }
        for topology_key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
    ]


def _gpu_placement(config: PlatformConfig) -> Manifest:
    """GPU nodes are tainted so only GPU workloads land there, and labelled so GPU workloads land nowhere else."""
    cluster = config.cluster
    return {
        "nodeSelector": {cluster.gpu_label_key: cluster.gpu_label_value},
        "tolerations": [
            {
                "key": cluster.gpu_taint_key,
                "operator": "Equal",
                "value": cluster.gpu_taint_value,
                "effect": "NoSchedule",
            }
        ],
    }


def _pod_spec(config: PlatformConfig, image_uri: str, model_repository: str) -> Manifest:
    workload = config.workload
    return {
        "serviceAccountName": workload.service_account_name,
        "automountServiceAccountToken": False,
        # Service environment variables are noise to Triton and grow with every Service in the namespace.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": workload.termination_grace_period_seconds,
        "securityContext": _pod_security_context(workload),
        # Preempts the overprovisioning placeholders when GPUs run out.
        "priorityClassName": config.autoscaling.workload_priority_class,
        **_gpu_placement(config),
        "topologySpreadConstraints": _topology_spread(workload),
        "containers": [_container(workload, image_uri, model_repository)],
        "volumes": _volumes(config.workload),
    }


def deployment(
    config: PlatformConfig,
    image_uri: str,
    model_repository: str = DEFAULT_MODEL_REPOSITORY,
    *,
    hpa_owns_replicas: bool = True,
) -> Manifest:
    workload = config.workload
    # With an HPA the replica count is the HPA's: a manifest that set it would scale a scaled-out
    # service back on every apply (Kubernetes docs, "Migrating Deployments and StatefulSets to
    # horizontal autoscaling": remove spec.replicas from the manifest).
    replicas = {} if hpa_owns_replicas else {"replicas": config.autoscaling.min_replicas}
    rolling = {"maxUnavailable": workload.rollout_max_unavailable, "maxSurge": workload.rollout_max_surge}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(config, workload.deployment_name),
        "spec": {
            **replicas,
            "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
            # Below the health gate's rollout budget (cdk_app.config.gate_budget): a stuck rollout is
            # reported by the controller (ProgressDeadlineExceeded) before the gate runs out of time.
            "progressDeadlineSeconds": gate_budget(config).progress_deadline_seconds,
            "selector": {"matchLabels": selector_labels(workload)},
            # Surge new pods before removing old ones: capacity never drops during a rollout.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
            "template": {
                "metadata": {"labels": common_labels(workload), "annotations": dict(POD_TEMPLATE_ANNOTATIONS)},
                "spec": _pod_spec(config, image_uri, model_repository),
            },
        },
    }


def service(config: PlatformConfig) -> Manifest:
    workload = config.workload
    named_ports = (("http", workload.http_port), ("grpc", workload.grpc_port), ("metrics", workload.metrics_port))
    ports = [{"name": name, "port": port, "targetPort": name, "protocol": "TCP"} for name, port in named_ports]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(config, workload.service_name),
        "spec": {"type": "ClusterIP", "selector": selector_labels(workload), "ports": ports},
    }


def pod_disruption_budget(config: PlatformConfig) -> Manifest:
    workload = config.workload
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(config, workload.deployment_name),
        "spec": {
            "maxUnavailable": workload.pdb_max_unavailable,
            "selector": {"matchLabels": selector_labels(workload)},
            # A pod that never became ready serves nothing: let drains evict it.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def default_deny_ingress(config: PlatformConfig) -> Manifest:
    """No pod in the namespace accepts traffic unless another policy allows it."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(config, "default-deny-ingress", dict(PLATFORM_LABELS)),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }


def triton_ingress(config: PlatformConfig) -> Manifest:
    """Inference from the namespace and the VPC, metrics from the scrapers' namespaces only.

    The VPC CIDR covers the hook Lambdas, the NLB's health checks and the kubelet's probes from the node.
    """
    workload = config.workload
    inference_ports = [{"protocol": "TCP", "port": port} for port in (workload.http_port, workload.grpc_port)]
    scrapers = {
        "matchExpressions": [
            {"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": list(METRICS_SCRAPER_NAMESPACES)}
        ]
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(config, f"{workload.deployment_name}-ingress"),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(workload)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {}}, {"ipBlock": {"cidr": config.network.vpc_cidr}}],
                    "ports": inference_ports,
                },
                {
                    # Prometheus and the standalone CloudWatch agent (cdk_app/prometheus_collector.py) both
                    # run on the pod network: admitted by namespace, no node addresses needed.
                    "from": [{"namespaceSelector": scrapers}],
                    "ports": [{"protocol": "TCP", "port": workload.metrics_port}],
                },
            ],
        },
    }


def _scaling_behavior(config: PlatformConfig) -> Manifest:
    """Scale up at once (a GPU node takes minutes to join), scale down slowly (model load is costly)."""
    scaling = config.autoscaling
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": scaling.scale_up_stabilization_seconds,
            "selectPolicy": "Max",
            "policies": [
                {
                    "type": "Pods",
                    "value": scaling.scale_up_max_pods_per_period,
                    "periodSeconds": scaling.scale_up_period_seconds,
                },
                {
                    "type": "Percent",
                    "value": scaling.scale_up_max_percent_per_period,
                    "periodSeconds": scaling.scale_up_period_seconds,
                },
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": scaling.scale_down_stabilization_seconds,
            "policies": [
                {
                    "type": "Pods",
                    "value": scaling.scale_down_max_pods_per_period,
                    "periodSeconds": scaling.scale_down_period_seconds,
                }
            ],
        },
    }


def horizontal_pod_autoscaler(config: PlatformConfig) -> Manifest:
    scaling = config.autoscaling
    cpu_target = {"type": "Utilization", "averageUtilization": scaling.cpu_target_percent}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(config, scaling.hpa_name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": config.workload.deployment_name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            # Triton's queue time per request first; CPU (the brief's signal) as a backstop.
            # The HPA takes the larger of the two recommendations.
            "metrics": [
                hpa_queue_metric(config),
                {"type": "Resource", "resource": {"name": "cpu", "target": cpu_target}},
            ],
            "behavior": _scaling_behavior(config),
        },
    }


def internal_nlb_service(config: PlatformConfig, security_group_id: str) -> Manifest:
    """An internal NLB in front of Triton's inference ports, for the hook Lambdas in the VPC.

    Provisioned by the AWS Load Balancer Controller (loadBalancerClass), IP targets, and
    fronted by ``security_group_id``, which admits only the hooks' security group. The
    ClusterIP Service stays the address for in-cluster callers.
    """
    workload = config.workload
    prefix = "service.beta.kubernetes.io/aws-load-balancer"
    ports = [
        {"name": name, "port": port, "targetPort": name, "protocol": "TCP"}
        for name, port in (("http", workload.http_port), ("grpc", workload.grpc_port))
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            **_metadata(config, f"{workload.service_name}-nlb"),
            "annotations": {
                f"{prefix}-scheme": "internal",
                f"{prefix}-nlb-target-type": "ip",
                f"{prefix}-security-groups": security_group_id,
                f"{prefix}-manage-backend-security-group-rules": "true",
                f"{prefix}-healthcheck-protocol": "HTTP",
                f"{prefix}-healthcheck-port": str(workload.http_port),
                f"{prefix}-healthcheck-path": workload.ready_path,
                f"{prefix}-healthcheck-interval": str(workload.nlb_health_check_interval_seconds),
                f"{prefix}-healthcheck-healthy-threshold": str(workload.nlb_healthy_threshold),
                f"{prefix}-attributes": "load_balancing.cross_zone.enabled=true",
            },
        },
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": "service.k8s.aws/nlb",
            "selector": selector_labels(workload),
            "ports": ports,
        },
    }


def priority_class(name: str, value: int, description: str) -> Manifest:
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": name, "labels": dict(PLATFORM_LABELS)},
        "value": value,
        "globalDefault": False,
        "preemptionPolicy": "PreemptLowerPriority" if value > 0 else "Never",
        "description": description,
    }


def priority_classes(config: PlatformConfig) -> list[Manifest]:
    scaling = config.autoscaling
    return [
        priority_class(
            scaling.workload_priority_class, scaling.workload_priority, "Triton inference pods: preempt placeholders"
        ),
        priority_class(
            scaling.overprovisioning_priority_class,
            scaling.overprovisioning_priority,
            "GPU placeholders: evicted first, so spare GPUs are ready for Triton",
        ),
    ]


def _restricted_pause_container(name: str, image: str, command: list[str] | None, resources: Manifest) -> Manifest:
    container: Manifest = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "resources": resources,
        "securityContext": _container_security_context(),
    }
    if command is not None:
        container["command"] = command
    return container


def _pause_pod_security_context(user: int) -> Manifest:
    return {"runAsNonRoot": True, "runAsUser": user, "runAsGroup": user, "seccompProfile": {"type": "RuntimeDefault"}}


def overprovisioning(config: PlatformConfig) -> Manifest:
    """Pause pods that hold spare GPUs at negative priority.

    When the HPA adds a Triton pod and no GPU is free, the scheduler preempts a
    placeholder at once, so the new pod starts on a warm node (image already
    pulled by the prepull DaemonSet) in seconds; the evicted placeholder goes
    Pending and the Cluster Autoscaler adds a node for it in the background.
    """
    scaling, workload = config.autoscaling, config.workload
    labels = {"app.kubernetes.io/name": OVERPROVISIONING_NAME, **PLATFORM_LABELS}
    gpus = str(workload.gpus_per_pod)
    resources = {
        "requests": {"cpu": "10m", "memory": "16Mi", "nvidia.com/gpu": gpus},
        "limits": {"cpu": "10m", "memory": "16Mi", "nvidia.com/gpu": gpus},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**_metadata(config, OVERPROVISIONING_NAME, labels), "annotations": dict(NO_PROBE_ANNOTATIONS)},
        "spec": {
            "replicas": scaling.overprovisioning_placeholders,
            "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
            "selector": {"matchLabels": {"app.kubernetes.io/name": OVERPROVISIONING_NAME}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "priorityClassName": scaling.overprovisioning_priority_class,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 0,
                    "securityContext": _pause_pod_security_context(PAUSE_USER),
                    **_gpu_placement(config),
                    # Keep spares on other nodes than each other.
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": OVERPROVISIONING_NAME}},
                        }
                    ],
                    "containers": [_restricted_pause_container("placeholder", PAUSE_IMAGE, None, resources)],
                },
            },
        },
    }


def image_prepull(config: PlatformConfig, image_uri: str) -> Manifest:
    """Pulls the ~15 GB Triton image onto every GPU node as soon as it joins.

    It needs no GPU, so it runs before the device plugin advertises one, and it
    keeps the image in use so kubelet's image GC never evicts it. A spare node
    held by a placeholder therefore already has the image when Triton lands.
    """
    workload = config.workload
    labels = {"app.kubernetes.io/name": PREPULL_NAME, **PLATFORM_LABELS}
    tiny = {"requests": {"cpu": "1m", "memory": "8Mi"}, "limits": {"cpu": "10m", "memory": "16Mi"}}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {**_metadata(config, PREPULL_NAME, labels), "annotations": dict(NO_PROBE_ANNOTATIONS)},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": PREPULL_NAME}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 0,
                    "securityContext": _pause_pod_security_context(workload.run_as_user),
                    **_gpu_placement(config),
                    "containers": [
                        # The Triton image itself, idle: pulled once per node and pinned in use.
                        _restricted_pause_container("hold-image", image_uri, ["/bin/sleep", "infinity"], tiny)
                    ],
                },
            },
        },
    }


def build_workload_objects(
    config: PlatformConfig,
    image_uri: str,
    model_repository: str = DEFAULT_MODEL_REPOSITORY,
    nlb_security_group_id: str = PLACEHOLDER_SECURITY_GROUP,
) -> list[Manifest]:
    """The workload's objects in apply order.

    ``image_uri`` may be a CDK token; ``model_repository`` is a path in the image or
    an ``s3://`` URI (S3 mode), passed to start_triton.sh as MODEL_REPOSITORY.
    """
    if image_uri.endswith(":latest"):
        raise ValueError(f"image_uri={image_uri!r}: pin a tag or digest, never latest")
    return [
        namespace(config),
        service_account(config),
        # Policies before the pods they guard, so no pod runs unprotected.
        default_deny_ingress(config),
        triton_ingress(config),
        pod_disruption_budget(config),
        service(config),
        internal_nlb_service(config, nlb_security_group_id),
        *priority_classes(config),
        image_prepull(config, image_uri),
        deployment(config, image_uri, model_repository),
        horizontal_pod_autoscaler(config),
        overprovisioning(config),
    ]
