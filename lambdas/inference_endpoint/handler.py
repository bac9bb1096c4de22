"""Lambda entry point (``handler.handler``) of the inference endpoint, invoked by the Step Functions
state machine RadStreamInference.

Event: ``{"bucket": str, "key": str, "study_id": str}`` (extra fields ignored).
Returns the small summary built by ``endpoint.run_inference`` (findings, mask summary, model
versions, latency, where the full result lies); the full result and the mask go to
``s3://{RESULTS_BUCKET}/{RESULTS_PREFIX}/{study_id}/`` (result.json, lesion_mask.npz).
Raises (the class name is the Step Functions error name): InputInvalid, ImageTooLarge,
ImageRejected, TritonUnavailable (the only retryable one), PipelineOutputInvalid, ConfigurationError.
Settings: see config.py. Metrics (namespace POWERTOOLS_METRICS_NAMESPACE, default RadStream):
InferenceSucceeded, InferenceLatency, ImageBytes, PositiveFindings, InferenceFailed and one count
named after the error class.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.common.env import ConfigurationError, clear_ssm_cache, ssm_parameter
from lambdas.inference_endpoint.config import EndpointConfig, load_config
from lambdas.inference_endpoint.endpoint import run_inference
from lambdas.inference_endpoint.errors import InferenceEndpointError
from lambdas.inference_endpoint.labels import finding_labels
from lambdas.inference_endpoint.request import parse_request
from lambdas.inference_endpoint.triton_pipeline import HttpPipeline

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "radstream-inference-endpoint")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "RadStream")
tracer = Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "radstream-inference-endpoint")


@cache
def settings() -> EndpointConfig:
    """Read once per container (first invocation), so a bad setting fails that invocation with one line."""
    return load_config(os.environ, ssm_parameter)


@cache
def s3_client() -> Any:
    return boto3.client("s3")


def reset_caches() -> None:
    """For tests: forget the settings, the S3 client and cached SSM values."""
    settings.cache_clear()
    s3_client.cache_clear()
    clear_ssm_cache()


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    try:
        request = parse_request(event)
        logger.append_keys(study_id=request.study_id)
        tracer.put_annotation("study_id", request.study_id)
        logger.info("inference requested", extra={"bucket": request.bucket, "key": request.key})
        config = settings()
        outcome = run_inference(
            request,
            config,
            s3=s3_client(),
            pipeline=HttpPipeline(config.triton_url, config.triton_timeout_seconds),
            labels=finding_labels(),
        )
    except Exception as error:
        name = type(error).__name__
        metrics.add_metric(name="InferenceFailed", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
        if isinstance(error, InferenceEndpointError | ConfigurationError):
            logger.warning("inference failed", extra={"error_type": name, "error": str(error)})
        else:
            logger.exception("inference failed unexpectedly", extra={"error_type": name})
        raise
    metrics.add_metric(name="InferenceSucceeded", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="InferenceLatency", unit=MetricUnit.Milliseconds, value=outcome.latency_ms["inference"])
    metrics.add_metric(name="ImageBytes", unit=MetricUnit.Bytes, value=outcome.image_bytes)
    metrics.add_metric(name="PositiveFindings", unit=MetricUnit.Count, value=outcome.positive_findings)
    logger.info(
        "inference succeeded",
        extra={"positive_findings": outcome.summary["positive_findings"], "latency_ms": outcome.latency_ms},
    )
    return outcome.summary
