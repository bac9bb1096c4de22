"""Unit tests of the inference endpoint: validation, configuration, labels, findings and mask summary,
S3 size cap and result writing (moto), Triton error mapping (tritonclient against a protocol stub),
and the handler end to end with its Powertools metrics."""

from __future__ import annotations

import ast
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from lambdas.common.env import ConfigurationError
from lambdas.inference_endpoint import handler as handler_module
from lambdas.inference_endpoint.config import MAX_ENCODED_BYTES, EndpointConfig, load_config
from lambdas.inference_endpoint.endpoint import run_inference
from lambdas.inference_endpoint.errors import (
    ImageRejected,
    ImageTooLarge,
    InputInvalid,
    PipelineOutputInvalid,
    TritonUnavailable,
)
from lambdas.inference_endpoint.findings import build_findings, findings_probabilities, lesion_mask, summarize_mask
from lambdas.inference_endpoint.labels import LABELS_PATH, finding_labels
from lambdas.inference_endpoint.request import parse_request
from lambdas.inference_endpoint.storage import read_image, sniff_format
from lambdas.inference_endpoint.triton_pipeline import ComponentVersions, HttpPipeline, PipelineOutputs
from tests.conftest import MODEL_REPOSITORY
from tests.unit.lambdas.test_inference_endpoint_support import (
    INPUT_BUCKET,
    LABEL_COUNT,
    REGION,
    RESULTS_BUCKET,
    LambdaContext,
    Reply,
    StubTriton,
    create_log_hash_key,
    emf_metrics,
    free_port,
    metric_values,
    set_aws_test_environment,
    set_endpoint_environment,
)

KEY = {"LOG_HASH_KEY_SECRET": "s"}
GOOD_EVENT = {"bucket": INPUT_BUCKET, "key": "studies/rg1.dcm", "study_id": "1.2.840.113619-rg1"}
FAKE_DICOM = bytes(128) + b"DICM" + b"\x00" * 64


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    set_aws_test_environment(monkeypatch)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=INPUT_BUCKET)
        s3.create_bucket(Bucket=RESULTS_BUCKET)
        create_log_hash_key()
        yield s3


@pytest.fixture
def stub_triton() -> Iterator[StubTriton]:
    with StubTriton() as stub:
        yield stub


def config(**overrides: Any) -> EndpointConfig:
    values: dict[str, Any] = {"triton_url": "127.0.0.1:1", "results_bucket": RESULTS_BUCKET}
    values.update(overrides)
    return EndpointConfig(**values)


class FakePipeline:
    def __init__(self, findings: np.ndarray | None = None, mask: np.ndarray | None = None) -> None:
        self.findings = findings if findings is not None else np.full((1, LABEL_COUNT), 0.2, np.float32)
        self.mask = mask if mask is not None else np.zeros((1, 1, 256, 256), np.float32)
        self.images: list[bytes] = []
        self.timeouts: list[float | None] = []

    def infer(self, image: bytes, timeout_s: float | None = None) -> PipelineOutputs:
        self.images.append(image)
        self.timeouts.append(timeout_s)
        return PipelineOutputs(self.findings, self.mask, {"radstream_pipeline": "1"})


# --- labels ----------------------------------------------------------------------------------------


def test_labels_txt_is_a_copy_of_the_classifiers_labels() -> None:
    source = MODEL_REPOSITORY / "cxr_classifier" / "labels.txt"
    assert (
        LABELS_PATH.read_bytes() == source.read_bytes()
    ), "lambdas/inference_endpoint/labels.txt drifted from triton/model_repository/cxr_classifier/labels.txt: copy it"


def test_labels_are_the_14_findings_in_output_order() -> None:
    labels = finding_labels()
    assert len(labels) == LABEL_COUNT
    assert labels[0] == "Atelectasis"
    assert labels[-1] == "Hernia"


# --- request validation ------------------------------------------------------------------------------


def test_a_valid_event_parses_and_extra_fields_are_ignored() -> None:
    request = parse_request({**GOOD_EVENT, "execution": "x"})
    assert (request.bucket, request.key, request.study_id) == (INPUT_BUCKET, "studies/rg1.dcm", "1.2.840.113619-rg1")


@pytest.mark.parametrize(
    ("event", "fields"),
    [
        ({"bucket": INPUT_BUCKET, "key": "k"}, ("study_id",)),
        ({}, ("bucket", "key", "study_id")),
        ({**GOOD_EVENT, "bucket": "Not_A_Bucket"}, ("bucket",)),
        ({**GOOD_EVENT, "key": ""}, ("key",)),
        ({**GOOD_EVENT, "study_id": "../escape"}, ("study_id",)),
        ({**GOOD_EVENT, "study_id": "a/b"}, ("study_id",)),
        ({**GOOD_EVENT, "study_id": 12345}, ("study_id",)),
        ({**GOOD_EVENT, "key": "k" * 1025}, ("key",)),
        ("not an object", ("(event)",)),
        (None, ("(event)",)),
    ],
)
def test_invalid_events_raise_input_invalid_naming_the_fields(event: Any, fields: tuple[str, ...]) -> None:
    with pytest.raises(InputInvalid) as caught:
        parse_request(event)
    assert caught.value.fields == fields
    for field in fields:
        assert field in str(caught.value)


# --- configuration -----------------------------------------------------------------------------------


def no_ssm(name: str) -> str:
    raise AssertionError(f"SSM read {name}")


def test_configuration_defaults() -> None:
    loaded = load_config({"TRITON_URL": "triton.internal:8000", "RESULTS_BUCKET": RESULTS_BUCKET, **KEY})
    assert loaded == EndpointConfig(
        triton_url="triton.internal:8000", results_bucket=RESULTS_BUCKET, log_hash_key_secret="s"
    )
    assert loaded.max_image_bytes == MAX_ENCODED_BYTES == 33554432
    assert (loaded.finding_threshold, loaded.results_prefix) == (0.5, "results")


def test_max_image_bytes_default_matches_study_preprocess() -> None:
    config_text = (MODEL_REPOSITORY / "study_preprocess" / "config.pbtxt").read_text()
    assert f'string_value: "{MAX_ENCODED_BYTES}"' in config_text


def test_configuration_reads_every_variable() -> None:
    loaded = load_config(
        {
            "TRITON_URL": "10.0.0.5:8000",
            "RESULTS_BUCKET": RESULTS_BUCKET,
            **KEY,
            "RESULTS_PREFIX": "/inference/v1/",
            "MAX_IMAGE_BYTES": "1000",
            "FINDING_THRESHOLD": "0.3",
            "MASK_THRESHOLD": "0.7",
            "TRITON_TIMEOUT_SECONDS": "12.5",
            "ALLOWED_INPUT_BUCKETS": "a-bucket, b-bucket",
        }
    )
    assert loaded.results_prefix == "inference/v1"
    assert (loaded.max_image_bytes, loaded.finding_threshold, loaded.mask_threshold) == (1000, 0.3, 0.7)
    assert loaded.triton_timeout_seconds == 12.5
    assert loaded.allowed_input_buckets == frozenset({"a-bucket", "b-bucket"})


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"RESULTS_BUCKET": RESULTS_BUCKET}, "TRITON_URL"),
        ({"TRITON_URL": "t:8000"}, "RESULTS_BUCKET"),
        ({"TRITON_URL": "http://t:8000", "RESULTS_BUCKET": RESULTS_BUCKET}, "without a scheme"),
        ({"TRITON_URL": "t", "RESULTS_BUCKET": RESULTS_BUCKET}, "TRITON_URL"),
        ({"TRITON_URL": "t:8000", "RESULTS_BUCKET": RESULTS_BUCKET, "MAX_IMAGE_BYTES": "big"}, "MAX_IMAGE_BYTES"),
        ({"TRITON_URL": "t:8000", "RESULTS_BUCKET": RESULTS_BUCKET, "MAX_IMAGE_BYTES": "0"}, "MAX_IMAGE_BYTES"),
        ({"TRITON_URL": "t:8000", "RESULTS_BUCKET": RESULTS_BUCKET, "FINDING_THRESHOLD": "1.5"}, "FINDING_THRESHOLD"),
        ({"TRITON_URL": "t:8000", "RESULTS_BUCKET": RESULTS_BUCKET, "FINDING_THRESHOLD": "nan"}, "FINDING_THRESHOLD"),
        ({"TRITON_URL": "t:8000", "RESULTS_BUCKET": RESULTS_BUCKET, "TRITON_TIMEOUT_SECONDS": "0"}, "TRITON_TIMEOUT"),
        ({"TRITON_URL": "t:8000", "RESULTS_BUCKET": "Bad_Bucket"}, "RESULTS_BUCKET"),
        ({"TRITON_URL": "t:8000", "RESULTS_BUCKET": RESULTS_BUCKET, "RESULTS_PREFIX": "///"}, "RESULTS_PREFIX"),
        ({"TRITON_URL": "t:8000", "RESULTS_BUCKET": RESULTS_BUCKET, "LOG_HASH_KEY_SECRET": ""}, "LOG_HASH_KEY"),
        (
            {"TRITON_URL": "t:8000", "RESULTS_BUCKET": RESULTS_BUCKET, "S3_PHASE_BUDGET_SECONDS": "95"},
            "INFERENCE_DEADLINE_SECONDS",
        ),
    ],
)
def test_configuration_errors_name_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        load_config({**KEY, **environ})


def test_triton_url_wins_over_the_ssm_parameter() -> None:
    environ = {"TRITON_URL": "t:8000", "TRITON_URL_PARAMETER": "/p", "RESULTS_BUCKET": RESULTS_BUCKET, **KEY}
    assert load_config(environ).triton_url == "t:8000"
    parameter_only = {"TRITON_URL_PARAMETER": "/p", "RESULTS_BUCKET": RESULTS_BUCKET, **KEY}
    assert (load_config(parameter_only).triton_url, load_config(parameter_only).triton_url_parameter) == (None, "/p")


# --- findings and mask summary -----------------------------------------------------------------------


def test_findings_carry_label_probability_and_threshold_flag() -> None:
    probabilities = findings_probabilities(np.linspace(0, 1, LABEL_COUNT, dtype=np.float32).reshape(1, -1), 14)
    findings = build_findings(probabilities, finding_labels(), threshold=0.5)
    assert [f.label for f in findings] == list(finding_labels())
    assert findings[0].probability == 0.0 and not findings[0].above_threshold
    assert findings[-1].probability == 1.0 and findings[-1].above_threshold
    assert sum(f.above_threshold for f in findings) == 7  # 7/13 .. 13/13 are >= 0.5
    at_threshold = build_findings(np.full(14, 0.5, np.float32), finding_labels(), threshold=0.5)
    assert all(f.above_threshold for f in at_threshold)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (None, "FINDINGS missing"),
        (np.zeros((1, 13), np.float32), "shape [1, 13], expected [14]"),
        (np.zeros((1, 14), np.float64), "dtype float64"),
        (np.full((1, 14), np.nan, np.float32), "NaN"),
        (np.full((1, 14), 1.5, np.float32), "outside [0, 1]"),
    ],
)
def test_malformed_findings_raise_pipeline_output_invalid(array: np.ndarray | None, message: str) -> None:
    with pytest.raises(PipelineOutputInvalid, match=message.replace("[", r"\[").replace("]", r"\]")):
        findings_probabilities(array, 14)


def test_label_count_must_match_the_findings() -> None:
    with pytest.raises(PipelineOutputInvalid, match="13 labels"):
        build_findings(np.zeros(14, np.float32), finding_labels()[:13], 0.5)


def test_mask_summary_area_maximum_and_bounding_box() -> None:
    mask = np.zeros((1, 1, 256, 256), np.float32)
    mask[0, 0, 10:20, 30:35] = 0.9  # 50 pixels above 0.5
    mask[0, 0, 100, 200] = 0.5  # exactly at the threshold counts
    mask[0, 0, 0, 0] = 0.49  # just below does not
    summary = summarize_mask(lesion_mask(mask), threshold=0.5)
    assert summary.area_pixels == 51
    assert summary.area_fraction == round(51 / 65536, 6)
    assert summary.max_probability == pytest.approx(0.9)
    assert summary.bounding_box is not None
    assert (summary.bounding_box.row_min, summary.bounding_box.col_min) == (10, 30)
    assert (summary.bounding_box.row_max, summary.bounding_box.col_max) == (100, 200)
    assert summary.shape == (256, 256)


def test_an_empty_mask_has_no_bounding_box() -> None:
    summary = summarize_mask(lesion_mask(np.full((1, 1, 256, 256), 0.1, np.float32)), threshold=0.5)
    assert (summary.area_pixels, summary.bounding_box) == (0, None)
    assert summary.mean_probability == pytest.approx(0.1)


def test_mask_of_the_wrong_shape_is_invalid() -> None:
    with pytest.raises(PipelineOutputInvalid, match="LESION_MASK"):
        lesion_mask(np.zeros((1, 1, 224, 224), np.float32))


def test_image_format_is_sniffed_for_the_record() -> None:
    assert sniff_format(FAKE_DICOM) == "dicom"
    assert sniff_format(b"\x89PNG\r\n\x1a\n....") == "png"
    assert sniff_format(b"\xff\xd8\xff\xe0JFIF") == "jpeg"
    assert sniff_format(b"hello") == "unknown"


# --- S3: size cap, missing objects, results ------------------------------------------------------------


def test_an_object_over_the_cap_is_refused_before_any_download(aws: Any) -> None:
    aws.put_object(Bucket=INPUT_BUCKET, Key="big.dcm", Body=b"x" * 1001)
    calls: list[str] = []
    aws.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    with pytest.raises(ImageTooLarge, match="1001 bytes, over the limit of 1000 bytes"):
        read_image(aws, INPUT_BUCKET, "big.dcm", max_bytes=1000)
    assert calls == ["HeadObject"]
    calls.clear()
    assert read_image(aws, INPUT_BUCKET, "big.dcm", max_bytes=1001).data == b"x" * 1001
    assert calls == ["HeadObject", "GetObject"]


def test_a_missing_object_or_bucket_is_input_invalid(aws: Any) -> None:
    with pytest.raises(InputInvalid, match="the study object does not exist") as caught:
        read_image(aws, INPUT_BUCKET, "nothing.dcm", max_bytes=10)
    assert "nothing.dcm" not in str(caught.value)  # no object key in messages (they reach the logs)
    with pytest.raises(InputInvalid, match="does not exist"):
        read_image(aws, "no-such-bucket", "k", max_bytes=10)


def test_run_inference_writes_summary_and_mask_and_returns_a_small_summary(aws: Any) -> None:
    aws.put_object(Bucket=INPUT_BUCKET, Key=GOOD_EVENT["key"], Body=FAKE_DICOM)
    mask = np.zeros((1, 1, 256, 256), np.float32)
    mask[0, 0, 5:7, 8:9] = 0.8
    findings = np.linspace(0.0, 1.0, LABEL_COUNT, dtype=np.float32).reshape(1, -1)
    pipeline = FakePipeline(findings, mask)
    outcome = run_inference(parse_request(GOOD_EVENT), config(), s3=aws, pipeline=pipeline, labels=finding_labels())
    assert pipeline.images == [FAKE_DICOM]
    summary = outcome.summary
    assert summary["study_id"] == GOOD_EVENT["study_id"]
    etag = aws.head_object(Bucket=INPUT_BUCKET, Key=GOOD_EVENT["key"])["ETag"]
    assert summary["image"] == {
        "bucket": INPUT_BUCKET,
        "key": GOOD_EVENT["key"],
        "version_id": None,  # this bucket is not versioned: the run is named after the ETag
        "etag": etag,
        "bytes": 196,
        "format": "dicom",
    }
    assert len(summary["findings"]) == LABEL_COUNT
    assert summary["positive_findings"] == [f["label"] for f in summary["findings"] if f["above_threshold"]]
    assert summary["mask"]["area_pixels"] == 2
    assert summary["mask"]["bounding_box"] == {"row_min": 5, "col_min": 8, "row_max": 6, "col_max": 8}
    assert summary["model_versions"] == {"radstream_pipeline": "1"}
    assert set(summary["latency_ms"]) == {"read_image", "inference", "write_results", "total"}
    assert len(json.dumps(summary)) < 8 * 1024  # far below Step Functions' 256 KB payload limit

    prefix = f"results/{GOOD_EVENT['study_id']}/etag-{etag.strip(chr(34))}/"
    assert summary["result"]["summary_key"] == prefix + "result.json"
    assert pipeline.timeouts == [pytest.approx(90.0 - 30.0, abs=1.0)]  # the deadline less the write's budget
    stored = json.loads(aws.get_object(Bucket=RESULTS_BUCKET, Key=prefix + "result.json")["Body"].read())
    assert stored["findings"] == summary["findings"]
    assert stored["mask"] == summary["mask"]
    assert set(stored["latency_ms"]) == {"read_image", "inference"}
    stored_object = aws.get_object(Bucket=RESULTS_BUCKET, Key=prefix + "lesion_mask.npz")
    with np.load(io.BytesIO(stored_object["Body"].read())) as archive:
        np.testing.assert_array_equal(archive["lesion_mask"], mask[0, 0])
        assert archive["lesion_mask"].dtype == np.float32


def test_an_input_bucket_outside_the_allow_list_is_refused(aws: Any) -> None:
    with pytest.raises(InputInvalid, match="not an input bucket"):
        run_inference(
            parse_request(GOOD_EVENT),
            config(allowed_input_buckets=frozenset({"other-bucket"})),
            s3=aws,
            pipeline=FakePipeline(),
            labels=finding_labels(),
        )


def test_nothing_is_written_when_the_outputs_are_invalid(aws: Any) -> None:
    aws.put_object(Bucket=INPUT_BUCKET, Key=GOOD_EVENT["key"], Body=FAKE_DICOM)
    pipeline = FakePipeline(findings=np.full((1, LABEL_COUNT), 2.0, np.float32))
    with pytest.raises(PipelineOutputInvalid):
        run_inference(parse_request(GOOD_EVENT), config(), s3=aws, pipeline=pipeline, labels=finding_labels())
    assert "Contents" not in aws.list_objects_v2(Bucket=RESULTS_BUCKET)


# --- Triton errors through tritonclient --------------------------------------------------------------


def test_pipeline_returns_outputs_and_model_versions(stub_triton: StubTriton) -> None:
    outputs = HttpPipeline(stub_triton.url, timeout_s=5, versions=ComponentVersions(300)).infer(b"image-bytes")
    assert stub_triton.images == [b"image-bytes"]
    assert outputs.findings is not None and outputs.findings.shape == (1, LABEL_COUNT)
    assert outputs.lesion_mask is not None and outputs.lesion_mask.shape == (1, 1, 256, 256)
    assert outputs.model_versions == {
        "radstream_pipeline": "1",
        "study_preprocess": "1",
        "cxr_classifier": "1",
        "lesion_segmenter": "1",
    }


def test_http_400_is_image_rejected_with_tritons_message(stub_triton: StubTriton) -> None:
    message = "in ensemble 'radstream_pipeline', DICOM has no pixel data (element PixelData (7FE0,0010) is missing)"
    stub_triton.script.append(Reply(status=400, error=message))
    with pytest.raises(ImageRejected) as caught:
        HttpPipeline(stub_triton.url, timeout_s=5).infer(b"x")
    assert str(caught.value) == message


def test_http_400_for_an_unknown_model_is_triton_unavailable(stub_triton: StubTriton) -> None:
    stub_triton.script.append(Reply(status=400, error="Request for unknown model: 'radstream_pipeline' is not found"))
    with pytest.raises(TritonUnavailable, match="unknown model"):
        HttpPipeline(stub_triton.url, timeout_s=5).infer(b"x")


@pytest.mark.parametrize("status", [503, 500, 429])
def test_queue_full_and_server_errors_are_triton_unavailable(stub_triton: StubTriton, status: int) -> None:
    stub_triton.script.append(Reply(status=status, error="Exceeds maximum queue size"))
    with pytest.raises(TritonUnavailable, match=f"HTTP {status}: Exceeds maximum queue size"):
        HttpPipeline(stub_triton.url, timeout_s=5).infer(b"x")


def test_connection_refused_is_triton_unavailable() -> None:
    with pytest.raises(TritonUnavailable, match="ConnectionRefusedError"):
        HttpPipeline(f"127.0.0.1:{free_port()}", timeout_s=5).infer(b"x")


def test_an_unanswered_request_times_out_as_triton_unavailable() -> None:
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(TritonUnavailable, match="TimeoutError"):
            HttpPipeline(url, timeout_s=0.5).infer(b"x")


# --- the handler, end to end (moto S3, stub Triton) ---------------------------------------------------


@pytest.fixture
def endpoint_env(monkeypatch: pytest.MonkeyPatch, stub_triton: StubTriton, aws: Any) -> Iterator[Any]:
    set_endpoint_environment(monkeypatch, stub_triton.url)
    handler_module.reset_caches()
    yield aws
    handler_module.reset_caches()


def test_handler_returns_the_summary_and_emits_metrics(
    endpoint_env: Any, stub_triton: StubTriton, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    endpoint_env.put_object(Bucket=INPUT_BUCKET, Key=GOOD_EVENT["key"], Body=FAKE_DICOM)
    result = handler_module.handler(dict(GOOD_EVENT), LambdaContext())
    assert result["status"] == "SUCCEEDED"
    assert [f["label"] for f in result["findings"]] == list(finding_labels())
    assert result["positive_findings"] == [f["label"] for f in result["findings"] if f["probability"] >= 0.5]
    json.dumps(result)  # what the Lambda runtime will serialise
    stdout = capsys.readouterr().out
    metrics = metric_values(stdout)
    assert metrics["InferenceSucceeded"] == 1
    assert metrics["ImageBytes"] == len(FAKE_DICOM)
    assert metrics["PositiveFindings"] == len(result["positive_findings"])
    assert metrics["InferenceLatency"] >= 0
    assert "InferenceFailed" not in metrics
    assert [record.getMessage() for record in caplog.records] == ["inference requested", "inference succeeded"]


@pytest.mark.parametrize(
    ("event", "reply", "error_type"),
    [
        ({"bucket": INPUT_BUCKET, "key": "k"}, None, InputInvalid),
        (GOOD_EVENT, Reply(status=400, error="unrecognised image format"), ImageRejected),
        (GOOD_EVENT, Reply(status=503, error="Exceeds maximum queue size"), TritonUnavailable),
    ],
)
def test_handler_raises_typed_errors_and_counts_them(
    endpoint_env: Any,
    stub_triton: StubTriton,
    capsys: pytest.CaptureFixture[str],
    event: dict[str, Any],
    reply: Reply | None,
    error_type: type[Exception],
) -> None:
    endpoint_env.put_object(Bucket=INPUT_BUCKET, Key=GOOD_EVENT["key"], Body=FAKE_DICOM)
    if reply is not None:
        stub_triton.script.append(reply)
    with pytest.raises(error_type):
        handler_module.handler(dict(event), LambdaContext())
    stdout = capsys.readouterr().out
    metrics = metric_values(stdout)
    assert metrics["InferenceFailed"] == 1
    assert error_type.__name__ not in metrics  # no metric named after an exception class
    (document,) = [d for d in emf_metrics(stdout) if "InferenceFailed" in d]
    assert (document["ErrorType"], document["Stage"]) == (error_type.__name__, "test")
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Stage", "ErrorType"]]


def test_handler_refuses_an_oversized_image_before_calling_triton(
    endpoint_env: Any, stub_triton: StubTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_IMAGE_BYTES", "100")
    handler_module.reset_caches()
    endpoint_env.put_object(Bucket=INPUT_BUCKET, Key=GOOD_EVENT["key"], Body=FAKE_DICOM)
    with pytest.raises(ImageTooLarge):
        handler_module.handler(dict(GOOD_EVENT), LambdaContext())
    assert stub_triton.images == []


def test_handler_reports_a_missing_setting_by_name(endpoint_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESULTS_BUCKET")
    handler_module.reset_caches()
    with pytest.raises(ConfigurationError, match="RESULTS_BUCKET is not set"):
        handler_module.handler(dict(GOOD_EVENT), LambdaContext())


def test_the_function_package_does_not_import_triton_or_the_tests() -> None:
    package = Path(handler_module.__file__).parent
    forbidden = {"triton", "health_check", "radstream_triton", "study_decoder", "tests", "cdk_app"}
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{source.name} imports {name}"
    requirements = (package / "requirements.txt").read_text()
    for pin in ("tritonclient[http]==2.52.0", "numpy==1.26.4", "aws-lambda-powertools[tracer]==3.", "pydantic==2."):
        assert pin in requirements
