"""The endpoint's settings, read once per container from the environment into a frozen dataclass.

| variable | default | meaning |
|---|---|---|
| TRITON_URL | (or TRITON_URL_PARAMETER) | Triton's HTTP address, ``host:port`` without a scheme |
| TRITON_URL_PARAMETER | | SSM parameter holding TRITON_URL; used only when TRITON_URL is absent |
| TRITON_URL_CACHE_SECONDS | 60 | the SSM value is re-read after this long, and at once after TritonUnavailable |
| RESULTS_BUCKET | required | bucket the results are written to |
| RESULTS_PREFIX | ``results`` | results go under ``{RESULTS_PREFIX}/{study_id}/{run}/`` (run: the execution) |
| LOG_HASH_KEY_SECRET | required | Secrets Manager secret holding the key of the study id's hash in logs |
| STAGE | ``unknown`` | the ``Stage`` dimension of the metrics |
| INFERENCE_DEADLINE_SECONDS | 90 | the invocation's deadline: S3 read + Triton + S3 write |
| S3_PHASE_BUDGET_SECONDS | 30 | the time kept for the S3 write (and the longest the read may take) |
| S3_CONNECT_TIMEOUT_SECONDS, S3_READ_TIMEOUT_SECONDS, S3_MAX_ATTEMPTS | 1, 3, 3 | the S3 client (adaptive retries) |
| MODEL_VERSIONS_CACHE_SECONDS | 300 | the component models' versions are cached this long per container |
| MAX_IMAGE_BYTES | 33554432 (32 MiB) | size cap, study_preprocess's ``max_encoded_bytes`` |
| FINDING_THRESHOLD | 0.5 | a finding is flagged when its probability is at or above this |
| MASK_THRESHOLD | 0.5 | mask pixels at or above this count as lesion in the mask summary |
| TRITON_TIMEOUT_SECONDS | 30 | the most the one inference call to Triton may take (less when the deadline is nearer) |
| ALLOWED_INPUT_BUCKETS | (any) | optional comma-separated allow-list of input buckets (IAM scopes it too) |
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from lambdas.common.env import ConfigurationError, bounded_float, optional, positive_int, require, seconds

MAX_ENCODED_BYTES = 32 * 1024 * 1024  # triton/model_repository/study_preprocess/config.pbtxt max_encoded_bytes
_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(?P<port>\d{1,5})$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class EndpointConfig:
    triton_url: str | None  # fixed address (TRITON_URL), or None: read from triton_url_parameter
    results_bucket: str
    triton_url_parameter: str | None = None
    triton_url_cache_seconds: int = 60
    results_prefix: str = "results"
    max_image_bytes: int = MAX_ENCODED_BYTES
    finding_threshold: float = 0.5
    mask_threshold: float = 0.5
    triton_timeout_seconds: float = 30.0
    allowed_input_buckets: frozenset[str] = frozenset()
    log_hash_key_secret: str = ""
    stage: str = "unknown"
    deadline_seconds: float = 90.0
    s3_phase_budget_seconds: float = 30.0
    s3_connect_timeout_seconds: float = 1.0
    s3_read_timeout_seconds: float = 3.0
    s3_max_attempts: int = 3
    model_versions_cache_seconds: int = 300


def validate_triton_url(value: str, source: str) -> str:
    if "://" in value:
        raise ConfigurationError(f"{source} must be host:port without a scheme, got {value!r}")
    match = _HOST_PORT.match(value)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ConfigurationError(f"{source} must be host:port (for example triton.internal:8000), got {value!r}")
    return value


def _bucket(value: str, source: str) -> str:
    if not _BUCKET.match(value):
        raise ConfigurationError(f"{source} is not a valid S3 bucket name: {value!r}")
    return value


def load_config(environ: Mapping[str, str]) -> EndpointConfig:
    """Read and check every setting (the Triton address itself, when in SSM, is read per invocation
    through ``TritonAddress``: it changes when the load balancer is replaced)."""
    triton_url: str | None = None
    parameter: str | None = None
    if environ.get("TRITON_URL", "").strip():
        triton_url = validate_triton_url(environ["TRITON_URL"].strip(), "TRITON_URL")
    elif environ.get("TRITON_URL_PARAMETER", "").strip():
        parameter = environ["TRITON_URL_PARAMETER"].strip()
    else:
        raise ConfigurationError(
            "environment variable TRITON_URL is not set (host:port of Triton's HTTP endpoint), "
            "and neither is TRITON_URL_PARAMETER (the SSM parameter holding it)"
        )
    results_bucket = _bucket(require(environ, "RESULTS_BUCKET", "bucket for inference results"), "RESULTS_BUCKET")
    results_prefix = optional(environ, "RESULTS_PREFIX", "results").strip("/")
    if not results_prefix:
        raise ConfigurationError("environment variable RESULTS_PREFIX must not be only slashes")
    allowed = frozenset(
        _bucket(name.strip(), "ALLOWED_INPUT_BUCKETS")
        for name in environ.get("ALLOWED_INPUT_BUCKETS", "").split(",")
        if name.strip()
    )
    deadline = seconds(environ, "INFERENCE_DEADLINE_SECONDS", 90.0)
    phase = seconds(environ, "S3_PHASE_BUDGET_SECONDS", 30.0)
    if phase >= deadline:
        raise ConfigurationError(
            f"S3_PHASE_BUDGET_SECONDS={phase:g} must be under INFERENCE_DEADLINE_SECONDS={deadline:g}"
        )
    return EndpointConfig(
        triton_url=triton_url,
        triton_url_parameter=parameter,
        triton_url_cache_seconds=positive_int(environ, "TRITON_URL_CACHE_SECONDS", 60),
        results_bucket=results_bucket,
        log_hash_key_secret=require(
            environ, "LOG_HASH_KEY_SECRET", "Secrets Manager secret with the key of the study id's hash in logs"
        ),
        stage=optional(environ, "STAGE", "unknown"),
        deadline_seconds=deadline,
        s3_phase_budget_seconds=phase,
        s3_connect_timeout_seconds=seconds(environ, "S3_CONNECT_TIMEOUT_SECONDS", 1.0),
        s3_read_timeout_seconds=seconds(environ, "S3_READ_TIMEOUT_SECONDS", 3.0),
        s3_max_attempts=positive_int(environ, "S3_MAX_ATTEMPTS", 3),
        model_versions_cache_seconds=positive_int(environ, "MODEL_VERSIONS_CACHE_SECONDS", 300),
        results_prefix=results_prefix,
        max_image_bytes=positive_int(environ, "MAX_IMAGE_BYTES", MAX_ENCODED_BYTES),
        finding_threshold=bounded_float(environ, "FINDING_THRESHOLD", 0.5, low=0.0, high=1.0),
        mask_threshold=bounded_float(environ, "MASK_THRESHOLD", 0.5, low=0.0, high=1.0),
        triton_timeout_seconds=bounded_float(
            environ, "TRITON_TIMEOUT_SECONDS", 30.0, low=0.0, high=900.0, low_inclusive=False
        ),
        allowed_input_buckets=allowed,
    )
