"""Every bad input gets a precise 4xx, the server stays ready, and the next good
request succeeds: one bad study must never cost anyone else their result."""

from __future__ import annotations

import io
import os

import grpc
import numpy as np
import pydicom
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.conftest import dicom_bytes
from tests.integration.pipeline_client import infer_classifier, infer_pipeline

pytestmark = pytest.mark.integration

MAX_ENCODED_BYTES = 33554432  # study_preprocess's max_encoded_bytes parameter


def _without_pixel_data(chest_xray: bytes) -> bytes:
    dataset = pydicom.dcmread(io.BytesIO(chest_xray))
    del dataset.PixelData
    return dicom_bytes(dataset)


def _huge_declared_size(ct: bytes) -> bytes:
    dataset = pydicom.dcmread(io.BytesIO(ct))
    dataset.Rows = 50000
    dataset.Columns = 50000
    return dicom_bytes(dataset)


BAD_STUDIES = {
    "random_bytes": (lambda xray, ct: os.urandom(4096), "unrecognised image format"),
    "truncated_dicom": (lambda xray, ct: xray[: len(xray) // 3], "DICOM pixel data is truncated or unreadable"),
    "dicom_without_pixel_data": (lambda xray, ct: _without_pixel_data(xray), "DICOM has no pixel data"),
    "zero_bytes": (lambda xray, ct: b"", "empty payload: the request carried 0 bytes"),
    "huge_declared_size": (
        lambda xray, ct: _huge_declared_size(ct),
        "declared image size 50000x50000 exceeds the limit of 16384 pixels per side",
    ),
    "over_size_limit": (
        lambda xray, ct: xray + bytes(MAX_ENCODED_BYTES + 1 - len(xray)),
        f"encoded image is {MAX_ENCODED_BYTES + 1} bytes, over the limit of {MAX_ENCODED_BYTES} bytes",
    ),
}


def _assert_still_serving(client: httpclient.InferenceServerClient, good_study: bytes) -> None:
    assert client.is_server_ready()
    assert infer_pipeline(client, good_study)["FINDINGS"].shape == (1, 14)


@pytest.mark.parametrize("case", sorted(BAD_STUDIES))
def test_bad_study_is_rejected_with_400_and_a_precise_message(http_client, chest_xray_bytes, ct_bytes, case):
    make_payload, message = BAD_STUDIES[case]
    with pytest.raises(InferenceServerException) as caught:
        infer_pipeline(http_client, make_payload(chest_xray_bytes, ct_bytes))
    assert caught.value.status() == "400", caught.value
    assert message in caught.value.message()
    _assert_still_serving(http_client, ct_bytes)


def test_bad_study_over_grpc_is_invalid_argument(grpc_client, ct_bytes):
    with pytest.raises(InferenceServerException) as caught:
        infer_pipeline(grpc_client, b"not an image at all")
    assert caught.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert "unrecognised image format" in caught.value.message()
    assert infer_pipeline(grpc_client, ct_bytes)["FINDINGS"].shape == (1, 14)


@pytest.mark.parametrize(
    ("array", "datatype", "message"),
    [
        (
            np.zeros((1, 1, 224, 224), np.float64),
            "FP64",
            "inference input 'IMAGE' data-type is 'FP64', but model 'cxr_classifier' expects 'FP32'",
        ),
        (
            np.zeros((1, 1, 100, 100), np.float32),
            "FP32",
            "unexpected shape for input 'IMAGE' for model 'cxr_classifier'. Expected [-1,1,224,224], got [1,1,100,100]",
        ),
        (
            np.zeros((64, 1, 224, 224), np.float32),
            "FP32",
            "inference request batch-size must be <= 32 for 'cxr_classifier'",
        ),
    ],
    ids=["wrong_dtype", "wrong_shape", "batch_too_large"],
)
def test_wrong_tensor_sent_to_the_classifier_gets_400(http_client, ct_bytes, array, datatype, message):
    with pytest.raises(InferenceServerException) as caught:
        infer_classifier(http_client, array, datatype)
    assert caught.value.status() == "400"
    assert message in caught.value.message()
    _assert_still_serving(http_client, ct_bytes)


def test_one_bad_item_in_a_batch_names_the_item(http_client, ct_bytes):
    tensor = httpclient.InferInput("IMAGE_BYTES", [2, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[ct_bytes], [b"garbage"]], dtype=object))
    with pytest.raises(InferenceServerException) as caught:
        http_client.infer("radstream_pipeline", [tensor])
    assert caught.value.status() == "400"
    assert "batch item 1: unrecognised image format" in caught.value.message()


def test_unknown_model_gets_a_clear_error(http_client):
    with pytest.raises(InferenceServerException) as caught:
        http_client.infer("no_such_model", [])
    assert "no_such_model" in caught.value.message()
