"""The health-check Lambda's settings, read once from environment variables.

Required: CLUSTER_NAME, CLUSTER_ENDPOINT, CLUSTER_CA (base64 PEM, EKS certificateAuthority.data),
AWS_REGION (set by the Lambda runtime), NAMESPACE, DEPLOYMENT_NAME, TRITON_URL or
TRITON_URL_PARAMETER (an SSM parameter holding host:port), ROLLOUT_TIMEOUT_SECONDS, METRICS_NAMESPACE, STAGE.

Optional: TRITON_PROTOCOL (http|grpc, default http), TRITON_TIMEOUT_SECONDS (per Triton call,
default 10), EXPECTED_MODELS (comma-separated, default: the repository's four models),
SMOKE_IMAGE_PATH (a DICOM/PNG/JPEG file for the smoke inference, default: the built-in PNG),
ROLLOUT_POLL_SECONDS (default 5), KUBERNETES_TIMEOUT_SECONDS (per API call, default 10),
TRITON_URL_CACHE_SECONDS (how long the SSM value is cached in a warm Lambda, default 60),
TRITON_DEADLINE_SECONDS (the gate retries the Triton checks until this long after the rollout, default 90),
TRITON_RETRY_SECONDS (between those attempts, default 5), CRASH_RESTARTS and BACKOFF_POLLS (a container is
broken after that many restarts or consecutive polls in back-off, default 3 each), REQUIRE_TARGET_HEALTH
(true|false, default true: pods must be healthy NLB targets), HEALTH_CHECK_MODE (gate|canary: what this
function runs, whatever the event), and the release the gate checks (GATE_IMAGE_URI,
GATE_MODEL_REPOSITORY_HASH, GATE_WORKLOAD_HASH: reported, and what makes the CDK Trigger run again).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from lambdas.common.env import (
    ConfigurationError,
    optional_or_none,
    positive_int,
    require,
    seconds,
    workload_cluster,
)

PROTOCOLS = ("http", "grpc")
MODES = ("gate", "canary")
RELEASE_VARIABLES = ("GATE_IMAGE_URI", "GATE_MODEL_REPOSITORY_HASH", "GATE_WORKLOAD_HASH")


@dataclass(frozen=True)
class HealthCheckConfig:
    cluster_name: str
    cluster_endpoint: str
    cluster_ca: str
    region: str
    namespace: str
    deployment_name: str
    triton_url: str | None
    triton_url_parameter: str | None
    rollout_timeout_seconds: float
    metrics_namespace: str
    # The Stage dimension of every metric (dev and prod may share an account).
    stage: str
    triton_protocol: str = "http"
    triton_timeout_seconds: float = 10.0
    # Empty: the models triton/health_check.py expects.
    expected_models: tuple[str, ...] = ()
    smoke_image_path: str | None = None
    rollout_poll_seconds: float = 5.0
    kubernetes_timeout_seconds: float = 10.0
    triton_url_cache_seconds: float = 60.0
    triton_deadline_seconds: float = 90.0
    triton_retry_seconds: float = 5.0
    crash_restarts: int = 3
    backoff_polls: int = 3
    require_target_health: bool = True
    mode: str | None = None
    release: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HealthCheckConfig:
        env = os.environ if env is None else env
        triton_url = optional_or_none(env, "TRITON_URL")
        triton_url_parameter = optional_or_none(env, "TRITON_URL_PARAMETER")
        if triton_url is None and triton_url_parameter is None:
            raise ConfigurationError("environment variable TRITON_URL or TRITON_URL_PARAMETER must be set")
        protocol = (optional_or_none(env, "TRITON_PROTOCOL") or "http").lower()
        if protocol not in PROTOCOLS:
            choices = ", ".join(PROTOCOLS)
            raise ConfigurationError(f"environment variable TRITON_PROTOCOL={protocol!r} must be one of {choices}")
        mode = optional_or_none(env, "HEALTH_CHECK_MODE")
        if mode is not None and mode not in MODES:
            raise ConfigurationError(
                f"environment variable HEALTH_CHECK_MODE={mode!r} must be one of {', '.join(MODES)}"
            )
        target_health = (optional_or_none(env, "REQUIRE_TARGET_HEALTH") or "true").lower()
        if target_health not in ("true", "false"):
            raise ConfigurationError(
                f"environment variable REQUIRE_TARGET_HEALTH={target_health!r} must be true or false"
            )
        release = tuple((name, value) for name in RELEASE_VARIABLES if (value := optional_or_none(env, name)))
        models = tuple(m.strip() for m in (optional_or_none(env, "EXPECTED_MODELS") or "").split(",") if m.strip())
        return cls(
            **workload_cluster(env),
            triton_url=triton_url,
            triton_url_parameter=triton_url_parameter,
            rollout_timeout_seconds=seconds(env, "ROLLOUT_TIMEOUT_SECONDS"),
            metrics_namespace=require(env, "METRICS_NAMESPACE"),
            stage=require(env, "STAGE"),
            triton_protocol=protocol,
            triton_timeout_seconds=seconds(env, "TRITON_TIMEOUT_SECONDS", 10.0),
            expected_models=models,
            smoke_image_path=optional_or_none(env, "SMOKE_IMAGE_PATH"),
            rollout_poll_seconds=seconds(env, "ROLLOUT_POLL_SECONDS", 5.0),
            kubernetes_timeout_seconds=seconds(env, "KUBERNETES_TIMEOUT_SECONDS", 10.0),
            triton_url_cache_seconds=seconds(env, "TRITON_URL_CACHE_SECONDS", 60.0),
            triton_deadline_seconds=seconds(env, "TRITON_DEADLINE_SECONDS", 90.0),
            triton_retry_seconds=seconds(env, "TRITON_RETRY_SECONDS", 5.0),
            crash_restarts=positive_int(env, "CRASH_RESTARTS", 3),
            backoff_polls=positive_int(env, "BACKOFF_POLLS", 3),
            require_target_health=target_health == "true",
            mode=mode,
            release=release,
        )
