"""The inference endpoint Lambda against the real local Triton (S3 and SSM in moto), on the real chest
X-ray, and the RadStreamInference state machine executed by moto with that handler answering its
Lambda task (see tests/unit/lambdas/test_inference_endpoint_support.py for how, and why)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from cdk_app.config import TRITON_RETRY
from lambdas.inference_endpoint import handler as handler_module
from lambdas.inference_endpoint.errors import ImageRejected, TritonUnavailable
from lambdas.inference_endpoint.labels import finding_labels
from tests.integration.pipeline_client import infer_pipeline
from tests.unit.lambdas.test_inference_endpoint_support import (
    INPUT_BUCKET,
    REGION,
    RESULTS_BUCKET,
    LambdaContext,
    StateMachineSandbox,
    TcpForwarder,
    create_log_hash_key,
    free_port,
    set_aws_test_environment,
    set_endpoint_environment,
)

pytestmark = pytest.mark.integration

TRITON_URL_PARAMETER = "/radstream/triton-url"
XRAY_KEY = "studies/rg1/RG1_UNCR.dcm"
BAD_KEY = "studies/bad/truncated.dcm"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, triton_server: Any, chest_xray_bytes: bytes) -> Iterator[Any]:
    """moto S3 (the study, results) and SSM (Triton's address, as the deployment provides it)."""
    set_aws_test_environment(monkeypatch)
    set_endpoint_environment(monkeypatch, triton_server.http_url)
    monkeypatch.delenv("TRITON_URL")
    monkeypatch.setenv("TRITON_URL_PARAMETER", TRITON_URL_PARAMETER)
    handler_module.reset_caches()
    with mock_aws():
        boto3.client("ssm", region_name=REGION).put_parameter(
            Name=TRITON_URL_PARAMETER, Value=triton_server.http_url, Type="String"
        )
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (INPUT_BUCKET, RESULTS_BUCKET):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=INPUT_BUCKET, Key=XRAY_KEY, Body=chest_xray_bytes)
        s3.put_object(Bucket=INPUT_BUCKET, Key=BAD_KEY, Body=chest_xray_bytes[: len(chest_xray_bytes) // 3])
        create_log_hash_key()
        yield s3
    handler_module.reset_caches()


def test_chest_xray_gives_14_findings_and_the_mask_in_s3(aws: Any, http_client: Any, chest_xray_bytes: bytes) -> None:
    event = {"bucket": INPUT_BUCKET, "key": XRAY_KEY, "study_id": "rg1-uncr"}
    summary = handler_module.handler(event, LambdaContext())

    direct = infer_pipeline(http_client, chest_xray_bytes)  # the same study straight through tritonclient
    assert [f["label"] for f in summary["findings"]] == list(finding_labels())
    np.testing.assert_allclose(
        [f["probability"] for f in summary["findings"]], direct["FINDINGS"][0], rtol=0, atol=1e-6
    )
    assert all(f["above_threshold"] == (f["probability"] >= 0.5) for f in summary["findings"])
    etag = aws.head_object(Bucket=INPUT_BUCKET, Key=XRAY_KEY)["ETag"]
    assert summary["image"] == {
        "bucket": INPUT_BUCKET,
        "key": XRAY_KEY,
        "version_id": None,
        "etag": etag,
        "bytes": len(chest_xray_bytes),
        "format": "dicom",
    }
    assert summary["model_versions"] == {
        "radstream_pipeline": "1",
        "study_preprocess": "1",
        "cxr_classifier": "1",
        "lesion_segmenter": "1",
    }
    assert summary["latency_ms"]["inference"] > 0
    assert len(json.dumps(summary)) < 8 * 1024

    base = f"results/rg1-uncr/etag-{etag.strip(chr(34))}"  # a direct invocation: named after the input's ETag
    assert summary["result"]["summary_key"] == f"{base}/result.json"
    stored = json.loads(aws.get_object(Bucket=RESULTS_BUCKET, Key=f"{base}/result.json")["Body"].read())
    assert stored["findings"] == summary["findings"]
    mask_object = aws.get_object(Bucket=RESULTS_BUCKET, Key=f"{base}/lesion_mask.npz")["Body"].read()
    with np.load(io.BytesIO(mask_object)) as archive:
        mask = archive["lesion_mask"]
    assert mask.shape == (256, 256) and mask.dtype == np.float32
    np.testing.assert_array_equal(mask, direct["LESION_MASK"][0, 0])
    assert summary["mask"]["max_probability"] == pytest.approx(float(mask.max()), abs=1e-6)
    assert summary["mask"]["area_pixels"] == int((mask >= 0.5).sum())


@pytest.mark.parametrize(("fixture", "image_format"), [("png_bytes", "png"), ("jpeg_bytes", "jpeg")])
def test_png_and_jpeg_studies_are_served(
    aws: Any, request: pytest.FixtureRequest, fixture: str, image_format: str
) -> None:
    aws.put_object(Bucket=INPUT_BUCKET, Key=f"studies/rg1.{image_format}", Body=request.getfixturevalue(fixture))
    event = {"bucket": INPUT_BUCKET, "key": f"studies/rg1.{image_format}", "study_id": f"rg1-{image_format}"}
    summary = handler_module.handler(event, LambdaContext())
    assert summary["image"]["format"] == image_format
    assert len(summary["findings"]) == 14


def test_a_truncated_dicom_is_image_rejected_with_tritons_message(aws: Any) -> None:
    with pytest.raises(ImageRejected, match="DICOM pixel data is truncated or unreadable"):
        handler_module.handler({"bucket": INPUT_BUCKET, "key": BAD_KEY, "study_id": "bad"}, LambdaContext())
    assert "Contents" not in aws.list_objects_v2(Bucket=RESULTS_BUCKET)


def test_triton_down_is_triton_unavailable(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_URL", f"127.0.0.1:{free_port()}")  # TRITON_URL wins over the SSM parameter
    handler_module.reset_caches()
    with pytest.raises(TritonUnavailable, match="Connection refused"):
        handler_module.handler({"bucket": INPUT_BUCKET, "key": XRAY_KEY, "study_id": "down"}, LambdaContext())


# --- the state machine, executed by moto, the real handler on the real Triton -------------------------


def real_handler(event: dict[str, Any]) -> Any:
    return handler_module.handler(event, LambdaContext())


@pytest.fixture
def sandbox(
    monkeypatch: pytest.MonkeyPatch, triton_server: Any, chest_xray_bytes: bytes
) -> Iterator[StateMachineSandbox]:
    set_aws_test_environment(monkeypatch)
    set_endpoint_environment(monkeypatch, triton_server.http_url)
    handler_module.reset_caches()
    with StateMachineSandbox(real_handler, monkeypatch).running() as running:
        running.put_image(XRAY_KEY, chest_xray_bytes)
        running.put_image(BAD_KEY, chest_xray_bytes[: len(chest_xray_bytes) // 3])
        yield running
    handler_module.reset_caches()


def test_state_machine_success_on_the_chest_xray(sandbox: StateMachineSandbox) -> None:
    report = sandbox.execute({"bucket": INPUT_BUCKET, "key": XRAY_KEY, "study_id": "rg1"}, name="rg1-ok")
    assert report.status == "SUCCEEDED"
    assert report.lambda_attempts == 1
    assert [f["label"] for f in report.output["findings"]] == list(finding_labels())
    assert set(sandbox.objects(RESULTS_BUCKET, "results/rg1/")) == {
        "results/rg1/rg1-ok/result.json",
        "results/rg1/rg1-ok/lesion_mask.npz",
    }
    assert sandbox.objects(RESULTS_BUCKET, "failures/") == {}


def test_state_machine_bad_image_fails_without_retry_and_records_it(sandbox: StateMachineSandbox) -> None:
    report = sandbox.execute({"bucket": INPUT_BUCKET, "key": BAD_KEY, "study_id": "bad"}, name="bad-run")
    assert (report.status, report.error) == ("FAILED", "ImageRejected")
    assert report.lambda_attempts == 1 and report.waits == []
    records = sandbox.objects(RESULTS_BUCKET, "failures/")
    assert list(records) == ["failures/bad/bad-run.json"]
    record = json.loads(records["failures/bad/bad-run.json"])
    assert record["error"]["Error"] == "ImageRejected"
    assert "DICOM pixel data is truncated" in json.loads(record["error"]["Cause"])["errorMessage"]
    assert sandbox.objects(RESULTS_BUCKET, "results/") == {}


def test_state_machine_triton_down_retries_then_fails_cleanly_with_the_failure_recorded(
    sandbox: StateMachineSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRITON_URL", f"127.0.0.1:{free_port()}")  # a stopped server: nothing listening
    handler_module.reset_caches()
    report = sandbox.execute({"bucket": INPUT_BUCKET, "key": XRAY_KEY, "study_id": "rg1"}, name="down-run")
    assert (report.status, report.error) == ("FAILED", "TritonUnavailable")
    assert report.lambda_attempts == 1 + TRITON_RETRY.max_attempts  # the first try and every retry
    assert len(report.waits) == TRITON_RETRY.max_attempts
    records = sandbox.objects(RESULTS_BUCKET, "failures/")
    assert list(records) == ["failures/rg1/down-run.json"]
    record = json.loads(records["failures/rg1/down-run.json"])
    assert (record["bucket"], record["key"], record["study_id"]) == (INPUT_BUCKET, XRAY_KEY, "rg1")
    assert record["error"]["Error"] == "TritonUnavailable"
    assert sandbox.objects(RESULTS_BUCKET, "results/") == {}


def test_state_machine_recovers_when_triton_comes_back_during_the_backoff(
    sandbox: StateMachineSandbox, monkeypatch: pytest.MonkeyPatch, triton_server: Any
) -> None:
    port = free_port()
    monkeypatch.setenv("TRITON_URL", f"127.0.0.1:{port}")
    handler_module.reset_caches()
    forwarders: list[TcpForwarder] = []

    def triton_comes_up_during_the_second_wait(seconds: float) -> None:
        if len(sandbox.waits) == 2:  # the port starts answering (forwarded to the real server)
            forwarders.append(TcpForwarder(port, triton_server.http_url))

    sandbox.on_wait = triton_comes_up_during_the_second_wait
    try:
        report = sandbox.execute({"bucket": INPUT_BUCKET, "key": XRAY_KEY, "study_id": "rg1"}, name="back-run")
    finally:
        for forwarder in forwarders:
            forwarder.close()
    assert report.status == "SUCCEEDED"
    assert report.lambda_attempts == 3
    assert len(report.waits) == 2
    assert len(report.output["findings"]) == 14
    assert sandbox.objects(RESULTS_BUCKET, "failures/") == {}
