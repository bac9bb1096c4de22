"""The workload's Kubernetes objects follow the configuration and the restricted profile."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from cdk_app.config import PlatformConfig, gate_budget, load_config, quantity_value
from cdk_app.k8s_workload import OVERPROVISIONING_NAME, PREPULL_NAME, build_workload_objects

IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/radstream-triton:radstream-triton-2.51.0"


@pytest.fixture(scope="module")
def config() -> PlatformConfig:
    return load_config("dev")


@pytest.fixture(scope="module")
def objects(config: PlatformConfig) -> list[dict[str, Any]]:
    return build_workload_objects(config, IMAGE)


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one object of ``kind`` that belongs to Triton (the placeholders are another Deployment)."""
    others = {OVERPROVISIONING_NAME, "triton-inference-service-nlb"}
    matches = [obj for obj in objects if obj["kind"] == kind and obj["metadata"]["name"] not in others]
    assert len(matches) == 1, f"expected one {kind}, got {len(matches)}"
    return matches[0]


@pytest.fixture(scope="module")
def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return only(objects, "Deployment")["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    assert len(pod_spec["containers"]) == 1
    return pod_spec["containers"][0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def test_objects_come_in_apply_order(objects):
    kinds = [obj["kind"] for obj in objects]
    assert kinds[0] == "Namespace"
    assert kinds.index("ServiceAccount") < kinds.index("Deployment")
    assert kinds.index("NetworkPolicy") < kinds.index("Deployment")
    assert kinds.index("Deployment") < kinds.index("HorizontalPodAutoscaler")


def test_every_namespaced_object_lives_in_the_workload_namespace(objects, config):
    for obj in objects[1:]:
        if obj["kind"] == "PriorityClass":
            assert "namespace" not in obj["metadata"], "PriorityClass is cluster-scoped"
            continue
        assert obj["metadata"]["namespace"] == config.workload.namespace, obj["kind"]


def test_namespace_enforces_the_restricted_pod_security_standard(objects, config):
    ns = only(objects, "Namespace")
    assert ns["metadata"]["name"] == config.workload.namespace
    labels = ns["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "latest"


def test_service_account_mounts_no_token(objects, pod_spec, config):
    account = only(objects, "ServiceAccount")
    assert account["metadata"]["name"] == config.workload.service_account_name
    assert account["automountServiceAccountToken"] is False
    assert "annotations" not in account["metadata"], "Pod Identity needs no annotation"
    assert pod_spec["serviceAccountName"] == config.workload.service_account_name
    assert pod_spec["automountServiceAccountToken"] is False


def test_deployment_leaves_replicas_to_the_hpa_and_surges_during_rollouts(objects, config):
    """Defect 8: an apply must not scale a scaled-out service back (the HPA owns spec.replicas)."""
    deployment = only(objects, "Deployment")
    assert deployment["metadata"]["name"] == "triton-inference-server"
    spec = deployment["spec"]
    assert "replicas" not in spec
    hpa = only(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "triton-inference-server",
    }
    assert hpa["spec"]["minReplicas"] == config.autoscaling.min_replicas == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert spec["progressDeadlineSeconds"] == gate_budget(config).progress_deadline_seconds
    assert spec["revisionHistoryLimit"] >= 1
    template_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= template_labels.items()


def test_prod_runs_two_replicas_minimum():
    hpa = only(build_workload_objects(load_config("prod"), IMAGE), "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == 2


def test_the_namespace_has_the_load_balancer_controllers_readiness_gate_injection(objects):
    """Defect 3: pods in the namespace get the target-health readiness gate (IP targets of the NLB)."""
    ns = only(objects, "Namespace")
    assert ns["metadata"]["labels"]["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"


def test_container_asks_for_the_configured_gpus(container, config):
    gpus = str(config.workload.gpus_per_pod)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert container["resources"]["requests"]["nvidia.com/gpu"] == gpus


def test_limits_are_one_and_a_half_times_the_requests(container, config):
    resources = container["resources"]
    assert resources["requests"]["cpu"] == config.workload.cpu_request
    assert resources["requests"]["memory"] == config.workload.memory_request
    for name in ("cpu", "memory"):
        request = quantity_value(resources["requests"][name], name)
        limit = quantity_value(resources["limits"][name], name)
        assert limit == request * Decimal("1.5"), name


def test_pods_land_only_on_tainted_gpu_nodes(pod_spec, config):
    assert pod_spec["nodeSelector"] == {config.cluster.gpu_label_key: config.cluster.gpu_label_value}
    assert pod_spec["nodeSelector"] == {"k8s.amazonaws.com/accelerator": "nvidia-g5"}
    assert {
        "key": config.cluster.gpu_taint_key,
        "operator": "Equal",
        "value": config.cluster.gpu_taint_value,
        "effect": "NoSchedule",
    } in pod_spec["tolerations"]


def test_replicas_spread_over_nodes_and_zones_without_blocking(pod_spec):
    constraints = pod_spec["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in constraints} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert all(c["whenUnsatisfiable"] == "ScheduleAnyway" for c in constraints)


def test_probes_use_the_triton_health_endpoints_on_the_http_port(container, config):
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    workload = config.workload
    for probe, path in (
        ("startupProbe", workload.ready_path),
        ("readinessProbe", workload.ready_path),
        ("livenessProbe", workload.live_path),
    ):
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    assert container["startupProbe"]["periodSeconds"] == workload.startup_probe_period_seconds
    assert container["startupProbe"]["failureThreshold"] == workload.startup_probe_failure_threshold
    assert workload.live_path == "/v2/health/live"
    assert workload.ready_path == "/v2/health/ready"


def test_environment_sets_every_start_triton_variable(container, config):
    env = env_of(container)
    assert env["MODEL_REPOSITORY"] == "/opt/radstream/model_repository"
    assert env["TRITON_HTTP_PORT"] == "8000"
    assert env["TRITON_GRPC_PORT"] == "8001"
    assert env["TRITON_METRICS_PORT"] == "8002"
    assert env["TRITON_LOG_LEVEL"] in ("error", "warning", "info", "verbose")
    assert env["TRITON_EXIT_TIMEOUT_SECS"] == str(config.workload.triton_exit_timeout_seconds)
    assert env["TRITON_BIND_ADDRESS"] == "0.0.0.0"  # noqa: S104 - a pod listens on its own IP


def test_admin_key_comes_from_an_optional_secret_file_never_from_the_manifest(container, pod_spec, config):
    env = {item["name"]: item for item in container["env"]}
    assert "TRITON_ADMIN_KEY" not in env
    assert env["TRITON_ADMIN_KEY_FILE"]["value"] == "/var/run/secrets/radstream/admin-key"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "admin-key")
    assert mount == {"name": "admin-key", "mountPath": "/var/run/secrets/radstream", "readOnly": True}
    volume = next(v for v in pod_spec["volumes"] if v["name"] == "admin-key")
    assert volume["secret"]["secretName"] == config.workload.admin_key_secret_name
    assert volume["secret"]["optional"] is True


def test_s3_model_repository_reaches_the_container(config):
    objects = build_workload_objects(config, IMAGE, model_repository="s3://radstream-models/model_repository")
    container = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(container)["MODEL_REPOSITORY"] == "s3://radstream-models/model_repository"


def test_pod_meets_the_restricted_security_profile(pod_spec, container, config):
    uid = config.workload.run_as_user
    assert uid == 10001
    assert pod_spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }


def test_writable_paths_are_bounded_empty_dirs(pod_spec, container):
    writable = {m["mountPath"]: m["name"] for m in container["volumeMounts"] if not m.get("readOnly")}
    volumes = {volume["name"]: volume for volume in pod_spec["volumes"]}
    assert set(writable) == {"/tmp", "/dev/shm"}
    assert {m["name"] for m in container["volumeMounts"]} == set(volumes)
    assert all("sizeLimit" in volumes[name]["emptyDir"] for name in writable.values())
    assert volumes[writable["/dev/shm"]]["emptyDir"]["medium"] == "Memory"


def test_grace_period_outlasts_the_pre_stop_sleep_and_triton_drain(pod_spec, container, config):
    workload = config.workload
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["/bin/sleep", str(workload.pre_stop_sleep_seconds)]
    grace = pod_spec["terminationGracePeriodSeconds"]
    assert grace == workload.termination_grace_period_seconds
    assert grace > workload.pre_stop_sleep_seconds + int(env_of(container)["TRITON_EXIT_TIMEOUT_SECS"])


def test_image_is_pinned_and_never_latest(container):
    assert container["image"] == IMAGE
    assert container["imagePullPolicy"] == "IfNotPresent"
    with pytest.raises(ValueError, match="never latest"):
        build_workload_objects(load_config("dev"), "example.com/radstream-triton:latest")


def test_service_exposes_the_three_named_ports(objects, config):
    service = only(objects, "Service")
    assert service["metadata"]["name"] == "triton-inference-service"
    assert service["spec"]["type"] == "ClusterIP"
    ports = {(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {("http", 8000, "http"), ("grpc", 8001, "grpc"), ("metrics", 8002, "metrics")}
    pod_labels = only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_disruption_budget_lets_one_pod_go_at_a_time(objects, config):
    pdb = only(objects, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == config.workload.pdb_max_unavailable
    assert pdb["spec"]["selector"] == only(objects, "Deployment")["spec"]["selector"]


def test_network_policies_deny_ingress_except_inference_and_metrics(objects, config):
    policies = {obj["metadata"]["name"]: obj["spec"] for obj in objects if obj["kind"] == "NetworkPolicy"}
    deny = policies.pop("default-deny-ingress")
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    (allow,) = policies.values()
    assert allow["podSelector"] == only(objects, "Deployment")["spec"]["selector"]
    inference, metrics = allow["ingress"]
    assert {p["port"] for p in inference["ports"]} == {8000, 8001}
    assert {"podSelector": {}} in inference["from"]
    assert {"ipBlock": {"cidr": config.network.vpc_cidr}} in inference["from"]
    assert [p["port"] for p in metrics["ports"]] == [8002]
    # Only the scrapers' namespaces (both on the pod network): no VPC-wide access to the metrics port.
    (scrapers,) = metrics["from"]
    (expression,) = scrapers["namespaceSelector"]["matchExpressions"]
    assert expression["key"] == "kubernetes.io/metadata.name"
    assert expression["operator"] == "In"
    assert set(expression["values"]) == {"amazon-cloudwatch", "monitoring"}


def test_hpa_scales_the_deployment_within_the_configured_bounds(objects, config):
    hpa = only(objects, "HorizontalPodAutoscaler")
    scaling = config.autoscaling
    assert hpa["metadata"]["name"] == "triton-hpa"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "triton-inference-server"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (scaling.min_replicas, scaling.max_replicas)
    queue, cpu = spec["metrics"]
    assert queue == {
        "type": "Pods",
        "pods": {
            "metric": {"name": "triton_queue_time_per_request_us"},
            "target": {"type": "AverageValue", "averageValue": str(scaling.queue_time_target_us)},
        },
    }
    assert cpu["resource"] == {
        "name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": scaling.cpu_target_percent},
    }


def test_placeholders_hold_spare_gpus_at_a_priority_triton_preempts(objects, config):
    scaling = config.autoscaling
    classes = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PriorityClass"}
    assert (
        classes[scaling.workload_priority_class]["value"]
        > 0
        > classes[scaling.overprovisioning_priority_class]["value"]
    )
    assert classes[scaling.overprovisioning_priority_class]["preemptionPolicy"] == "Never"
    triton_pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert triton_pod["priorityClassName"] == scaling.workload_priority_class
    (placeholders,) = [o for o in objects if o["metadata"]["name"] == OVERPROVISIONING_NAME]
    assert placeholders["spec"]["replicas"] == scaling.overprovisioning_placeholders
    pod = placeholders["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == scaling.overprovisioning_priority_class
    assert pod["nodeSelector"] == triton_pod["nodeSelector"] and pod["tolerations"] == triton_pod["tolerations"]
    (container,) = pod["containers"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == str(config.workload.gpus_per_pod)


def test_prepull_daemonset_holds_the_triton_image_on_every_gpu_node(objects):
    (prepull,) = [o for o in objects if o["metadata"]["name"] == PREPULL_NAME]
    assert prepull["kind"] == "DaemonSet"
    pod = prepull["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    assert container["command"] == ["/bin/sleep", "infinity"]
    assert "nvidia.com/gpu" not in container["resources"]["requests"], "must run before GPUs are advertised"
    triton_pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["tolerations"] == triton_pod["tolerations"]


def test_hpa_scales_up_fast_and_down_slowly(objects, config):
    behavior = only(objects, "HorizontalPodAutoscaler")["spec"]["behavior"]
    scaling = config.autoscaling
    up, down = behavior["scaleUp"], behavior["scaleDown"]
    assert up["stabilizationWindowSeconds"] == scaling.scale_up_stabilization_seconds
    assert up["selectPolicy"] == "Max"
    assert up["policies"] == [
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
    ]
    assert down["stabilizationWindowSeconds"] == scaling.scale_down_stabilization_seconds
    assert down["policies"] == [
        {
            "type": "Pods",
            "value": scaling.scale_down_max_pods_per_period,
            "periodSeconds": scaling.scale_down_period_seconds,
        }
    ]
    assert down["stabilizationWindowSeconds"] > up["stabilizationWindowSeconds"]


def test_internal_nlb_exposes_inference_ports_only_behind_the_hooks_security_group(objects, config):
    (nlb,) = [o for o in objects if o["metadata"]["name"] == "triton-inference-service-nlb"]
    annotations = nlb["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"] == "ip"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-security-groups"].startswith("sg-")
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-healthcheck-path"] == "/v2/health/ready"
    spec = nlb["spec"]
    assert (spec["type"], spec["loadBalancerClass"]) == ("LoadBalancer", "service.k8s.aws/nlb")
    assert sorted(p["port"] for p in spec["ports"]) == [config.workload.http_port, config.workload.grpc_port]
    assert spec["selector"] == only(objects, "Deployment")["spec"]["selector"]["matchLabels"]
