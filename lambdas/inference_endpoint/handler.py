"""Lambda entry point (``handler.handler``) of the inference endpoint, invoked by the Step Functions
state machine RadStreamInference.

Event: ``{"study": {"bucket": str, "key": str, "study_id": str}, "execution": str}`` from the state
machine, or the study alone (extra fields ignored).
Returns the small summary built by ``endpoint.run_inference`` (findings, mask summary, model
versions, latency, where the full result lies and its versions); the full result and the mask go to
``s3://{RESULTS_BUCKET}/{RESULTS_PREFIX}/{study_id}/{execution}/`` (result.json, lesion_mask.npz).
Raises (the class name is the Step Functions error name): InputInvalid, ImageTooLarge,
ImageRejected, TritonUnavailable and StorageUnavailable (the retryable ones), PipelineOutputInvalid,
ConfigurationError.
Settings: see config.py. The Triton address is re-read from SSM every TRITON_URL_CACHE_SECONDS, and at
once after a TritonUnavailable (the call is repeated once when the address has changed).
Logs and traces carry a keyed hash of the study id (``study``), never the id or the object key.
Metrics (namespace POWERTOOLS_METRICS_NAMESPACE, default RadStream; dimension Stage): InferenceSucceeded,
InferenceLatency, ImageBytes, PositiveFindings, and InferenceFailed with an ErrorType dimension
(errors.ERROR_TYPES).
"""

from __future__ import annotations

import os
import threading
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.common.env import ConfigurationError
from lambdas.inference_endpoint.config import EndpointConfig, load_config, validate_triton_url
from lambdas.inference_endpoint.endpoint import run_inference
from lambdas.inference_endpoint.errors import InferenceEndpointError, TritonUnavailable, error_type
from lambdas.inference_endpoint.labels import finding_labels
from lambdas.inference_endpoint.privacy import check_key, study_token
from lambdas.inference_endpoint.request import InferenceRequest, parse_request
from lambdas.inference_endpoint.storage import client_config
from lambdas.inference_endpoint.triton_pipeline import ComponentVersions, HttpPipeline, PipelineOutputs

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "radstream-inference-endpoint")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "RadStream")
tracer = Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "radstream-inference-endpoint")

# Kept for the Lambda's own timeout: the deadline handed to run_inference is at most what is left less this.
LAMBDA_MARGIN_SECONDS = 5.0
LOG_KEY_CACHE_SECONDS = 3600


@cache
def settings() -> EndpointConfig:
    """Read once per container (first invocation), so a bad setting fails that invocation with one line."""
    return load_config(os.environ)


@cache
def s3_client() -> Any:
    config = settings()
    return boto3.client(
        "s3",
        config=client_config(config.s3_connect_timeout_seconds, config.s3_read_timeout_seconds, config.s3_max_attempts),
    )


@cache
def ssm_provider() -> parameters.SSMProvider:
    return parameters.SSMProvider()


@cache
def secrets_provider() -> parameters.SecretsProvider:
    return parameters.SecretsProvider()


@cache
def component_versions() -> ComponentVersions:
    return ComponentVersions(settings().model_versions_cache_seconds)


_address_lock = threading.Lock()
_address_stale = False  # set by a TritonUnavailable: the next read goes to SSM whatever the cache's age


def triton_address(config: EndpointConfig, *, force: bool = False) -> str:
    """TRITON_URL, or the SSM parameter's value, cached TRITON_URL_CACHE_SECONDS (the NLB may be replaced)."""
    global _address_stale
    if config.triton_url is not None:
        return config.triton_url
    assert config.triton_url_parameter is not None
    with _address_lock:
        force = force or _address_stale
        _address_stale = False
    name = config.triton_url_parameter
    try:
        value = ssm_provider().get(name, max_age=config.triton_url_cache_seconds, force_fetch=force)
    except parameters.exceptions.GetParameterError as error:
        raise ConfigurationError(f"SSM parameter {name} (TRITON_URL_PARAMETER) cannot be read: {error}") from None
    return validate_triton_url(str(value).strip(), f"SSM parameter {name} (TRITON_URL_PARAMETER)")


def mark_address_stale() -> None:
    global _address_stale
    with _address_lock:
        _address_stale = True


def log_key(config: EndpointConfig) -> bytes:
    try:
        value = secrets_provider().get(config.log_hash_key_secret, max_age=LOG_KEY_CACHE_SECONDS)
    except parameters.exceptions.GetParameterError:
        raise ConfigurationError("the log hash key secret (LOG_HASH_KEY_SECRET) cannot be read") from None
    return check_key(str(value))


def reset_caches() -> None:
    """For tests: forget the settings, the clients, the cached parameters and model versions."""
    global _address_stale
    for cached in (settings, s3_client, ssm_provider, secrets_provider, component_versions):
        cached.cache_clear()
    with _address_lock:
        _address_stale = False


class RefreshingPipeline:
    """The pipeline at the current Triton address; after a TritonUnavailable the address is read again
    from SSM at once, and when it has changed the call is repeated there (once, within the deadline)."""

    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        self.url = triton_address(config)

    def infer(self, image: bytes, timeout_s: float | None = None) -> PipelineOutputs:
        versions = component_versions()
        try:
            return HttpPipeline(self.url, self.config.triton_timeout_seconds, versions).infer(image, timeout_s)
        except TritonUnavailable:
            if self.config.triton_url is not None:
                raise
            fresh = triton_address(self.config, force=True)
            if fresh == self.url:
                raise
            logger.info("Triton address changed; calling the new one")
            self.url = fresh
            return HttpPipeline(fresh, self.config.triton_timeout_seconds, versions).infer(image, timeout_s)


def _redacted(text: str, request: InferenceRequest | None, token: str) -> str:
    """An error message safe to log: the object key and the study id, should a library quote them, replaced."""
    if request is None:
        return text
    return text.replace(request.key, "<key>").replace(request.study_id, f"<study {token}>")


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    request: InferenceRequest | None = None
    token = ""
    try:
        config = settings()
        metrics.set_default_dimensions(Stage=config.stage)
        request = parse_request(event)
        token = study_token(log_key(config), request.study_id)
        logger.append_keys(study=token)
        logger.info("inference requested", extra={"bucket": request.bucket, "execution": request.execution})
        remaining = context.get_remaining_time_in_millis() / 1000.0 - LAMBDA_MARGIN_SECONDS
        outcome = run_inference(
            request,
            config,
            s3=s3_client(),
            pipeline=RefreshingPipeline(config),
            labels=finding_labels(),
            deadline_s=remaining,
        )
    except Exception as error:
        kind = error_type(error)
        if isinstance(error, TritonUnavailable):
            mark_address_stale()
        metrics.add_dimension(name="ErrorType", value=kind)
        metrics.add_metric(name="InferenceFailed", unit=MetricUnit.Count, value=1)
        message = _redacted(str(error), request, token)
        if isinstance(error, InferenceEndpointError | ConfigurationError):
            logger.warning("inference failed", extra={"error_type": kind, "error": message})
        else:
            logger.error(
                "inference failed unexpectedly",
                extra={"error_type": kind, "exception": type(error).__name__, "error": message},
            )
        raise
    metrics.add_metric(name="InferenceSucceeded", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="InferenceLatency", unit=MetricUnit.Milliseconds, value=outcome.latency_ms["inference"])
    metrics.add_metric(name="ImageBytes", unit=MetricUnit.Bytes, value=outcome.image_bytes)
    metrics.add_metric(name="PositiveFindings", unit=MetricUnit.Count, value=outcome.positive_findings)
    logger.info(
        "inference succeeded",
        extra={"positive_findings": outcome.positive_findings, "latency_ms": outcome.latency_ms},
    )
    return outcome.summary
