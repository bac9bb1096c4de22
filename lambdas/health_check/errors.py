"""Typed failures of the health-check Lambda; the handler maps each to what the caller sees."""

from __future__ import annotations

from typing import Any


class HealthCheckError(Exception):
    """Base class: every failure the health-check Lambda raises on purpose."""


class InvalidEventError(HealthCheckError):
    """The invocation event has a shape this function does not handle."""


class RolloutFailed(HealthCheckError):
    """The Deployment cannot become healthy (crash-looping pods, progress deadline exceeded)."""


class RolloutTimedOut(HealthCheckError):
    """The rollout did not complete within ROLLOUT_TIMEOUT_SECONDS (or the Lambda's remaining time)."""


class HealthGateFailed(HealthCheckError):
    """The post-deploy gate failed; the message is the report's one-line summary."""

    def __init__(self, summary: str, report: dict[str, Any]) -> None:
        super().__init__(summary)
        self.report = report
