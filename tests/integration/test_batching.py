"""Dynamic batching really batches concurrent requests (Triton's own statistics)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.integration.pipeline_client import infer_pipeline

pytestmark = pytest.mark.integration


def _counts(client: httpclient.InferenceServerClient, model: str) -> tuple[int, int]:
    (stats,) = client.get_inference_statistics(model)["model_stats"]
    return int(stats["inference_count"]), int(stats["execution_count"])


def _classify(url: str, image: np.ndarray) -> np.ndarray:
    client = httpclient.InferenceServerClient(url, network_timeout=120)
    try:
        tensor = httpclient.InferInput("IMAGE", list(image.shape), "FP32")
        tensor.set_data_from_numpy(image)
        return client.infer("cxr_classifier", [tensor]).as_numpy("PROBABILITIES")
    finally:
        client.close()


def test_concurrent_classifier_requests_are_batched(http_client, triton_server):
    inferences_before, executions_before = _counts(http_client, "cxr_classifier")
    images = np.random.default_rng(7).random((64, 1, 1, 224, 224), dtype=np.float32)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda image: _classify(triton_server.http_url, image), images))
    inferences_after, executions_after = _counts(http_client, "cxr_classifier")
    inferences, executions = inferences_after - inferences_before, executions_after - executions_before

    assert all(result.shape == (1, 14) for result in results)
    assert inferences == 64
    assert executions < inferences, f"{inferences} inferences ran in {executions} executions: no batching"


def test_batched_results_equal_unbatched_results(http_client, triton_server):
    """Batching must not mix requests up: each answer belongs to its own image."""
    images = np.random.default_rng(11).random((12, 1, 1, 224, 224), dtype=np.float32)

    def one(image: np.ndarray) -> np.ndarray:
        return _classify(triton_server.http_url, image)

    with ThreadPoolExecutor(max_workers=12) as pool:
        concurrent = list(pool.map(one, images))
    sequential = [one(image) for image in images]
    for a, b in zip(concurrent, sequential, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_concurrent_pipeline_requests_are_batched_inside_the_ensemble(triton_server, chest_xray_bytes, ct_bytes):
    client = httpclient.InferenceServerClient(triton_server.http_url, network_timeout=120)
    before = {m: _counts(client, m) for m in ("cxr_classifier", "lesion_segmenter")}

    def one(payload: bytes) -> dict[str, np.ndarray]:
        own = httpclient.InferenceServerClient(triton_server.http_url, network_timeout=120)
        try:
            return infer_pipeline(own, payload)
        finally:
            own.close()

    payloads = [ct_bytes] * 24
    with ThreadPoolExecutor(max_workers=8) as pool:
        outputs = list(pool.map(one, payloads))
    after = {m: _counts(client, m) for m in before}
    client.close()
    assert all(o["FINDINGS"].shape == (1, 14) for o in outputs)
    inferences = sum(after[m][0] - before[m][0] for m in before)
    executions = sum(after[m][1] - before[m][1] for m in before)
    assert inferences == 48
    assert executions < inferences
