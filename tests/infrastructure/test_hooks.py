"""The Lambda hooks and the RadStreamInference state machine, as synthesized."""

from __future__ import annotations

import json
from typing import Any

from tests.infrastructure.conftest import join_to_text, manifest_objects

HOOKS = ("HooksHealthCheck", "HooksCanary", "HooksScaleEvents", "HooksInferenceEndpoint")
HOOK_MODULES = {
    "HooksHealthCheck": "health_check",
    "HooksCanary": "health_check",
    "HooksScaleEvents": "scale_events",
    "HooksInferenceEndpoint": "inference_endpoint",
}


def _functions(synth) -> dict[str, dict[str, Any]]:
    found = {}
    for logical_id, resource in synth.resources("AWS::Lambda::Function").items():
        for prefix in HOOKS:
            if logical_id.startswith(prefix) and not logical_id.startswith(prefix + "Logs"):
                found[prefix] = resource["Properties"]
    return found


def test_hooks_are_arm64_traced_in_the_vpc_with_explicit_timeouts(dev):
    functions = _functions(dev)
    assert set(functions) == set(HOOKS)
    hooks = dev.config.hooks
    expected_timeouts = {
        "HooksHealthCheck": hooks.health_gate_timeout_seconds,
        "HooksCanary": hooks.canary_timeout_seconds,
        "HooksScaleEvents": hooks.scale_events_timeout_seconds,
        "HooksInferenceEndpoint": hooks.inference_timeout_seconds,
    }
    for name, properties in functions.items():
        assert properties["Architectures"] == ["arm64"]
        assert properties["Runtime"] == "python3.12"
        assert properties["Handler"] == f"lambdas.{HOOK_MODULES[name]}.handler.handler"
        assert properties["TracingConfig"] == {"Mode": "Active"}
        assert properties["Timeout"] == expected_timeouts[name]
        assert properties["VpcConfig"]["SubnetIds"], "in the private subnets"
        assert properties["ReservedConcurrentExecutions"] >= 1
        env = properties["Environment"]["Variables"]
        assert env["TRITON_URL_PARAMETER"] == {
            "Ref": next(k for k in dev.resources("AWS::SSM::Parameter") if k.startswith("TritonEndpointUrl"))
        }
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "RadStream"
    endpoint = functions["HooksInferenceEndpoint"]["Environment"]["Variables"]
    assert endpoint["INFERENCE_DEADLINE_SECONDS"] == str(hooks.inference_deadline_seconds)
    deadline = int(endpoint["INFERENCE_DEADLINE_SECONDS"])
    assert deadline + hooks.inference_margin_seconds < hooks.inference_timeout_seconds
    assert endpoint["STAGE"] == "dev"
    assert endpoint["TRITON_URL_CACHE_SECONDS"] == "60"
    (secret_id,) = [k for k in dev.resources("AWS::SecretsManager::Secret") if k.startswith("InferenceApiLogHashKey")]
    assert endpoint["LOG_HASH_KEY_SECRET"] == {"Ref": secret_id}


def test_hook_logs_are_encrypted_and_retained(dev):
    groups = {k: g["Properties"] for k, g in dev.resources("AWS::Logs::LogGroup").items() if k.startswith("Hooks")}
    assert len(groups) == 4
    for properties in groups.values():
        assert properties["RetentionInDays"] == 365
        assert "KmsKeyId" in properties


def test_health_gate_runs_after_the_workload_and_the_nlb_address(dev):
    (trigger_id, trigger) = next(
        (k, v) for k, v in dev.resources("Custom::Trigger").items() if k.startswith("HooksHealthGate")
    )
    depends = set(trigger["DependsOn"])
    assert any(d.startswith("InferenceWorkload") and "Namespace" not in d for d in depends), depends
    assert any(d.startswith("TritonEndpointAddress") for d in depends), depends
    assert trigger["Properties"]["InvocationType"] == "RequestResponse"
    assert trigger_id


def test_canary_and_scale_events_run_every_minute(dev):
    rules = {k: r["Properties"] for k, r in dev.resources("AWS::Events::Rule").items()}
    targets = {json.dumps(r["Targets"][0]["Arn"]): r["ScheduleExpression"] for r in rules.values()}
    assert any("HooksCanary" in arn and rate == "rate(1 minute)" for arn, rate in targets.items())
    assert not any("HooksHealthCheck" in arn for arn in targets), "the gate function runs no schedule"
    assert any("HooksScaleEvents" in arn and rate == "rate(1 minute)" for arn, rate in targets.items())


def test_hooks_see_only_the_workload_namespace_in_kubernetes(dev):
    entries = [e["Properties"] for e in dev.resources("AWS::EKS::AccessEntry").values()]
    hook_entries = [e for e in entries if "Hooks" in json.dumps(e["PrincipalArn"])]
    assert len(hook_entries) == 2
    for entry in hook_entries:
        (policy,) = entry["AccessPolicies"]
        assert "AmazonEKSViewPolicy" in json.dumps(policy["PolicyArn"])
        assert policy["AccessScope"] == {"Type": "namespace", "Namespaces": ["radstream"]}


def test_state_machine_logs_without_execution_data_traces_and_retries_triton(dev):
    (machine,) = dev.resources("AWS::StepFunctions::StateMachine").values()
    properties = machine["Properties"]
    assert properties["StateMachineName"] == "RadStreamInference-dev"
    assert properties["LoggingConfiguration"]["Level"] == "ALL"
    # Inputs and outputs name patients' studies: never in the logs.
    assert properties["LoggingConfiguration"]["IncludeExecutionData"] is False
    assert properties["TracingConfiguration"] == {"Enabled": True}
    definition = json.loads(join_to_text(properties["DefinitionString"]))
    task = definition["States"][definition["StartAt"]]
    retried = {error for retry in task["Retry"] for error in retry["ErrorEquals"]}
    assert "TritonUnavailable" in retried and "Lambda.ServiceException" in retried
    assert {"StorageUnavailable", "Sandbox.Timedout"} <= retried
    assert "ImageRejected" not in retried
    (triton,) = [retry for retry in task["Retry"] if retry["ErrorEquals"] == ["TritonUnavailable"]]
    shipped = dev.config.hooks.triton_retry
    assert (triton["JitterStrategy"], triton["MaxDelaySeconds"], triton["MaxAttempts"]) == (
        "FULL",
        shipped.max_delay_seconds,
        shipped.max_attempts,
    )
    assert task["Catch"][0]["ErrorEquals"] == ["States.ALL"]


def test_study_and_result_buckets_are_encrypted_tls_only_versioned_with_lifecycle(dev):
    buckets = {k: b["Properties"] for k, b in dev.resources("AWS::S3::Bucket").items() if k.startswith("InferenceApi")}
    for name in ("InferenceApiStudies", "InferenceApiResults"):
        (properties,) = [p for k, p in buckets.items() if k.startswith(name)]
        assert "KMSMasterKeyID" in json.dumps(properties["BucketEncryption"])
        assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
        assert properties["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
        assert properties["LifecycleConfiguration"]["Rules"]
    policies = json.dumps(
        [p for k, p in dev.resources("AWS::S3::BucketPolicy").items() if k.startswith("InferenceApi")]
    )
    assert policies.count('"aws:SecureTransport": "false"') >= 3


def test_endpoint_address_and_state_machine_arn_are_published(dev):
    names = {p["Properties"].get("Name") for p in dev.resources("AWS::SSM::Parameter").values()}
    assert {"/radstream/dev/triton-url", "/radstream/dev/state-machine-arn"} <= names
    outputs = set(dev.json["Outputs"])
    assert any(k.startswith("InferenceApiStateMachineArn") for k in outputs)
    assert "TritonUrlParameter" in outputs


def test_every_hook_publishes_its_stage(dev):
    for properties in _functions(dev).values():
        assert properties["Environment"]["Variables"]["STAGE"] == dev.config.stage


def test_scale_event_state_is_a_versioned_dynamodb_item_the_stack_does_not_own(dev):
    """On-demand, encrypted, TTL above the Event TTL; no SSM parameter CloudFormation would reset."""
    (table_id, table) = next(iter(dev.resources("AWS::DynamoDB::Table").items()))
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["SSESpecification"]["SSEType"] == "KMS"
    assert props["SSESpecification"]["KMSMasterKeyId"]["Fn::GetAtt"][0].startswith("HooksEnvironmentKey")
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert "Item" not in json.dumps(props), "the table's items are the Lambda's data, not the template's"
    assert not any("scale-events-state" in json.dumps(p) for p in dev.resources("AWS::SSM::Parameter").values())
    env = _functions(dev)["HooksScaleEvents"]["Environment"]["Variables"]
    assert env["STATE_TABLE_NAME"] == {"Ref": table_id}
    assert int(env["STATE_TTL_SECONDS"]) >= 3600
    assert env["SCALE_UP_DEADLINE_SECONDS"] == str(dev.config.observability.time_to_scale_seconds)
    assert env["SIGNAL_QUERY"] == 'avg(radstream:triton_queue_time_per_request_us{namespace="radstream"})'
    assert env["SIGNAL_TARGET"] == str(dev.config.autoscaling.queue_time_target_us)
    policies = json.dumps(
        [p["Properties"] for k, p in dev.resources("AWS::IAM::Policy").items() if k.startswith("HooksScaleEvents")]
    )
    assert '"dynamodb:GetItem"' in policies and '"dynamodb:PutItem"' in policies
    assert "ssm:PutParameter" not in policies


def test_the_scale_events_hook_may_read_the_scaling_signal_and_nothing_more(dev):
    """It reads Prometheus through the API server's service proxy (SIGNAL_SERVICE): its access entry
    puts it in the group that one Role binds, ``get`` on exactly that service's proxy."""
    import kubernetes_validate

    group = dev.config.monitoring.signal_readers_group
    entries = {
        json.dumps(e["Properties"]["PrincipalArn"]): e["Properties"]
        for e in dev.resources("AWS::EKS::AccessEntry").values()
    }
    (scale_entry,) = [e for arn, e in entries.items() if "HooksScaleEvents" in arn]
    assert scale_entry["KubernetesGroups"] == [group]
    (gate_entry,) = [e for arn, e in entries.items() if "HooksHealthCheck" in arn]
    assert "KubernetesGroups" not in gate_entry
    functions = _functions(dev)
    namespace, target = functions["HooksScaleEvents"]["Environment"]["Variables"]["SIGNAL_SERVICE"].split("/")
    objects = {
        obj["kind"]: obj
        for obj in manifest_objects(dev)
        if obj["kind"] in ("Role", "RoleBinding") and obj["metadata"]["name"] == "radstream-scaling-signal-reader"
    }
    role, binding = objects["Role"], objects["RoleBinding"]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == namespace
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["services/proxy"], "resourceNames": [target], "verbs": ["get"]}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]
    for obj in (role, binding):
        kubernetes_validate.validate(obj, "1.32.0", strict=True)
