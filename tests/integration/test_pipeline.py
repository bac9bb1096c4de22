"""The pipeline on real radiology images, on the real Triton server."""

from __future__ import annotations

import numpy as np
import pytest

from tests.integration.pipeline_client import infer_pipeline

pytestmark = pytest.mark.integration

MODELS = ("study_preprocess", "cxr_classifier", "lesion_segmenter", "radstream_pipeline")


def test_server_and_every_model_are_ready(http_client):
    assert http_client.is_server_live()
    assert http_client.is_server_ready()
    index = {
        entry["name"]: entry["state"]
        for entry in http_client.get_model_repository_index(headers={"admin-key": "test-admin-key"})
    }
    assert index == dict.fromkeys(MODELS, "READY")
    for model in MODELS:
        assert http_client.is_model_ready(model)


@pytest.mark.parametrize("image", ["chest_xray_bytes", "ct_bytes", "png_bytes", "jpeg_bytes"])
def test_pipeline_returns_findings_and_mask(http_client, image, request):
    outputs = infer_pipeline(http_client, request.getfixturevalue(image))
    findings, mask = outputs["FINDINGS"], outputs["LESION_MASK"]
    assert findings.shape == (1, 14) and findings.dtype == np.float32
    assert mask.shape == (1, 1, 256, 256) and mask.dtype == np.float32
    assert findings.min() >= 0.0 and findings.max() <= 1.0
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    assert findings.std() > 0, "fourteen identical probabilities mean the classifier saw nothing"


def test_same_input_gives_the_same_output(http_client, chest_xray_bytes):
    first = infer_pipeline(http_client, chest_xray_bytes)
    second = infer_pipeline(http_client, chest_xray_bytes)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])


def test_different_studies_give_different_findings(http_client, chest_xray_bytes, ct_bytes):
    xray = infer_pipeline(http_client, chest_xray_bytes)["FINDINGS"]
    ct = infer_pipeline(http_client, ct_bytes)["FINDINGS"]
    assert not np.allclose(xray, ct)


def test_http_and_grpc_agree(http_client, grpc_client, chest_xray_bytes):
    over_http = infer_pipeline(http_client, chest_xray_bytes)
    over_grpc = infer_pipeline(grpc_client, chest_xray_bytes)
    for name in over_http:
        np.testing.assert_array_equal(over_http[name], over_grpc[name])


def test_pipeline_matches_the_onnx_networks_run_directly(http_client, chest_xray_bytes):
    """The served pipeline computes exactly preprocessing + the two ONNX networks."""
    import onnxruntime

    from study_decoder import prepare_study
    from tests.conftest import MODEL_REPOSITORY

    study = prepare_study(chest_xray_bytes)
    classifier = onnxruntime.InferenceSession(str(MODEL_REPOSITORY / "cxr_classifier/1/model.onnx"))
    segmenter = onnxruntime.InferenceSession(str(MODEL_REPOSITORY / "lesion_segmenter/1/model.onnx"))
    expected_findings = classifier.run(None, {"IMAGE": study.cxr_image[np.newaxis]})[0]
    expected_mask = segmenter.run(None, {"IMAGE": study.seg_image[np.newaxis]})[0]
    served = infer_pipeline(http_client, chest_xray_bytes)
    np.testing.assert_allclose(served["FINDINGS"], expected_findings, atol=1e-5)
    np.testing.assert_allclose(served["LESION_MASK"], expected_mask, atol=1e-5)


@pytest.fixture(scope="module")
def networks():
    import onnxruntime

    from tests.conftest import MODEL_REPOSITORY

    return {
        name: onnxruntime.InferenceSession(str(MODEL_REPOSITORY / name / "1" / "model.onnx"))
        for name in ("cxr_classifier", "lesion_segmenter")
    }


@pytest.mark.parametrize("image", ["chest_xray_bytes", "chest_xray_j2k_bytes", "ct_bytes", "png_bytes", "jpeg_bytes"])
def test_served_findings_match_the_reference_path_within_0_01(http_client, networks, image, request):
    """The server runs the fast path; its findings stay within 0.01 of the full-resolution reference."""
    from study_decoder import REFERENCE, prepare_study

    payload = request.getfixturevalue(image)
    reference = prepare_study(payload, path=REFERENCE)
    expected = networks["cxr_classifier"].run(None, {"IMAGE": reference.cxr_image[np.newaxis]})[0]
    served = infer_pipeline(http_client, payload)["FINDINGS"]
    assert np.abs(served - expected).max() <= 0.01
