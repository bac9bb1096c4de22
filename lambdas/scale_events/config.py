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

from .errors import ConfigError


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"environment variable {name} is missing or empty")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise ConfigError(f"environment variable {name}={raw!r} must be positive")
    return value


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
        lookback = _seconds(env, "LOOKBACK_SECONDS", 900.0)
        if lookback < 120:
            raise ConfigError(f"environment variable LOOKBACK_SECONDS={lookback:g} must be at least 120 (two runs)")
        region = env.get("AWS_REGION", "").strip() or env.get("AWS_DEFAULT_REGION", "").strip()
        return cls(
            cluster_name=_required(env, "CLUSTER_NAME"),
            cluster_endpoint=_required(env, "CLUSTER_ENDPOINT"),
            cluster_ca=_required(env, "CLUSTER_CA"),
            region=region or _required(env, "AWS_REGION"),
            namespace=_required(env, "NAMESPACE"),
            deployment_name=_required(env, "DEPLOYMENT_NAME"),
            hpa_name=_required(env, "HPA_NAME"),
            metrics_namespace=_required(env, "METRICS_NAMESPACE"),
            state_parameter_name=_required(env, "STATE_PARAMETER_NAME"),
            lookback_seconds=lookback,
            kubernetes_timeout_seconds=_seconds(env, "KUBERNETES_TIMEOUT_SECONDS", 5.0),
        )
