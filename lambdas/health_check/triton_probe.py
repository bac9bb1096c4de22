"""The one place that imports the Triton health-check logic of ``triton/health_check.py``.

``lambdas/health_check/triton_health.py`` is a symbolic link to that file (one source, also the
container's HEALTHCHECK): the repository, the tests and the Lambda package (where the staging
copies the file itself) all import it as ``lambdas.health_check.triton_health``.
"""

from __future__ import annotations

from collections.abc import Sequence

from lambdas.health_check import triton_health

__all__ = ["EXPECTED_MODELS", "HealthReport", "check_triton", "known_input_png", "triton_health"]

HealthReport = triton_health.HealthReport
EXPECTED_MODELS: tuple[str, ...] = triton_health.EXPECTED_MODELS


def known_input_png() -> bytes:
    """The deterministic smoke image the container's own health check uses."""
    return triton_health.known_input_png()


def check_triton(
    url: str,
    *,
    protocol: str,
    models: Sequence[str],
    smoke_payload: bytes | None,
    timeout_s: float,
) -> triton_health.HealthReport:
    """Server live and ready, every model READY, then one pipeline inference on ``smoke_payload``
    whose outputs must have the right shapes and lie in [0, 1]; stops at the first failure."""
    return triton_health.check_health(
        url, protocol=protocol, models=tuple(models), smoke_payload=smoke_payload, timeout_s=timeout_s
    )
