"""Calling ``radstream_pipeline`` on Triton over HTTP (tritonclient), with errors mapped to the
endpoint's typed errors:

- HTTP 400 -> ImageRejected, carrying Triton's message (study_preprocess's precise reason), except a
  model that is unknown or not ready (Triton answers 400 for those too) -> TritonUnavailable;
- 429, 5xx (503: queue full), connection refused or reset, timeout, DNS failure -> TritonUnavailable
  (gRPC's UNAVAILABLE, the same full queue, is HTTP 503 on this HTTP client).
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
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
UNKNOWN_VERSION = "unknown"


@dataclass(frozen=True)
class PipelineOutputs:
    findings: NDArray[Any] | None
    lesion_mask: NDArray[Any] | None
    model_versions: dict[str, str]


class Pipeline(Protocol):
    def infer(self, image: bytes, timeout_s: float | None = None) -> PipelineOutputs: ...


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


class ComponentVersions:
    """The versions of the ensemble's component models, cached per container and Triton address for
    ``max_age_s``: one ``get_model_metadata`` per model when the cache is cold or stale, never one per
    request. Each component keeps one version loaded (``version_policy: latest { num_versions: 1 }``)
    and the ensemble calls version -1 (latest), so the loaded version is the one that served. A failed
    metadata call never costs the inference: the last known versions (or "unknown") are reported."""

    def __init__(self, max_age_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age_s = max_age_s
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}
        self.fetches = 0

    def get(self, url: str, timeout_s: float) -> dict[str, str]:
        with self._lock:
            cached = self._cache.get(url)
        if cached is not None and self.clock() - cached[0] < self.max_age_s:
            return dict(cached[1])
        if timeout_s <= 0:
            return dict(cached[1]) if cached else dict.fromkeys(COMPONENT_MODELS, UNKNOWN_VERSION)
        import tritonclient.http as httpclient

        client = None
        try:
            self.fetches += 1
            client = httpclient.InferenceServerClient(url, connection_timeout=timeout_s, network_timeout=timeout_s)
            versions = {
                model: ",".join(sorted(str(v) for v in client.get_model_metadata(model).get("versions", [])))
                for model in COMPONENT_MODELS
            }
        except Exception:
            return dict(cached[1]) if cached else dict.fromkeys(COMPONENT_MODELS, UNKNOWN_VERSION)
        finally:
            if client is not None:
                client.close()
        with self._lock:
            self._cache[url] = (self.clock(), versions)
        return dict(versions)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


class HttpPipeline:
    """One tritonclient HTTP client per invocation (a restarted pod never leaves a stale pool), one
    inference call; the pipeline's version comes from the response, the components' from the cache."""

    def __init__(self, url: str, timeout_s: float, versions: ComponentVersions | None = None) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.versions = versions

    def infer(self, image: bytes, timeout_s: float | None = None) -> PipelineOutputs:
        import tritonclient.http as httpclient

        timeout = self.timeout_s if timeout_s is None else min(self.timeout_s, timeout_s)
        client = None
        started = time.monotonic()
        try:
            client = httpclient.InferenceServerClient(self.url, connection_timeout=timeout, network_timeout=timeout)
            tensor = httpclient.InferInput(PIPELINE_INPUT, [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[image]], dtype=np.object_))
            outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in PIPELINE_OUTPUTS]
            result = client.infer(PIPELINE_MODEL, [tensor], outputs=outputs)
            response = result.get_response()
            findings, mask = result.as_numpy("FINDINGS"), result.as_numpy("LESION_MASK")
        except Exception as error:
            mapped = map_triton_error(error)
            if mapped is error:
                raise
            raise mapped from error
        finally:
            if client is not None:
                client.close()
        versions = {PIPELINE_MODEL: str(response.get("model_version", ""))}
        if self.versions is not None:
            versions.update(self.versions.get(self.url, timeout - (time.monotonic() - started)))
        return PipelineOutputs(findings, mask, versions)
