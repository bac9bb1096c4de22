"""Configuration from environment variables, with one clear line naming what is wrong.

Every hook reads its settings once per container into a frozen dataclass through these readers;
a missing or malformed variable raises ``ConfigurationError`` (the one typed configuration error
of all hooks) naming the variable.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from typing import Any


class ConfigurationError(Exception):
    """The function's environment is missing or has a malformed setting (a deployment error: no retry)."""


def require(environ: Mapping[str, str], name: str, meaning: str = "") -> str:
    """The non-empty value of ``name``; ``meaning`` says what it should hold."""
    value = environ.get(name, "").strip()
    if not value:
        hint = f" ({meaning})" if meaning else ""
        raise ConfigurationError(f"environment variable {name} is not set{hint}")
    return value


def optional(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name, "").strip()
    return value or default


def optional_or_none(environ: Mapping[str, str], name: str) -> str | None:
    """The non-empty value of ``name``, or None when it is unset or blank."""
    return environ.get(name, "").strip() or None


def seconds(environ: Mapping[str, str], name: str, default: float | None = None) -> float:
    """A positive, finite number of seconds; required when ``default`` is None."""
    raw = environ.get(name, "").strip()
    if not raw:
        if default is None:
            raise ConfigurationError(f"environment variable {name} is not set (a number of seconds)")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"environment variable {name}={raw!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"environment variable {name}={raw!r} must be positive")
    return value


def region(environ: Mapping[str, str]) -> str:
    """The AWS region the function runs in (AWS_REGION, set by the Lambda runtime)."""
    value = optional_or_none(environ, "AWS_REGION") or optional_or_none(environ, "AWS_DEFAULT_REGION")
    if value is None:
        raise ConfigurationError("environment variable AWS_REGION is not set (the Lambda runtime sets it)")
    return value


def positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"environment variable {name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ConfigurationError(f"environment variable {name} must be positive, got {value}")
    return value


def bounded_float(
    environ: Mapping[str, str],
    name: str,
    default: float,
    *,
    low: float,
    high: float,
    low_inclusive: bool = True,
) -> float:
    """A finite float in [low, high] (or (low, high] when ``low_inclusive`` is false)."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"environment variable {name} must be a number, got {raw!r}") from None
    above_low = value >= low if low_inclusive else value > low
    if not math.isfinite(value) or not above_low or value > high:
        bracket = "[" if low_inclusive else "("
        raise ConfigurationError(f"environment variable {name} must lie in {bracket}{low}, {high}], got {raw}")
    return value


def workload_cluster(environ: Mapping[str, str]) -> dict[str, str]:
    """What a hook that reads the workload through the EKS API needs: the cluster and where the workload is."""
    return {
        "cluster_name": require(environ, "CLUSTER_NAME"),
        "cluster_endpoint": require(environ, "CLUSTER_ENDPOINT", "the EKS API endpoint"),
        "cluster_ca": require(environ, "CLUSTER_CA", "the cluster's base64 certificate authority data"),
        "region": region(environ),
        "namespace": require(environ, "NAMESPACE"),
        "deployment_name": require(environ, "DEPLOYMENT_NAME"),
    }


_ssm_lock = threading.Lock()
_ssm_cache: dict[str, str] = {}


def ssm_parameter(name: str, client_factory: Callable[[], Any] | None = None) -> str:
    """The value of SSM parameter ``name`` (decrypted), read once per container and cached."""
    with _ssm_lock:
        if name in _ssm_cache:
            return _ssm_cache[name]
    if client_factory is None:
        import boto3

        client = boto3.client("ssm")
    else:
        client = client_factory()
    try:
        value = str(client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]).strip()
    except client.exceptions.ParameterNotFound:
        raise ConfigurationError(f"SSM parameter {name} does not exist") from None
    if not value:
        raise ConfigurationError(f"SSM parameter {name} is empty")
    with _ssm_lock:
        _ssm_cache[name] = value
    return value


def clear_ssm_cache() -> None:
    with _ssm_lock:
        _ssm_cache.clear()
