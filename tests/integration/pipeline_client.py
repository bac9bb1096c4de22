"""Small helpers to call the pipeline with tritonclient over HTTP or gRPC."""

from __future__ import annotations

from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

OUTPUTS = ("FINDINGS", "LESION_MASK")


def infer_pipeline(client: Any, payload: bytes) -> dict[str, np.ndarray]:
    module = grpcclient if isinstance(client, grpcclient.InferenceServerClient) else httpclient
    tensor = module.InferInput("IMAGE_BYTES", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[payload]], dtype=object))
    result = client.infer("radstream_pipeline", [tensor], outputs=[module.InferRequestedOutput(n) for n in OUTPUTS])
    return {name: result.as_numpy(name) for name in OUTPUTS}


def infer_classifier(client: Any, array: np.ndarray, datatype: str = "FP32") -> np.ndarray:
    module = grpcclient if isinstance(client, grpcclient.InferenceServerClient) else httpclient
    tensor = module.InferInput("IMAGE", list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return client.infer("cxr_classifier", [tensor]).as_numpy("PROBABILITIES")
