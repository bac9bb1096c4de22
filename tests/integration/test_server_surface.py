"""What the hardened start-up exposes: admin APIs behind a key, and the metrics
that autoscaling and alarms are built on."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import ADMIN_KEY
from tests.integration.pipeline_client import infer_pipeline

pytestmark = pytest.mark.integration

ADMIN_CALLS = [
    ("POST", "/v2/repository/index"),
    ("POST", "/v2/repository/models/cxr_classifier/unload"),
    ("GET", "/v2/models/cxr_classifier/config"),
    ("GET", "/v2/systemsharedmemory/status"),
    ("GET", "/v2/trace/setting"),
    ("GET", "/v2/logging"),
]


def _call(url: str, method: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(
        url, method=method, headers=headers or {}, data=b"{}" if method == "POST" else None
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.parametrize(("method", "path"), ADMIN_CALLS)
def test_admin_apis_answer_403_without_the_key(triton_server, method, path):
    status, body = _call(f"http://{triton_server.http_url}{path}", method)
    assert status == 403
    assert "This API is restricted, expecting header 'admin-key'" in body


def test_admin_api_works_with_the_key_and_inference_apis_stay_open(triton_server, http_client):
    status, body = _call(f"http://{triton_server.http_url}/v2/repository/index", "POST", {"admin-key": ADMIN_KEY})
    assert status == 200 and "radstream_pipeline" in body
    assert _call(f"http://{triton_server.http_url}/v2/health/ready", "GET")[0] == 200
    assert _call(f"http://{triton_server.http_url}/v2/models/radstream_pipeline", "GET")[0] == 200


def test_admin_grpc_calls_need_the_key(grpc_client):
    from tritonclient.utils import InferenceServerException

    # Triton prefixes the gRPC metadata key with "triton-grpc-protocol-".
    with pytest.raises(InferenceServerException, match="expecting header 'triton-grpc-protocol-admin-key'"):
        grpc_client.get_model_config("cxr_classifier")
    config = grpc_client.get_model_config("cxr_classifier", headers={"triton-grpc-protocol-admin-key": ADMIN_KEY})
    assert config.config.max_batch_size == 32


def _samples(metrics_url: str) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "model" in sample.labels:
                # Counters are keyed by family name (Triton's name, without the parser's "_total").
                values[(family.name, sample.labels["model"])] = sample.value
    return values


def test_metrics_expose_per_model_success_and_queue_and_compute_durations(triton_server, http_client, ct_bytes):
    before = _samples(triton_server.metrics_url)
    infer_pipeline(http_client, ct_bytes)
    after = _samples(triton_server.metrics_url)
    for model in ("radstream_pipeline", "study_preprocess", "cxr_classifier", "lesion_segmenter"):
        for counter in (
            "nv_inference_request_success",
            "nv_inference_queue_duration_us",
            "nv_inference_compute_infer_duration_us",
            "nv_inference_request_duration_us",
        ):
            assert (counter, model) in after, f"{counter} missing for {model}"
        assert (
            after[("nv_inference_request_success", model)] == before.get(("nv_inference_request_success", model), 0) + 1
        )
    assert (
        after[("nv_inference_compute_infer_duration_us", "lesion_segmenter")]
        > before[("nv_inference_compute_infer_duration_us", "lesion_segmenter")]
    )
