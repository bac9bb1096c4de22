"""Calling ``radstream_pipeline`` on Triton over HTTP (tritonclient), with errors mapped to the
endpoint's typed errors:

- HTTP 400 -> ImageRejected, carrying Triton's message (study_preprocess's precise reason), except a
  model that is unknown or not ready (Triton answers 400 for those too) -> TritonUnavailable;
- 429, 5xx (503: queue full), connection refused or reset, timeout, DNS failure -> TritonUnavailable.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from lambdas.inference_endpoint.errors import ImageRejected, TritonUnavailable

PIPELINE_MODEL = "radstream_pipeline"
PIPELINE_INPUT = "IMAGE_BYTES"
PIPELINE_OUTPUTS = ("FINDINGS", "LESION_MASK")
COMPONENT_MODELS = ("study_preprocess", "cxr_classifier", "lesion_segmenter")
# Triton answers 400 "Request for unknown model: ... is not found / has no available versions / is not at
# ready state" while a model is missing or loading: a server-side condition, not a bad image.
_UNKNOWN_MODEL = "request for unknown model"


@dataclass(frozen=True)
class PipelineOutputs:
    findings: NDArray[Any] | None
    lesion_mask: NDArray[Any] | None
    model_versions: dict[str, str]


class Pipeline(Protocol):
    def infer(self, image: bytes) -> PipelineOutputs: ...


def map_triton_error(error: Exception) -> Exception:
    """The typed error for an exception raised by tritonclient, or the error itself if unknown."""
    from tritonclient.utils import InferenceServerException

    original = error
    if isinstance(error, InferenceServerException):
        server_error: Any = error
        status = str(server_error.status() or "")
        message = str(server_error.message() or error)
        if status == "400":
            if _UNKNOWN_MODEL in message.lower():
                return TritonUnavailable(f"Triton cannot serve {PIPELINE_MODEL} now (HTTP 400): {message}")
            return ImageRejected(message)
        if status == "429" or status.startswith("5"):
            return TritonUnavailable(f"Triton answered HTTP {status}: {message}")
        return original  # another 4xx, or raised by the client itself: a bug, not retried
    if isinstance(error, OSError | http.client.HTTPException):
        # ConnectionRefusedError, ConnectionResetError, TimeoutError, socket.gaierror,
        # geventhttpclient's HTTPConnectionClosed...
        return TritonUnavailable(f"Triton unreachable: {type(error).__name__}: {error}".rstrip(": "))
    return error


class HttpPipeline:
    """One tritonclient HTTP client per invocation (a restarted pod never leaves a stale pool)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def infer(self, image: bytes) -> PipelineOutputs:
        import tritonclient.http as httpclient

        client = None
        try:
            client = httpclient.InferenceServerClient(
                self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
            )
            tensor = httpclient.InferInput(PIPELINE_INPUT, [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[image]], dtype=np.object_))
            outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in PIPELINE_OUTPUTS]
            result = client.infer(PIPELINE_MODEL, [tensor], outputs=outputs)
            response = result.get_response()
            versions = {PIPELINE_MODEL: str(response.get("model_version", ""))}
            for model in COMPONENT_MODELS:
                metadata = client.get_model_metadata(model)
                versions[model] = ",".join(sorted(str(v) for v in metadata.get("versions", [])))
            return PipelineOutputs(result.as_numpy("FINDINGS"), result.as_numpy("LESION_MASK"), versions)
        except Exception as error:
            mapped = map_triton_error(error)
            if mapped is error:
                raise
            raise mapped from error
        finally:
            if client is not None:
                client.close()
