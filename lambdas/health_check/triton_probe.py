"""The one place that imports the Triton health-check logic of ``triton/health_check.py``.

The Lambda cannot reach ``triton/`` at run time: the CDK app stages that file into the
Lambda package at synth time as the top-level module ``triton_health``. Tests and tools
have ``triton/`` on sys.path and import the same file as ``health_check``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import health_check as triton_health
else:
    try:
        import triton_health
    except ImportError:  # tests and tools: triton/ is on sys.path
        import health_check as triton_health

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
