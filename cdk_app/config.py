"""The one source of truth for names, ports and sizes, per stage.

Frozen dataclasses: constructs and the Kubernetes manifests read from here and
nowhere else. ``load_config(stage)`` returns a stage's configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class ConfigError(ValueError):
    """A configuration that cannot work; the message names the field."""


@dataclass(frozen=True)
class TritonServiceConfig:
    namespace: str = "radstream"
    deployment_name: str = "triton-inference-server"
    service_name: str = "triton-inference-service"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    ready_path: str = "/v2/health/ready"
    live_path: str = "/v2/health/live"

    @property
    def in_cluster_address(self) -> str:
        """The address Step Functions' callers use inside the cluster."""
        return f"{self.service_name}.{self.namespace}.svc.cluster.local:{self.http_port}"


@dataclass(frozen=True)
class PlatformConfig:
    stage: str
    region: str = "us-east-1"
    account: str | None = None
    cluster_name: str = "radstream-cluster"
    ecr_repository_name: str = "radstream-triton"
    triton: TritonServiceConfig = field(default_factory=TritonServiceConfig)

    @property
    def stack_name(self) -> str:
        return f"RadStream-{self.stage}"


STAGES: dict[str, PlatformConfig] = {
    "dev": PlatformConfig(stage="dev"),
    "prod": PlatformConfig(stage="prod"),
}


def load_config(stage: str) -> PlatformConfig:
    try:
        return STAGES[stage]
    except KeyError:
        raise ConfigError(f"stage={stage!r} is unknown; choose one of {', '.join(sorted(STAGES))}") from None
