"""The scale-events Lambda's settings, read once from environment variables.

Required: CLUSTER_NAME, CLUSTER_ENDPOINT, CLUSTER_CA (base64 PEM, EKS certificateAuthority.data),
AWS_REGION (set by the Lambda runtime), NAMESPACE, DEPLOYMENT_NAME, HPA_NAME, METRICS_NAMESPACE,
STAGE (the ``Stage`` dimension of every metric), STATE_TABLE_NAME (the DynamoDB table holding what
was already counted).

Optional: LOOKBACK_SECONDS (default 900: pods and scale-ups older than this are neither counted nor
remembered; keep it above the longest gap between two runs), KUBERNETES_TIMEOUT_SECONDS (per API
call, default 5), SCALE_UP_DEADLINE_SECONDS (default 120, the brief's autoscaling response: a
scale-up not serving this long after its signal is published as unserved), STATE_TTL_SECONDS
(default 7200; at least 3600, the API server's Event TTL), SIGNAL_SERVICE
(``<namespace>/<scheme>:<service>:<port>`` of Prometheus), SIGNAL_QUERY, SIGNAL_TARGET,
SIGNAL_STEP_SECONDS: where the scaling signal is read (all four, or none: then time to scale
starts at the HPA's decision).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from lambdas.common.env import ConfigurationError, optional_or_none, require, seconds, workload_cluster

EVENT_TTL_SECONDS = 3600.0  # kube-apiserver --event-ttl default


@dataclass(frozen=True)
class SignalSettings:
    service: str
    query: str
    target: float
    step_seconds: float


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
    stage: str
    state_table_name: str
    lookback_seconds: float = 900.0
    kubernetes_timeout_seconds: float = 5.0
    scale_up_deadline_seconds: float = 120.0
    state_ttl_seconds: float = 7200.0
    signal: SignalSettings | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ScaleEventsConfig:
        env = os.environ if env is None else env
        lookback = seconds(env, "LOOKBACK_SECONDS", 900.0)
        if lookback < 120:
            raise ConfigurationError(
                f"environment variable LOOKBACK_SECONDS={lookback:g} must be at least 120 (two runs)"
            )
        deadline = seconds(env, "SCALE_UP_DEADLINE_SECONDS", 120.0)
        if deadline >= lookback:
            raise ConfigurationError(
                f"SCALE_UP_DEADLINE_SECONDS={deadline:g} must be below LOOKBACK_SECONDS={lookback:g}: "
                "a scale-up must be flagged before it is forgotten"
            )
        ttl = seconds(env, "STATE_TTL_SECONDS", 7200.0)
        if ttl < max(EVENT_TTL_SECONDS, lookback):
            raise ConfigurationError(
                f"STATE_TTL_SECONDS={ttl:g} must be at least the Event TTL ({EVENT_TTL_SECONDS:g}) and the look-back"
            )
        names = ("SIGNAL_SERVICE", "SIGNAL_QUERY", "SIGNAL_TARGET", "SIGNAL_STEP_SECONDS")
        given = [optional_or_none(env, name) for name in names]
        signal = None
        if any(given):
            if not all(given):
                raise ConfigurationError(f"set all of {', '.join(names)} or none of them")
            signal = SignalSettings(
                service=require(env, "SIGNAL_SERVICE"),
                query=require(env, "SIGNAL_QUERY"),
                target=seconds(env, "SIGNAL_TARGET"),
                step_seconds=seconds(env, "SIGNAL_STEP_SECONDS"),
            )
        return cls(
            **workload_cluster(env),
            hpa_name=require(env, "HPA_NAME"),
            metrics_namespace=require(env, "METRICS_NAMESPACE"),
            stage=require(env, "STAGE"),
            state_table_name=require(env, "STATE_TABLE_NAME"),
            lookback_seconds=lookback,
            kubernetes_timeout_seconds=seconds(env, "KUBERNETES_TIMEOUT_SECONDS", 5.0),
            scale_up_deadline_seconds=deadline,
            state_ttl_seconds=ttl,
            signal=signal,
        )
