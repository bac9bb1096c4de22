"""The endpoint's work, free of Lambda and Powertools: read the study, run the pipeline, build the
findings and mask summary, write the full result to S3 and return the small summary."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lambdas.inference_endpoint.config import EndpointConfig
from lambdas.inference_endpoint.errors import InputInvalid, StorageUnavailable
from lambdas.inference_endpoint.findings import build_findings, findings_probabilities, lesion_mask, summarize_mask
from lambdas.inference_endpoint.request import InferenceRequest
from lambdas.inference_endpoint.storage import (
    read_image,
    result_location,
    run_name,
    sniff_format,
    write_mask,
    write_summary,
)
from lambdas.inference_endpoint.triton_pipeline import Pipeline

# Below this, a Triton call cannot finish (p99 ~1 s on a GPU): give the attempt back to Step Functions.
MIN_TRITON_BUDGET_SECONDS = 1.0


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
    clock: Callable[[], float] = time.monotonic,
    deadline_s: float | None = None,
) -> InferenceOutcome:
    """One deadline for the whole invocation (``config.deadline_seconds``, or ``deadline_s`` when the
    Lambda has less time left): the S3 read, then the Triton call with what is left less the time kept
    for the write (never more than ``triton_timeout_seconds``), then the write."""
    if config.allowed_input_buckets and request.bucket not in config.allowed_input_buckets:
        raise InputInvalid("the input bucket is not an input bucket of this endpoint", ("bucket",))
    started = clock()
    deadline = started + (config.deadline_seconds if deadline_s is None else min(deadline_s, config.deadline_seconds))
    study = read_image(s3, request.bucket, request.key, config.max_image_bytes)
    image = study.data
    read_done = clock()
    triton_budget = deadline - read_done - config.s3_phase_budget_seconds
    if triton_budget < MIN_TRITON_BUDGET_SECONDS:
        raise StorageUnavailable(
            f"reading the study took {read_done - started:.1f} s, leaving {triton_budget:.1f} s for Triton"
        )
    outputs = pipeline.infer(image, timeout_s=triton_budget)
    inferred = clock()
    probabilities = findings_probabilities(outputs.findings, len(labels))
    mask = lesion_mask(outputs.lesion_mask)
    findings = build_findings(probabilities, labels, config.finding_threshold)
    mask_summary = summarize_mask(mask, config.mask_threshold)
    run = run_name(request.execution, study)
    location = result_location(config.results_bucket, config.results_prefix, request.study_id, run)
    mask_version = write_mask(s3, location, mask)
    summary: dict[str, Any] = {
        "study_id": request.study_id,
        "status": "SUCCEEDED",
        "run": run,
        "execution": request.execution,
        "image": {
            "bucket": request.bucket,
            "key": request.key,
            "version_id": study.version_id,
            "etag": study.etag,
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
        "result": {**location.to_dict(), "mask_version_id": mask_version},
    }
    # The stored summary carries the latency known before it is written; the returned one adds the write,
    # the total and the summary's own version.
    latency = {"read_image": _ms(read_done - started), "inference": _ms(inferred - read_done)}
    summary["latency_ms"] = dict(latency)
    before_write = clock()
    summary_version = write_summary(s3, location, summary)
    latency["write_results"] = _ms(clock() - before_write)
    latency["total"] = _ms(clock() - started)
    summary = {
        **summary,
        "latency_ms": latency,
        "result": {**summary["result"], "summary_version_id": summary_version},
    }
    return InferenceOutcome(
        summary=summary,
        image_bytes=len(image),
        positive_findings=len(summary["positive_findings"]),
        latency_ms=latency,
    )
