"""The endpoint's work, free of Lambda and Powertools: read the study, run the pipeline, build the
findings and mask summary, write the full result to S3 and return the small summary."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lambdas.inference_endpoint.config import EndpointConfig
from lambdas.inference_endpoint.errors import InputInvalid
from lambdas.inference_endpoint.findings import build_findings, findings_probabilities, lesion_mask, summarize_mask
from lambdas.inference_endpoint.request import InferenceRequest
from lambdas.inference_endpoint.storage import read_image, result_location, sniff_format, write_results
from lambdas.inference_endpoint.triton_pipeline import Pipeline


@dataclass(frozen=True)
class InferenceOutcome:
    summary: dict[str, Any]  # what the Lambda returns to Step Functions (no mask: payloads are capped at 256 KB)
    image_bytes: int
    positive_findings: int
    latency_ms: dict[str, float]


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


def run_inference(
    request: InferenceRequest,
    config: EndpointConfig,
    *,
    s3: Any,
    pipeline: Pipeline,
    labels: Sequence[str],
    clock: Callable[[], float] = time.perf_counter,
) -> InferenceOutcome:
    if config.allowed_input_buckets and request.bucket not in config.allowed_input_buckets:
        raise InputInvalid(f"bucket {request.bucket!r} is not an input bucket of this endpoint", ("bucket",))
    started = clock()
    image = read_image(s3, request.bucket, request.key, config.max_image_bytes)
    read_done = clock()
    outputs = pipeline.infer(image)
    inferred = clock()
    probabilities = findings_probabilities(outputs.findings, len(labels))
    mask = lesion_mask(outputs.lesion_mask)
    findings = build_findings(probabilities, labels, config.finding_threshold)
    mask_summary = summarize_mask(mask, config.mask_threshold)
    location = result_location(config.results_bucket, config.results_prefix, request.study_id)
    summary: dict[str, Any] = {
        "study_id": request.study_id,
        "status": "SUCCEEDED",
        "image": {
            "bucket": request.bucket,
            "key": request.key,
            "bytes": len(image),
            "format": sniff_format(image),
        },
        "finding_threshold": config.finding_threshold,
        "findings": [
            {"label": f.label, "probability": f.probability, "above_threshold": f.above_threshold} for f in findings
        ],
        "positive_findings": [f.label for f in findings if f.above_threshold],
        "mask": mask_summary.to_dict(),
        "model_versions": dict(outputs.model_versions),
        "result": location.to_dict(),
    }
    # The stored summary carries the latency known before the write; the returned one adds the write and total.
    latency = {"read_image": _ms(read_done - started), "inference": _ms(inferred - read_done)}
    summary["latency_ms"] = dict(latency)
    before_write = clock()
    write_results(s3, location, summary, mask)
    latency["write_results"] = _ms(clock() - before_write)
    latency["total"] = _ms(clock() - started)
    summary = {**summary, "latency_ms": latency}
    return InferenceOutcome(
        summary=summary,
        image_bytes=len(image),
        positive_findings=len(summary["positive_findings"]),
        latency_ms=latency,
    )
