"""Run Triton's own ``perf_analyzer`` (from the ``tritonclient`` wheel) against a server.

Used to cross-check the load-test tool (``radstream_triton.loadtest``): both measure
the pipeline at the same fixed concurrency with the same image, and their throughput
and median latency must agree.

The wheel's ``perf_analyzer`` binary links ``libb64.so.0d`` and ``libcudart.so.12``;
the ``nvidia-pytriton`` wheel ships both under hashed names in
``site-packages/nvidia_pytriton.libs``. This module symlinks them under their plain
names in a build folder and points ``LD_LIBRARY_PATH`` there (site-packages stays
untouched).

Input data: ``perf_analyzer --input-data`` JSON with the image as a ``b64`` BYTES
tensor. For BYTES, perf_analyzer sends the decoded ``b64`` content as the raw tensor
contents, which Triton reads as length-prefixed elements, so the encoded image is
prefixed with its length (4 bytes, little-endian) before base64:
``{"data": [{"IMAGE_BYTES": {"b64": "<base64(len + image)>", "shape": [1]}}]}``.

perf_analyzer reads the model configuration, which ``start_triton.sh`` restricts to
holders of the admin key; over HTTP the key is sent with ``-H admin-key:<key>``.
perf_analyzer does not send ``-H`` headers over gRPC, so against a server with
restricted admin APIs only HTTP works.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from radstream_triton.server import PytritonInstall, ServerError

MODEL = "radstream_pipeline"
INPUT = "IMAGE_BYTES"
LIBRARIES = {"libb64.so.0d": "libb64-*.so.0d", "libcudart.so.12": "libcudart-*.so.12*"}


class PerfAnalyzerError(RuntimeError):
    """perf_analyzer is missing, failed, or wrote no usable CSV."""


@dataclass(frozen=True)
class PerfAnalyzerResult:
    protocol: str
    concurrency: int
    throughput_rps: float
    p50_latency_ms: float
    p90_latency_ms: float
    p99_latency_ms: float
    csv_path: Path
    command: tuple[str, ...]


def find_binary() -> Path:
    """``perf_analyzer`` beside this interpreter (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "perf_analyzer"
    if beside.exists():
        return beside
    found = shutil.which("perf_analyzer")
    if found is None:
        raise PerfAnalyzerError("perf_analyzer not found: install tritonclient==2.51.0 (it ships the binary)")
    return Path(found)


def library_directory(build_dir: Path) -> Path:
    """``build_dir/perf_analyzer_libs`` with the plain-named symlinks perf_analyzer links against."""
    try:
        bundled = PytritonInstall.find().bundled_libraries
    except ServerError as error:
        raise PerfAnalyzerError(str(error)) from error
    target_dir = build_dir / "perf_analyzer_libs"
    target_dir.mkdir(parents=True, exist_ok=True)
    for name, pattern in LIBRARIES.items():
        matches = sorted(bundled.glob(pattern))
        if not matches:
            raise PerfAnalyzerError(f"{bundled} has no {pattern}: is nvidia-pytriton installed?")
        link = target_dir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(matches[0])
    return target_dir


def environment(build_dir: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    bundled = PytritonInstall.find().bundled_libraries
    paths = [str(library_directory(build_dir)), str(bundled), sysconfig.get_config_var("LIBDIR") or ""]
    if env.get("LD_LIBRARY_PATH"):
        paths.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in paths if p)
    return env


def input_data(payload: bytes) -> dict[str, object]:
    """perf_analyzer's ``--input-data`` document for one encoded image."""
    serialized = len(payload).to_bytes(4, "little") + payload
    return {"data": [{INPUT: {"b64": base64.b64encode(serialized).decode("ascii"), "shape": [1]}}]}


def write_input_data(payload: bytes, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(input_data(payload)))
    return path


def parse_csv(path: Path) -> dict[str, float]:
    """The first row of perf_analyzer's ``-f`` CSV: concurrency, infer/sec, latencies (usec)."""
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError as error:
        raise PerfAnalyzerError(f"perf_analyzer wrote no CSV at {path}") from error
    if not rows:
        raise PerfAnalyzerError(f"perf_analyzer CSV {path} has no measurement row")
    row = rows[0]
    try:
        return {
            "concurrency": float(row["Concurrency"]),
            "throughput_rps": float(row["Inferences/Second"]),
            "p50_usec": float(row["p50 latency"]),
            "p90_usec": float(row["p90 latency"]),
            "p99_usec": float(row["p99 latency"]),
        }
    except (KeyError, ValueError) as error:
        raise PerfAnalyzerError(f"unexpected perf_analyzer CSV {path}: {error}; columns {list(row)}") from error


def run(
    url: str,
    payload: bytes,
    build_dir: Path,
    *,
    concurrency: int = 2,
    protocol: str = "http",
    model: str = MODEL,
    measurement_interval_ms: int = 5000,
    stability_percentage: int = 30,
    max_trials: int = 10,
    admin_key: str | None = None,
    timeout_s: float = 300.0,
) -> PerfAnalyzerResult:
    """Measure ``model`` at ``url`` with perf_analyzer at a fixed concurrency, one image."""
    if protocol not in ("http", "grpc"):
        raise ValueError(f"protocol must be http or grpc, got {protocol!r}")
    build_dir.mkdir(parents=True, exist_ok=True)
    data_file = write_input_data(payload, build_dir / "perf_analyzer_input.json")
    csv_path = build_dir / f"perf_analyzer_{protocol}_c{concurrency}.csv"
    csv_path.unlink(missing_ok=True)
    command = [
        str(find_binary()),
        "-m",
        model,
        "-u",
        url,
        "-i",
        protocol,
        "--input-data",
        str(data_file),
        "--concurrency-range",
        str(concurrency),
        "--measurement-interval",
        str(measurement_interval_ms),
        "--stability-percentage",
        str(stability_percentage),
        "--max-trials",
        str(max_trials),
        "-f",
        str(csv_path),
    ]
    if admin_key and protocol == "http":
        command += ["-H", f"admin-key:{admin_key}"]
    try:
        completed = subprocess.run(
            command, env=environment(build_dir), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise PerfAnalyzerError(f"perf_analyzer did not finish within {timeout_s:.0f} s") from error
    (build_dir / f"perf_analyzer_{protocol}_c{concurrency}.log").write_text(completed.stdout + completed.stderr)
    if completed.returncode != 0:
        tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-8:])
        raise PerfAnalyzerError(f"perf_analyzer exited with {completed.returncode}:\n{tail}")
    values = parse_csv(csv_path)
    return PerfAnalyzerResult(
        protocol=protocol,
        concurrency=int(values["concurrency"]),
        throughput_rps=values["throughput_rps"],
        p50_latency_ms=values["p50_usec"] / 1000.0,
        p90_latency_ms=values["p90_usec"] / 1000.0,
        p99_latency_ms=values["p99_usec"] / 1000.0,
        csv_path=csv_path,
        command=tuple(command),
    )
