"""The RadStreamInference state machine: its ASL document, and its Retry/Catch paths executed by moto's
Step Functions interpreter with the real handler answering the Lambda task (against the Triton
protocol stub; tests/integration/test_inference_endpoint.py does the same against the real Triton).
How the Lambda task is answered without Docker: see test_inference_endpoint_support.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from cdk_app.config import TRITON_RETRY, CapacityTimingConfig, load_config
from cdk_app.state_machine_definition import (
    LAMBDA_SERVICE_ERRORS,
    LAMBDA_SERVICE_RETRY,
    NON_RETRYABLE_ERRORS,
    RECORD_FAILURE_STATE,
    build_definition,
)
from lambdas.inference_endpoint import errors
from lambdas.inference_endpoint import handler as handler_module
from tests.unit.lambdas.test_inference_endpoint_support import (
    INPUT_BUCKET,
    RESULTS_BUCKET,
    LambdaContext,
    Reply,
    StateMachineSandbox,
    StubTriton,
    TooManyRequestsException,
    free_port,
    set_aws_test_environment,
    set_endpoint_environment,
)

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:radstream-inference-endpoint"
FAKE_DICOM = bytes(128) + b"DICM" + b"\x00" * 64
STUDY = {"bucket": INPUT_BUCKET, "key": "studies/s1.dcm", "study_id": "s1"}


# --- the document ------------------------------------------------------------------------------------


def test_invoke_task_retries_triton_unavailable_and_lambda_service_errors_then_catches_all() -> None:
    definition = build_definition(FUNCTION_ARN, RESULTS_BUCKET)
    invoke = definition["States"][definition["StartAt"]]
    assert invoke["Resource"] == "arn:aws:states:::lambda:invoke"
    assert invoke["Parameters"] == {
        "FunctionName": FUNCTION_ARN,
        "Payload": {"study.$": "$", "execution.$": "$$.Execution.Name"},
    }
    assert invoke["OutputPath"] == "$.Payload"
    hooks = load_config("dev").hooks
    jittered = {"JitterStrategy": "FULL"}
    assert invoke["Retry"] == [
        {
            "ErrorEquals": ["TritonUnavailable"],
            "IntervalSeconds": hooks.triton_retry.interval_seconds,
            "MaxAttempts": hooks.triton_retry.max_attempts,
            "BackoffRate": hooks.triton_retry.backoff_rate,
            "MaxDelaySeconds": hooks.triton_retry.max_delay_seconds,
            **jittered,
        },
        {
            "ErrorEquals": ["StorageUnavailable"],
            "IntervalSeconds": hooks.storage_retry.interval_seconds,
            "MaxAttempts": hooks.storage_retry.max_attempts,
            "BackoffRate": hooks.storage_retry.backoff_rate,
            "MaxDelaySeconds": hooks.storage_retry.max_delay_seconds,
            **jittered,
        },
        {
            "ErrorEquals": ["Sandbox.Timedout", "Runtime.OutOfMemory", "Lambda.Unknown"],
            "IntervalSeconds": hooks.lambda_crash_retry.interval_seconds,
            "MaxAttempts": hooks.lambda_crash_retry.max_attempts,
            "BackoffRate": hooks.lambda_crash_retry.backoff_rate,
            "MaxDelaySeconds": hooks.lambda_crash_retry.max_delay_seconds,
            **jittered,
        },
        {
            "ErrorEquals": list(LAMBDA_SERVICE_ERRORS),
            "IntervalSeconds": 2,
            "MaxAttempts": 6,
            "BackoffRate": 2.0,
            "MaxDelaySeconds": 64,
        },
    ]
    retried = {name for retrier in invoke["Retry"] for name in retrier["ErrorEquals"]}
    assert not retried & set(NON_RETRYABLE_ERRORS)  # permanent errors are never retried
    assert invoke["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NameFailureRecord"}]
    assert definition["States"][invoke["Next"]] == {"Type": "Succeed"}
    record = definition["States"][RECORD_FAILURE_STATE]
    assert record["Resource"] == "arn:aws:states:::aws-sdk:s3:putObject"
    assert record["Parameters"]["Bucket"] == RESULTS_BUCKET
    assert definition["States"][record["Next"]]["Type"] == "Fail"
    json.dumps(definition)


def test_error_names_in_the_definition_are_the_handlers_exception_classes() -> None:
    names = {name for name in dir(errors) if isinstance(getattr(errors, name), type)}
    assert "TritonUnavailable" in names
    assert set(NON_RETRYABLE_ERRORS) - {"ConfigurationError"} <= names
    retryable = {name for name in names if getattr(getattr(errors, name), "retryable", False)}
    assert retryable == {"TritonUnavailable", "StorageUnavailable"}
    assert set(errors.ERROR_TYPES) == {*NON_RETRYABLE_ERRORS, *retryable, "Unexpected"}


def test_substitution_placeholders_pass_through() -> None:
    definition = build_definition("${InferenceFunctionArn}", "${ResultsBucket}", failure_prefix="failures/")
    text = json.dumps(definition)
    assert '"FunctionName": "${InferenceFunctionArn}"' in text
    assert '"Bucket": "${ResultsBucket}"' in text
    assert "States.Format('failures/{}/{}.json', $.study_id, $$.Execution.Name)" in text


@pytest.mark.parametrize("prefix", ["", "/", "it's", "a{b}"])
def test_a_failure_prefix_that_would_break_states_format_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="failure_prefix"):
        build_definition(FUNCTION_ARN, RESULTS_BUCKET, failure_prefix=prefix)


def test_triton_retries_outlast_a_scale_up_onto_a_new_gpu_node() -> None:
    timing = CapacityTimingConfig()
    capacity = timing.new_node_capacity_seconds
    assert capacity == (
        timing.metrics_pipeline_delay_seconds
        + timing.hpa_sync_seconds
        + timing.cluster_autoscaler_reaction_seconds
        + timing.gpu_node_boot_seconds
        + timing.image_pull_seconds
        + timing.pod_startup_seconds
    )
    # docs/autoscaling.md's sensitivity row simulates the first new pod through a new node at 341 s.
    assert TRITON_RETRY.jittered_total_lower_bound() >= max(capacity, 341)
    waits = TRITON_RETRY.nominal_waits()
    assert waits[:4] == [5, 10, 20, 40] and max(waits) == 60  # capped by MaxDelaySeconds
    # With full jitter the mean is half the nominal sum: even three deviations short, it covers the scale-up.
    assert TRITON_RETRY.jittered_total_lower_bound() >= capacity
    assert sum(waits) / 2 > capacity
    assert LAMBDA_SERVICE_RETRY.nominal_waits() == [2, 4, 8, 16, 32, 64]


# --- executed by moto, the real handler answering the Lambda task -------------------------------------


@pytest.fixture
def stub_triton() -> Iterator[StubTriton]:
    with StubTriton() as stub:
        yield stub


def real_handler(event: dict[str, Any]) -> Any:
    return handler_module.handler(event, LambdaContext())


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch, stub_triton: StubTriton) -> Iterator[StateMachineSandbox]:
    set_aws_test_environment(monkeypatch)
    set_endpoint_environment(monkeypatch, stub_triton.url)
    handler_module.reset_caches()
    with StateMachineSandbox(real_handler, monkeypatch).running() as running:
        running.put_image(STUDY["key"], FAKE_DICOM)
        yield running
    handler_module.reset_caches()


def failure_record(sandbox: StateMachineSandbox, key: str) -> dict[str, Any]:
    records = sandbox.objects(RESULTS_BUCKET, "failures/")
    assert list(records) == [key]
    return json.loads(records[key])


def test_success_returns_the_lambdas_summary(sandbox: StateMachineSandbox) -> None:
    report = sandbox.execute(STUDY, name="ok-1")
    assert report.status == "SUCCEEDED"
    assert report.output["study_id"] == "s1"
    assert len(report.output["findings"]) == 14
    assert report.lambda_attempts == 1
    assert set(sandbox.objects(RESULTS_BUCKET, "results/s1/")) == {
        "results/s1/ok-1/result.json",
        "results/s1/ok-1/lesion_mask.npz",
    }
    assert sandbox.objects(RESULTS_BUCKET, "failures/") == {}


def test_a_rejected_image_is_not_retried_and_the_failure_is_recorded(
    sandbox: StateMachineSandbox, stub_triton: StubTriton
) -> None:
    stub_triton.script.append(Reply(status=400, error="unrecognised image format"))
    report = sandbox.execute(STUDY, name="bad-1")
    assert (report.status, report.error) == ("FAILED", "ImageRejected")
    assert json.loads(report.cause or "")["errorMessage"] == "unrecognised image format"
    assert report.lambda_attempts == 1
    assert report.waits == []
    record = failure_record(sandbox, "failures/s1/bad-1.json")
    assert record["error"]["Error"] == "ImageRejected"
    assert (record["bucket"], record["key"], record["study_id"]) == (INPUT_BUCKET, STUDY["key"], "s1")
    assert record["failure"]["execution"].endswith(":bad-1")
    assert report.states_entered == [
        "InvokeInference",
        "NameFailureRecord",
        "FailureRecordForStudy",
        "RecordFailure",
        "InferenceFailed",
    ]


def test_triton_down_is_retried_with_backoff_then_recorded(
    sandbox: StateMachineSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRITON_URL", f"127.0.0.1:{free_port()}")
    handler_module.reset_caches()
    report = sandbox.execute(STUDY, name="down-1")
    assert (report.status, report.error) == ("FAILED", "TritonUnavailable")
    assert report.lambda_attempts == 1 + TRITON_RETRY.max_attempts
    assert len(report.waits) == TRITON_RETRY.max_attempts
    # full jitter: each wait drawn in [0, capped backoff]; not all equal to the backoff (not synchronised)
    assert all(0 <= w <= cap for w, cap in zip(report.waits, TRITON_RETRY.nominal_waits(), strict=True))
    assert report.waits != TRITON_RETRY.nominal_waits()
    record = failure_record(sandbox, "failures/s1/down-1.json")
    assert record["error"]["Error"] == "TritonUnavailable"
    assert "ConnectionRefusedError" in json.loads(record["error"]["Cause"])["errorMessage"]


def test_a_queue_full_triton_recovers_within_the_retries(sandbox: StateMachineSandbox, stub_triton: StubTriton) -> None:
    # Full for 8 attempts: past the old 4 retries (30 s), well within the budget for a new node.
    stub_triton.script.extend([Reply(status=503, error="Exceeds maximum queue size")] * 8)
    report = sandbox.execute(STUDY, name="busy-1")
    assert report.status == "SUCCEEDED"
    assert report.lambda_attempts == 9
    assert len(report.waits) == 8
    assert sandbox.objects(RESULTS_BUCKET, "failures/") == {}


def test_an_input_without_study_id_is_recorded_under_the_execution_name(sandbox: StateMachineSandbox) -> None:
    report = sandbox.execute({"bucket": INPUT_BUCKET, "key": STUDY["key"]}, name="nostudy-1")
    assert (report.status, report.error) == ("FAILED", "InputInvalid")
    assert report.lambda_attempts == 1
    record = failure_record(sandbox, "failures/_no_study_id/nostudy-1.json")
    assert "study_id" in json.loads(record["error"]["Cause"])["errorMessage"]


def test_lambda_throttling_is_retried_by_the_service_error_retrier(
    sandbox: StateMachineSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def throttled_twice(event: dict[str, Any]) -> Any:
        calls.append(1)
        if len(calls) <= 2:
            raise TooManyRequestsException()
        return real_handler(event)

    sandbox.runtime = throttled_twice
    report = sandbox.execute(STUDY, name="throttled-1")
    assert report.status == "SUCCEEDED"
    assert report.lambda_attempts == 3
    assert report.waits == [2, 4]
    failed = [e for e in report.history if e["type"] == "TaskFailed"]
    assert [e["taskFailedEventDetails"]["error"] for e in failed] == ["Lambda.TooManyRequestsException"] * 2


def test_when_recording_fails_the_execution_still_fails_with_the_inference_error(
    monkeypatch: pytest.MonkeyPatch, stub_triton: StubTriton
) -> None:
    set_aws_test_environment(monkeypatch)
    set_endpoint_environment(monkeypatch, stub_triton.url)
    handler_module.reset_caches()
    stub_triton.script.append(Reply(status=400, error="unrecognised image format"))
    with StateMachineSandbox(real_handler, monkeypatch).running(failure_bucket="no-such-bucket") as sandbox:
        sandbox.put_image(STUDY["key"], FAKE_DICOM)
        report = sandbox.execute(STUDY, name="norecord-1")
    handler_module.reset_caches()
    assert (report.status, report.error) == ("FAILED", "ImageRejected")
    assert report.waits == [1, 2, 4]  # RecordFailure's own retries
    assert report.states_entered[-2:] == ["RecordFailure", "InferenceFailed"]
