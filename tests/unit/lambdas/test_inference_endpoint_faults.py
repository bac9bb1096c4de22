"""The inference endpoint under faults (issue 14), against the Triton protocol stub and moto, the state
machine executed by moto with the real handler in-process (see test_inference_endpoint_support.py):
the Triton address changed under a warm function, a slow S3, a Lambda timeout, two executions for one
study at once, component versions without a per-request metadata call, the time budget, and no study
id or object key in clear in any log line. tests/integration/test_inference_endpoint_faults.py does the
same against the real Triton."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import ReadTimeoutError
from moto import mock_aws

from cdk_app.config import ConfigError, HooksConfig, PlatformConfig, RetryConfig
from lambdas.inference_endpoint import handler as handler_module
from lambdas.inference_endpoint.errors import StorageUnavailable, TritonUnavailable
from lambdas.inference_endpoint.privacy import study_token
from tests.unit.lambdas.test_inference_endpoint_support import (
    INPUT_BUCKET,
    LABEL_COUNT,
    LOG_HASH_KEY,
    REGION,
    RESULTS_BUCKET,
    LambdaContext,
    Reply,
    StateMachineSandbox,
    StubTriton,
    create_log_hash_key,
    set_aws_test_environment,
    set_endpoint_environment,
)

FAKE_DICOM = bytes(128) + b"DICM" + b"\x00" * 64
STUDY_ID = "1.2.840.113619.2.55.3.604688119"
KEY = "studies/2026/patient-4711/chest.dcm"
STUDY = {"bucket": INPUT_BUCKET, "key": KEY, "study_id": STUDY_ID}
TRITON_URL_PARAMETER = "/radstream/test/triton-url"
Timedout = type("Sandbox.Timedout", (Exception,), {})  # what the runtime reports when the function times out


def real_handler(event: dict[str, Any]) -> Any:
    return handler_module.handler(event, LambdaContext())


@pytest.fixture
def stub_triton() -> Iterator[StubTriton]:
    with StubTriton() as stub:
        yield stub


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch, stub_triton: StubTriton) -> Iterator[StateMachineSandbox]:
    set_aws_test_environment(monkeypatch)
    set_endpoint_environment(monkeypatch, stub_triton.url)
    handler_module.reset_caches()
    with StateMachineSandbox(real_handler, monkeypatch).running() as running:
        running.put_image(KEY, FAKE_DICOM)
        yield running
    handler_module.reset_caches()


def mask_of(archive: bytes) -> np.ndarray:
    with np.load(io.BytesIO(archive)) as loaded:
        return np.array(loaded["lesion_mask"])


# --- the time budget ------------------------------------------------------------------------------------


def test_the_shipped_lambda_timeout_exceeds_read_triton_write_and_margin() -> None:
    hooks = HooksConfig()
    assert hooks.inference_deadline_seconds == 2 * hooks.s3_phase_budget_seconds + hooks.triton_timeout_seconds
    assert hooks.inference_timeout_seconds > hooks.inference_deadline_seconds + hooks.inference_margin_seconds


def test_a_lambda_timeout_under_the_budget_is_refused_at_synth() -> None:
    config = PlatformConfig(stage="dev", hooks=HooksConfig(inference_timeout_seconds=90))
    with pytest.raises(ConfigError, match=r"inference_timeout_seconds=90 must exceed S3 read \(30 s\) \+ Triton"):
        config.validate()


def test_triton_retries_shorter_than_a_new_node_are_refused_at_synth() -> None:
    old = RetryConfig(interval_seconds=2, backoff_rate=2.0, max_delay_seconds=16, max_attempts=4)
    capacity = PlatformConfig(stage="dev").capacity_timing.new_node_capacity_seconds
    with pytest.raises(ConfigError, match=f"under the {capacity} s a scale-up onto a new GPU node takes"):
        PlatformConfig(stage="dev", hooks=HooksConfig(triton_retry=old)).validate()


def test_triton_gets_the_deadline_less_the_read_and_the_writes_budget(
    sandbox: StateMachineSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERENCE_DEADLINE_SECONDS", "40")
    monkeypatch.setenv("S3_PHASE_BUDGET_SECONDS", "15")
    monkeypatch.setenv("TRITON_TIMEOUT_SECONDS", "30")
    handler_module.reset_caches()
    seen: list[float | None] = []
    original = handler_module.HttpPipeline.infer

    def recording(self: Any, image: bytes, timeout_s: float | None = None) -> Any:
        seen.append(timeout_s)
        return original(self, image, timeout_s)

    monkeypatch.setattr(handler_module.HttpPipeline, "infer", recording)
    assert handler_module.handler(dict(STUDY), LambdaContext())["status"] == "SUCCEEDED"
    (budget,) = seen
    assert budget is not None and 24.0 < budget <= 25.0  # 40 s - the read - 15 s kept for the write
    # A Lambda with less time left than the deadline: the budget shrinks with it.
    handler_module.handler(dict(STUDY), LambdaContext(remaining_ms=30_000))
    assert seen[-1] is not None and seen[-1] <= 30 - handler_module.LAMBDA_MARGIN_SECONDS - 15


# --- model versions ---------------------------------------------------------------------------------------


def test_component_versions_are_read_once_per_container_not_per_request(
    sandbox: StateMachineSandbox, stub_triton: StubTriton
) -> None:
    first = handler_module.handler(dict(STUDY), LambdaContext())
    second = handler_module.handler(dict(STUDY), LambdaContext())
    assert stub_triton.metadata_requests == 3  # one per component model, on the first request only
    assert (
        first["model_versions"]
        == second["model_versions"]
        == {
            "radstream_pipeline": "1",  # from the inference response itself
            "study_preprocess": "1",
            "cxr_classifier": "1",
            "lesion_segmenter": "1",
        }
    )


def test_a_failed_metadata_call_does_not_throw_away_the_inference(
    sandbox: StateMachineSandbox, stub_triton: StubTriton
) -> None:
    stub_triton.metadata_status = 503
    summary = handler_module.handler(dict(STUDY), LambdaContext())
    assert summary["status"] == "SUCCEEDED" and len(summary["findings"]) == LABEL_COUNT
    assert summary["model_versions"]["radstream_pipeline"] == "1"
    assert summary["model_versions"]["cxr_classifier"] == "unknown"


# --- Lambda timeouts, S3 faults -------------------------------------------------------------------------


def test_a_lambda_timeout_is_retried_by_the_state_machine(sandbox: StateMachineSandbox) -> None:
    calls: list[int] = []

    def times_out_once(event: dict[str, Any]) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise Timedout("Task timed out after 120.00 seconds")
        return real_handler(event)

    sandbox.runtime = times_out_once
    report = sandbox.execute(STUDY, name="timedout-1")
    assert report.status == "SUCCEEDED"
    assert report.lambda_attempts == 2
    failed = [e["taskFailedEventDetails"]["error"] for e in report.history if e["type"] == "TaskFailed"]
    assert failed == ["Sandbox.Timedout"]


def test_an_s3_read_timeout_is_storage_unavailable_and_retried(sandbox: StateMachineSandbox) -> None:
    client = handler_module.s3_client()
    timeouts = {"left": 3}  # the S3 client's own 3 attempts of the first invocation all time out

    def slow_get(**_: Any) -> None:
        if timeouts["left"] > 0:
            timeouts["left"] -= 1
            raise ReadTimeoutError(endpoint_url="https://s3.us-east-1.amazonaws.com")

    client.meta.events.register("before-send.s3.GetObject", slow_get)
    report = sandbox.execute(STUDY, name="slow-s3-1")
    assert report.status == "SUCCEEDED"
    assert timeouts["left"] == 0
    failed = [e["taskFailedEventDetails"]["error"] for e in report.history if e["type"] == "TaskFailed"]
    assert failed == ["StorageUnavailable"]
    assert report.lambda_attempts == 2


@pytest.mark.parametrize(
    ("code", "status"), [("SlowDown", 503), ("KMS.ThrottlingException", 400), ("InternalError", 500)]
)
def test_throttling_and_server_errors_of_s3_and_kms_are_storage_unavailable(
    sandbox: StateMachineSandbox, code: str, status: int
) -> None:
    from botocore.awsrequest import AWSResponse

    client = handler_module.s3_client()
    body = f"<Error><Code>{code}</Code><Message>m</Message></Error>".encode()

    def throttled(**_: Any) -> AWSResponse:
        return AWSResponse("https://s3", status, {}, _Raw(body))

    client.meta.events.register_first("before-send.s3.PutObject", throttled)
    with pytest.raises(StorageUnavailable, match=code.split(".")[-1] if status != 500 else "InternalError"):
        handler_module.handler(dict(STUDY), LambdaContext())


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def test_a_missing_object_is_permanent_and_not_retried(sandbox: StateMachineSandbox) -> None:
    report = sandbox.execute({**STUDY, "key": "studies/none.dcm"}, name="missing-1")
    assert (report.status, report.error) == ("FAILED", "InputInvalid")
    assert report.lambda_attempts == 1


# --- the Triton address ---------------------------------------------------------------------------------


@pytest.fixture
def warm_function(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[StubTriton, StubTriton, Any]]:
    """The handler reading Triton's address from SSM (as deployed), two Triton stubs: old and new NLB."""
    set_aws_test_environment(monkeypatch)
    with StubTriton() as old, StubTriton() as new, mock_aws():
        set_endpoint_environment(monkeypatch, old.url)
        monkeypatch.delenv("TRITON_URL")
        monkeypatch.setenv("TRITON_URL_PARAMETER", TRITON_URL_PARAMETER)
        handler_module.reset_caches()
        ssm = boto3.client("ssm", region_name=REGION)
        ssm.put_parameter(Name=TRITON_URL_PARAMETER, Value=old.url, Type="String")
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (INPUT_BUCKET, RESULTS_BUCKET):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=INPUT_BUCKET, Key=KEY, Body=FAKE_DICOM)
        create_log_hash_key()
        yield old, new, ssm
    handler_module.reset_caches()


def test_the_address_is_read_again_at_once_when_the_old_one_is_unavailable(
    warm_function: tuple[StubTriton, StubTriton, Any],
) -> None:
    old, new, ssm = warm_function
    assert handler_module.handler(dict(STUDY), LambdaContext())["status"] == "SUCCEEDED"
    assert len(old.images) == 1
    # The NLB is replaced: SSM holds the new address and the old one answers 503 from now on.
    ssm.put_parameter(Name=TRITON_URL_PARAMETER, Value=new.url, Type="String", Overwrite=True)
    old.script.extend([Reply(status=503, error="no healthy targets")] * 10)
    summary = handler_module.handler(dict(STUDY), LambdaContext())  # well within the 60 s cache
    assert summary["status"] == "SUCCEEDED"
    assert len(new.images) == 1  # the same invocation moved to the new address
    handler_module.handler(dict(STUDY), LambdaContext())
    assert len(new.images) == 2 and len(old.images) == 2  # and stays there


def test_the_address_is_re_read_after_its_ttl(
    warm_function: tuple[StubTriton, StubTriton, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new, ssm = warm_function
    monkeypatch.setenv("TRITON_URL_CACHE_SECONDS", "1")
    handler_module.reset_caches()
    handler_module.handler(dict(STUDY), LambdaContext())
    ssm.put_parameter(Name=TRITON_URL_PARAMETER, Value=new.url, Type="String", Overwrite=True)
    time.sleep(1.2)
    handler_module.handler(dict(STUDY), LambdaContext())
    assert (len(old.images), len(new.images)) == (1, 1)  # the old one still answered, yet the new one is used


def test_triton_unavailable_at_the_same_address_is_raised_for_the_state_machine(
    warm_function: tuple[StubTriton, StubTriton, Any],
) -> None:
    old, _, _ = warm_function
    old.script.extend([Reply(status=503, error="Exceeds maximum queue size")] * 2)
    with pytest.raises(TritonUnavailable, match="503"):
        handler_module.handler(dict(STUDY), LambdaContext())


# --- two executions for one study -----------------------------------------------------------------------


def _reply_from_image(image: bytes) -> Reply:
    """Outputs that identify the image: every mask pixel is the image's last byte / 255."""
    level = image[-1] / 255.0
    return Reply(
        findings=np.full((1, LABEL_COUNT), level, np.float32),
        mask=np.full((1, 1, 256, 256), level, np.float32),
    )


def test_two_concurrent_executions_for_one_study_never_mix_their_results(
    monkeypatch: pytest.MonkeyPatch, stub_triton: StubTriton
) -> None:
    set_aws_test_environment(monkeypatch)
    set_endpoint_environment(monkeypatch, stub_triton.url)
    handler_module.reset_caches()
    stub_triton.reply_for = _reply_from_image
    inputs = {"scan-a": FAKE_DICOM + b"\x33", "scan-b": FAKE_DICOM + b"\xcc"}
    with StateMachineSandbox(real_handler, monkeypatch, one_container=False).running() as sandbox:
        for name, data in inputs.items():
            sandbox.put_image(f"studies/{name}.dcm", data)
        arns = {name: sandbox.start({**STUDY, "key": f"studies/{name}.dcm"}, name=name) for name in inputs}
        reports = {name: sandbox.wait_for(arn, name) for name, arn in arns.items()}
        for name, report in reports.items():
            assert report.status == "SUCCEEDED", report.error
            result = report.output["result"]
            stored = json.loads(sandbox.objects(RESULTS_BUCKET, result["summary_key"])[result["summary_key"]])
            head = sandbox.s3.head_object(Bucket=INPUT_BUCKET, Key=f"studies/{name}.dcm")
            # The stored summary is this execution's, on this input's version, pointing at this mask version.
            assert stored["execution"] == name
            assert (stored["image"]["key"], stored["image"]["version_id"], stored["image"]["etag"]) == (
                f"studies/{name}.dcm",
                head["VersionId"],
                head["ETag"],
            )
            mask_object = sandbox.s3.get_object(
                Bucket=RESULTS_BUCKET, Key=result["mask_key"], VersionId=stored["result"]["mask_version_id"]
            )["Body"].read()
            expected = inputs[name][-1] / 255.0
            assert float(mask_of(mask_object).max()) == pytest.approx(expected, abs=1e-6)
            assert stored["mask"]["max_probability"] == pytest.approx(expected, abs=1e-6)
            assert result["summary_version_id"] == sandbox.s3.head_object(
                Bucket=RESULTS_BUCKET, Key=result["summary_key"]
            ).get("VersionId")
        keys = {r.output["result"]["summary_key"] for r in reports.values()}
        assert len(keys) == 2
    handler_module.reset_caches()


# --- identifiers out of the logs --------------------------------------------------------------------------


def logged_lines(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every line the run logged: each record as Powertools writes it to CloudWatch (its JSON formatter,
    extra keys included), every other logger's record, and whatever reached stdout/stderr (EMF metrics)."""
    formatter = handler_module.logger.registered_formatter
    records = [
        formatter.format(record) if record.name == handler_module.logger.name else record.getMessage()
        for record in caplog.records
    ]
    captured = capsys.readouterr()
    return [line for line in [*records, *(captured.out + captured.err).splitlines()] if line.strip()]


def test_no_log_line_of_a_full_run_holds_the_study_id_or_the_key(
    sandbox: StateMachineSandbox,
    stub_triton: StubTriton,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    stub_triton.script.append(Reply(status=503, error="Exceeds maximum queue size"))
    ok = sandbox.execute(STUDY, name="logs-ok")
    stub_triton.script.append(Reply(status=400, error="unrecognised image format"))
    rejected = sandbox.execute(STUDY, name="logs-rejected")
    missing = sandbox.execute({**STUDY, "key": KEY + ".missing"}, name="logs-missing")
    assert (ok.status, rejected.error, missing.error) == ("SUCCEEDED", "ImageRejected", "InputInvalid")
    lines = logged_lines(capsys, caplog)
    assert any("inference succeeded" in line for line in lines)
    assert any("inference failed" in line for line in lines)
    token = study_token(LOG_HASH_KEY.encode(), STUDY_ID)
    assert any(token in line for line in lines)  # the keyed hash correlates the lines instead
    for forbidden in (STUDY_ID, KEY, "patient-4711", LOG_HASH_KEY):
        assert not [line for line in lines if forbidden in line], forbidden
    # Nor in the errors Step Functions keeps as the execution's cause.
    for report in (rejected, missing):
        assert STUDY_ID not in (report.cause or "") and KEY not in (report.cause or "")


def test_the_study_id_is_not_a_trace_annotation(sandbox: StateMachineSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    annotations: list[tuple[str, Any]] = []
    monkeypatch.setattr(handler_module.tracer, "put_annotation", lambda key, value: annotations.append((key, value)))
    handler_module.handler(dict(STUDY), LambdaContext())
    assert all(STUDY_ID not in str(value) and KEY not in str(value) for _, value in annotations)


def test_the_s3_client_has_short_timeouts_and_adaptive_retries(sandbox: StateMachineSandbox) -> None:
    config = handler_module.s3_client().meta.config
    assert (config.connect_timeout, config.read_timeout) == (1.0, 3.0)
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 3}


def test_an_unexpected_exception_is_counted_under_one_bounded_error_type(
    sandbox: StateMachineSandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.unit.lambdas.test_inference_endpoint_support import emf_metrics

    def broken(*_: Any, **__: Any) -> Any:
        raise KeyError("Body")

    monkeypatch.setattr(handler_module, "run_inference", broken)
    with pytest.raises(KeyError):
        handler_module.handler(dict(STUDY), LambdaContext())
    (document,) = [d for d in emf_metrics(capsys.readouterr().out) if "InferenceFailed" in d]
    assert document["ErrorType"] == "Unexpected"
    assert "KeyError" not in document
