#!/usr/bin/env python3
"""RadStream Triton health check: importable module and command line.

Checks, in order, stopping at the first failure: server live, server ready,
every expected model READY and, with ``--smoke``, one inference of the pipeline
on a known input whose outputs must have the right shapes and value ranges.

Used by the container's HEALTHCHECK, the post-deploy Lambda and operators::

    python3 health_check.py --url localhost:8000 --smoke --json

Exit status 0 when healthy, 1 otherwise; the last line says what failed.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

EXPECTED_MODELS: tuple[str, ...] = ("study_preprocess", "cxr_classifier", "lesion_segmenter", "radstream_pipeline")
PIPELINE_MODEL = "radstream_pipeline"
PIPELINE_INPUT = "IMAGE_BYTES"
# Output name -> shape of one batch item.
PIPELINE_OUTPUTS: dict[str, tuple[int, ...]] = {"FINDINGS": (14,), "LESION_MASK": (1, 256, 256)}


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    elapsed_ms: float


@dataclass
class HealthReport:
    url: str
    protocol: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    @property
    def failure(self) -> CheckResult | None:
        return next((check for check in self.checks if not check.ok), None)

    def summary(self) -> str:
        failed = self.failure
        if failed is None:
            names = ", ".join(check.name for check in self.checks)
            return f"HEALTHY {self.url}: {names}"
        return f"UNHEALTHY {self.url}: {failed.name}: {failed.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "url": self.url,
            "protocol": self.protocol,
            "summary": self.summary(),
            "checks": [asdict(check) for check in self.checks],
        }


class CheckFailed(Exception):
    """Raised inside a check with the one-line reason."""


def known_input_png(side: int = 256) -> bytes:
    """A deterministic 8-bit greyscale PNG (a radial gradient), built with the
    standard library so callers without Pillow (the Lambda) can use it."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    radius = np.hypot(x - side / 2, y - side / 2) / (side / 2)
    pixels = (np.clip(1.0 - radius, 0.0, 1.0) * 255).astype(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def validate_pipeline_outputs(outputs: dict[str, NDArray[Any] | None], batch: int = 1) -> str:
    """Shapes and ranges a correct pipeline must produce; raises CheckFailed."""
    summary = []
    for name, item_shape in PIPELINE_OUTPUTS.items():
        array = outputs.get(name)
        if array is None:
            raise CheckFailed(f"output {name} missing")
        expected = (batch, *item_shape)
        if tuple(array.shape) != expected:
            raise CheckFailed(f"output {name} has shape {list(array.shape)}, expected {list(expected)}")
        if array.dtype != np.float32:
            raise CheckFailed(f"output {name} has dtype {array.dtype}, expected float32")
        if not np.all(np.isfinite(array)):
            raise CheckFailed(f"output {name} contains NaN or infinity")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise CheckFailed(f"output {name} spans [{low:.4f}, {high:.4f}], outside [0, 1]")
        summary.append(f"{name}{list(array.shape)} in [{low:.3f}, {high:.3f}]")
    return "; ".join(summary)


class TritonProbe:
    """The few calls a health check needs, over HTTP or gRPC (tritonclient)."""

    def __init__(self, url: str, protocol: str, timeout_s: float) -> None:
        self.protocol = protocol
        self.timeout_s = timeout_s
        if protocol == "http":
            import tritonclient.http as client_module

            self.client: Any = client_module.InferenceServerClient(
                url, connection_timeout=timeout_s, network_timeout=timeout_s
            )
        elif protocol == "grpc":
            import tritonclient.grpc as client_module

            self.client = client_module.InferenceServerClient(url)
        else:
            raise ValueError(f"protocol must be http or grpc, not {protocol!r}")
        self.module = client_module

    def _timeout(self) -> dict[str, Any]:
        return {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}

    def is_live(self) -> bool:
        return bool(self.client.is_server_live(**self._timeout()))

    def is_ready(self) -> bool:
        return bool(self.client.is_server_ready(**self._timeout()))

    def is_model_ready(self, model: str) -> bool:
        return bool(self.client.is_model_ready(model, **self._timeout()))

    def infer_pipeline(self, payload: bytes) -> dict[str, NDArray[Any] | None]:
        tensor = self.module.InferInput(PIPELINE_INPUT, [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[payload]], dtype=object))
        outputs = [self.module.InferRequestedOutput(name) for name in PIPELINE_OUTPUTS]
        # HTTP: the client's network_timeout bounds the call. (tritonclient's `timeout` argument
        # is a server-side queue timeout in microseconds, not a client deadline.)
        kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        result = self.client.infer(PIPELINE_MODEL, [tensor], outputs=outputs, **kwargs)
        return {name: result.as_numpy(name) for name in PIPELINE_OUTPUTS}

    def close(self) -> None:
        self.client.close()


def _run(report: HealthReport, name: str, check: Callable[[], str]) -> bool:
    started = time.perf_counter()
    try:
        detail, ok = check(), True
    except CheckFailed as error:
        detail, ok = str(error), False
    except Exception as error:  # connection refused, timeouts, server errors
        detail, ok = f"{type(error).__name__}: {error}".strip(), False
    report.checks.append(CheckResult(name, ok, detail, round((time.perf_counter() - started) * 1000, 2)))
    return ok


def check_health(
    url: str = "localhost:8000",
    *,
    protocol: str = "http",
    models: Sequence[str] = EXPECTED_MODELS,
    smoke_payload: bytes | None = None,
    timeout_s: float = 5.0,
    probe: TritonProbe | None = None,
) -> HealthReport:
    """Run the checks in order and stop at the first failure."""
    report = HealthReport(url=url, protocol=protocol)
    try:
        probe = probe or TritonProbe(url, protocol, timeout_s)
    except Exception as error:
        report.checks.append(CheckResult("connect", False, f"{type(error).__name__}: {error}", 0.0))
        return report

    def live() -> str:
        if not probe.is_live():
            raise CheckFailed("server is not live")
        return "live"

    def ready() -> str:
        if not probe.is_ready():
            raise CheckFailed("server is not ready")
        return "ready"

    def models_ready() -> str:
        not_ready = [model for model in models if not probe.is_model_ready(model)]
        if not_ready:
            raise CheckFailed(f"models not READY: {', '.join(not_ready)}")
        return f"{len(models)} models READY"

    def smoke() -> str:
        assert smoke_payload is not None
        return validate_pipeline_outputs(probe.infer_pipeline(smoke_payload))

    steps: list[tuple[str, Callable[[], str]]] = [("live", live), ("ready", ready), ("models", models_ready)]
    if smoke_payload is not None:
        steps.append(("smoke_inference", smoke))
    try:
        for name, step in steps:
            if not _run(report, name, step):
                break
    finally:
        probe.close()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a RadStream Triton server.")
    parser.add_argument("--url", default="localhost:8000", help="host:port (HTTP port, or gRPC with --protocol grpc)")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per call")
    parser.add_argument("--model", action="append", dest="models", help="expected model (repeatable)")
    parser.add_argument("--smoke", action="store_true", help="run one pipeline inference on a built-in image")
    parser.add_argument("--smoke-image", type=Path, help="run the smoke inference on this DICOM/PNG/JPEG file")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    args = parser.parse_args(argv)

    payload = None
    if args.smoke_image is not None:
        try:
            payload = args.smoke_image.read_bytes()
        except OSError as error:
            print(f"UNHEALTHY {args.url}: smoke image unreadable: {error}")
            return 1
    elif args.smoke:
        payload = known_input_png()

    report = check_health(
        args.url,
        protocol=args.protocol,
        models=tuple(args.models or EXPECTED_MODELS),
        smoke_payload=payload,
        timeout_s=args.timeout,
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
