"""The scale-events Lambda's settings, read once from environment variables.

Required: CLUSTER_NAME, CLUSTER_ENDPOINT, CLUSTER_CA (base64 PEM, EKS certificateAuthority.data),
AWS_REGION (set by the Lambda runtime), NAMESPACE, DEPLOYMENT_NAME, HPA_NAME, METRICS_NAMESPACE,
STATE_PARAMETER_NAME (the SSM parameter holding what was already counted).

Optional: LOOKBACK_SECONDS (default 900: events, pods and scale-ups older than this are
neither counted nor remembered; keep it above the longest gap between two runs),
KUBERNETES_TIMEOUT_SECONDS (per API call, default 5).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from lambdas.common.env import ConfigurationError, region, require, seconds


@dataclass(frozen=True)
class ScaleEventsConfig:
    cluster_name: str
    cluster_endpoint: str
    cluster_ca: str
    region: str
    namespace: str
    deployment_name: str
    hpa_name: str
    metrics_namespace: str
    state_parameter_name: str
    lookback_seconds: float = 900.0
    kubernetes_timeout_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ScaleEventsConfig:
        env = os.environ if env is None else env
        lookback = seconds(env, "LOOKBACK_SECONDS", 900.0)
        if lookback < 120:
            raise ConfigurationError(
                f"environment variable LOOKBACK_SECONDS={lookback:g} must be at least 120 (two runs)"
            )
        return cls(
            cluster_name=require(env, "CLUSTER_NAME"),
            cluster_endpoint=require(env, "CLUSTER_ENDPOINT"),
            cluster_ca=require(env, "CLUSTER_CA"),
            region=region(env),
            namespace=require(env, "NAMESPACE"),
            deployment_name=require(env, "DEPLOYMENT_NAME"),
            hpa_name=require(env, "HPA_NAME"),
            metrics_namespace=require(env, "METRICS_NAMESPACE"),
            state_parameter_name=require(env, "STATE_PARAMETER_NAME"),
            lookback_seconds=lookback,
            kubernetes_timeout_seconds=seconds(env, "KUBERNETES_TIMEOUT_SECONDS", 5.0),
        )
