"""The endpoint's settings, read once per container from the environment into a frozen dataclass.

| variable | default | meaning |
|---|---|---|
| TRITON_URL | (or TRITON_URL_PARAMETER) | Triton's HTTP address, ``host:port`` without a scheme |
| TRITON_URL_PARAMETER | | SSM parameter holding TRITON_URL; read (cached) only when TRITON_URL is absent |
| RESULTS_BUCKET | required | bucket the results are written to |
| RESULTS_PREFIX | ``results`` | results go under ``{RESULTS_PREFIX}/{study_id}/`` |
| MAX_IMAGE_BYTES | 33554432 (32 MiB) | size cap, study_preprocess's ``max_encoded_bytes`` |
| FINDING_THRESHOLD | 0.5 | a finding is flagged when its probability is at or above this |
| MASK_THRESHOLD | 0.5 | mask pixels at or above this count as lesion in the mask summary |
| TRITON_TIMEOUT_SECONDS | 30 | connect and network timeout of each call to Triton |
| ALLOWED_INPUT_BUCKETS | (any) | optional comma-separated allow-list of input buckets (IAM scopes it too) |
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lambdas.common.env import ConfigurationError, bounded_float, optional, positive_int, require

MAX_ENCODED_BYTES = 32 * 1024 * 1024  # triton/model_repository/study_preprocess/config.pbtxt max_encoded_bytes
_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(?P<port>\d{1,5})$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class EndpointConfig:
    triton_url: str
    results_bucket: str
    results_prefix: str = "results"
    max_image_bytes: int = MAX_ENCODED_BYTES
    finding_threshold: float = 0.5
    mask_threshold: float = 0.5
    triton_timeout_seconds: float = 30.0
    allowed_input_buckets: frozenset[str] = frozenset()


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


def load_config(environ: Mapping[str, str], ssm_parameter: Callable[[str], str]) -> EndpointConfig:
    """Read and check every setting; ``ssm_parameter`` fetches TRITON_URL_PARAMETER's value."""
    if environ.get("TRITON_URL", "").strip():
        triton_url = validate_triton_url(environ["TRITON_URL"].strip(), "TRITON_URL")
    elif environ.get("TRITON_URL_PARAMETER", "").strip():
        name = environ["TRITON_URL_PARAMETER"].strip()
        triton_url = validate_triton_url(ssm_parameter(name), f"SSM parameter {name} (TRITON_URL_PARAMETER)")
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
    return EndpointConfig(
        triton_url=triton_url,
        results_bucket=results_bucket,
        results_prefix=results_prefix,
        max_image_bytes=positive_int(environ, "MAX_IMAGE_BYTES", MAX_ENCODED_BYTES),
        finding_threshold=bounded_float(environ, "FINDING_THRESHOLD", 0.5, low=0.0, high=1.0),
        mask_threshold=bounded_float(environ, "MASK_THRESHOLD", 0.5, low=0.0, high=1.0),
        triton_timeout_seconds=bounded_float(
            environ, "TRITON_TIMEOUT_SECONDS", 30.0, low=0.0, high=900.0, low_inclusive=False
        ),
        allowed_input_buckets=allowed,
    )
