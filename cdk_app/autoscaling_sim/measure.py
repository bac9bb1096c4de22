"""Measure one Triton pod's pipeline capacity: ``python -m cdk_app.autoscaling_sim.measure``.

Starts the real local Triton server (CPU repository, the same ``start_triton.sh``
the container runs), sends the real chest radiograph ``RG1_UNCR.dcm`` to
``radstream_pipeline`` at increasing fixed concurrency (closed loop, one
tritonclient HTTP client per worker) and records, per level:

* sustained throughput (requests/s) and latency (mean, p50, p99);
* Triton's own queue time per request, computed from the metrics endpoint the
  way the scaling signal does (``cdk_app/scaling_signal.py``: per step model,
  rate(queue_duration_us) / rate(requests), summed over the steps);
* CPU seconds per request of the server's whole process tree (``/proc``).

The per-pod capacity the simulator uses is the median sustained throughput of
the saturated levels (from the first level within 10 % of the best one); the
service time is the mean latency at concurrency 1. The result goes to
``docs/measurements/pod_capacity.json``.

Against a real pod (a GPU node), port-forward its HTTP and metrics ports and run
the same measurement against them::

    kubectl -n radstream port-forward pod/<triton-pod> 8000 8002 &
    python -m cdk_app.autoscaling_sim.measure --url 127.0.0.1:8000 \
        --metrics-url http://127.0.0.1:8002/metrics --output docs/measurements/pod_capacity_gpu.json

(CPU seconds per request are only measured for the local server.)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import re
import signal
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
TRITON_DIR = REPO_ROOT / "triton"
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "measurements" / "pod_capacity.json"
DEFAULT_BUILD_DIR = REPO_ROOT / "build" / "autoscale-measure"
PIPELINE = "radstream_pipeline"
IMAGE_FILE = "RG1_UNCR.dcm"
OUTPUTS = ("FINDINGS", "LESION_MASK")
SATURATION_FRACTION = 0.9
_METRIC_LINE = re.compile(r"^(nv_inference_[a-z_]+)\{([^}]*)\}\s+([0-9.eE+-]+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class LevelResult:
    concurrency: int
    duration_s: float
    requests: int
    errors: int
    throughput_rps: float
    latency_mean_s: float
    latency_p50_s: float
    latency_p99_s: float
    queue_us_per_request: float
    cpu_seconds_per_request: float | None


def chest_xray_bytes() -> bytes:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(IMAGE_FILE)
    if path is None:
        raise SystemExit(f"{IMAGE_FILE} not found: install pydicom-data")
    return Path(str(path)).read_bytes()


def scrape_counters(metrics_url: str) -> dict[tuple[str, str], float]:
    """Triton's per-model counters: {(metric, model): value}, summed over versions."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    counters: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        match = _METRIC_LINE.match(line.strip())
        if match is None:
            continue
        labels = dict(_LABEL.findall(match.group(2)))
        key = (match.group(1), labels.get("model", ""))
        counters[key] = counters.get(key, 0.0) + float(match.group(3))
    return counters


def queue_us_per_request(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> float:
    """The scaling signal over one interval: per step, queue time / requests; summed over steps."""
    models = {model for (_, model) in after if model and model != PIPELINE}
    total = 0.0
    for model in models:

        def delta(metric: str, model: str = model) -> float:
            return after.get((metric, model), 0.0) - before.get((metric, model), 0.0)

        requests = delta("nv_inference_request_success") + delta("nv_inference_request_failure")
        if requests > 0:
            total += delta("nv_inference_queue_duration_us") / requests
    return total


def session_cpu_seconds(session_id: int) -> float:
    """User + system CPU seconds of every live process in ``session_id`` (the server's tree)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            raw = (entry / "stat").read_text()
            fields = raw[raw.rindex(")") + 2 :].split()
            # After "pid (comm) ": state ppid pgrp session ... utime(12) stime(13) (0-based here).
            if int(fields[3]) == session_id:
                total += int(fields[11]) + int(fields[12])
    return total / ticks


def _infer_once(client: Any, module: Any, payload: bytes) -> None:
    import numpy as np

    tensor = module.InferInput("IMAGE_BYTES", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[payload]], dtype=object))
    client.infer(PIPELINE, [tensor], outputs=[module.InferRequestedOutput(name) for name in OUTPUTS])


def run_level(
    url: str, metrics_url: str, payload: bytes, concurrency: int, duration_s: float, session_id: int | None
) -> LevelResult:
    module = importlib.import_module("tritonclient.http")
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = [0.0]
    start_barrier = threading.Barrier(concurrency + 1)

    def worker() -> None:
        client = module.InferenceServerClient(url, network_timeout=300, connection_timeout=60)
        try:
            start_barrier.wait()
            while time.monotonic() < stop_at[0]:
                sent = time.monotonic()
                try:
                    _infer_once(client, module, payload)
                except Exception:
                    with lock:
                        errors[0] += 1
                    continue
                with lock:
                    latencies.append(time.monotonic() - sent)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    before = scrape_counters(metrics_url)
    cpu_before = session_cpu_seconds(session_id) if session_id is not None else 0.0
    started = time.monotonic()
    stop_at[0] = started + duration_s
    start_barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    cpu_after = session_cpu_seconds(session_id) if session_id is not None else 0.0
    after = scrape_counters(metrics_url)
    done = len(latencies)
    ordered = sorted(latencies)
    return LevelResult(
        concurrency=concurrency,
        duration_s=round(elapsed, 3),
        requests=done,
        errors=errors[0],
        throughput_rps=round(done / elapsed, 4),
        latency_mean_s=round(statistics.fmean(ordered), 4) if ordered else 0.0,
        latency_p50_s=round(ordered[len(ordered) // 2], 4) if ordered else 0.0,
        latency_p99_s=round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 4) if ordered else 0.0,
        queue_us_per_request=round(queue_us_per_request(before, after), 1),
        cpu_seconds_per_request=round((cpu_after - cpu_before) / done, 4) if session_id is not None and done else None,
    )


@contextlib.contextmanager
def local_server(build_dir: Path) -> Iterator[tuple[str, str, int, str]]:
    """The real Triton server on loopback; yields (http url, metrics url, session id, version)."""
    if str(TRITON_DIR) not in sys.path:
        sys.path.insert(0, str(TRITON_DIR))
    cpu_repository = importlib.import_module("radstream_triton.cpu_repository")
    server_module = importlib.import_module("radstream_triton.server")
    repository = cpu_repository.build_cpu_repository(build_dir / "model_repository")
    server = server_module.LocalTritonServer(repository, build_dir, log_level="warning", exit_timeout_secs=10)
    server.start()
    try:
        server.wait_ready(timeout_s=300)
        yield server.http_url, server.metrics_url, server.process.pid, _server_version(server.http_url)
    finally:
        server.stop()


def _server_version(url: str) -> str:
    with urllib.request.urlopen(f"http://{url}/v2", timeout=10) as response:
        return str(json.loads(response.read()).get("version", "unknown"))


def measure(
    url: str, metrics_url: str, session_id: int | None, levels: list[int], duration_s: float, warmup_s: float
) -> list[LevelResult]:
    payload = chest_xray_bytes()
    run_level(url, metrics_url, payload, max(levels), warmup_s, None)  # warm caches and the Python stubs
    results = []
    for concurrency in levels:
        result = run_level(url, metrics_url, payload, concurrency, duration_s, session_id)
        print(json.dumps(asdict(result)), flush=True)
        results.append(result)
    return results


def summarise(
    results: list[LevelResult], *, source: str, version: str, command: str, load_before: float
) -> dict[str, Any]:
    best = max(results, key=lambda r: r.throughput_rps)
    single = min(results, key=lambda r: r.concurrency)
    # Saturated: from the first level within 10 % of the best throughput on; the median of those
    # levels is the capacity (robust to one lucky or unlucky level on a shared machine).
    saturating = min(r.concurrency for r in results if r.throughput_rps >= SATURATION_FRACTION * best.throughput_rps)
    saturated = [r.throughput_rps for r in results if r.concurrency >= saturating]
    cpu_values = [r.cpu_seconds_per_request for r in results if r.cpu_seconds_per_request is not None]
    return {
        "requests_per_second_per_pod": round(statistics.median(saturated), 4),
        "best_throughput_rps": best.throughput_rps,
        "saturating_concurrency": saturating,
        "service_time_s": single.latency_mean_s,
        "queue_us_per_request_unloaded": single.queue_us_per_request,
        "cpu_seconds_per_request": round(statistics.median(cpu_values), 4) if cpu_values else None,
        "levels": [asdict(r) for r in results],
        "model": PIPELINE,
        "image": f"pydicom-data {IMAGE_FILE} (CR chest radiograph, 1955x1841, 16-bit)",
        "server": source,
        "triton_version": version,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "load_average_1m_before": load_before,
            "load_average_1m_after": os.getloadavg()[0],
            "gpu": None if source == "local" else "see the pod's node",
        },
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "note": (
            "Closed-loop tritonclient HTTP workers on the same machine; capacity = median throughput of the saturated "
            "levels. Local runs are the CPU "
            "variant of the repository on this machine; on a GPU node the two networks run on the GPU and the "
            "per-pod capacity is higher: re-measure with --url against a real pod."
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="measure a running server (host:port, HTTP) instead of starting one")
    parser.add_argument("--metrics-url", help="its metrics endpoint (default: http://<host>:8002/metrics)")
    parser.add_argument("--concurrency", default="1,2,4,8", help="comma-separated levels (default 1,2,4,8)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per level (default 20)")
    parser.add_argument("--warmup", type=float, default=5.0, help="warm-up seconds (default 5)")
    parser.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD_DIR)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the local server is stopped, never orphaned.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    levels = sorted({int(level) for level in args.concurrency.split(",") if level.strip()})
    shown = list(argv if argv is not None else sys.argv[1:])
    command = " ".join(["python -m cdk_app.autoscaling_sim.measure", *shown])
    # The machine's other load skews the figures: it goes into the file with them.
    load_before = os.getloadavg()[0]
    if args.url:
        host = args.url.rsplit(":", 1)[0]
        metrics_url = args.metrics_url or f"http://{host}:8002/metrics"
        results = measure(args.url, metrics_url, None, levels, args.duration, args.warmup)
        summary = summarise(
            results, source=args.url, version=_server_version(args.url), command=command, load_before=load_before
        )
    else:
        with local_server(args.build_dir) as (url, metrics_url, session_id, version):
            results = measure(url, metrics_url, session_id, levels, args.duration, args.warmup)
        summary = summarise(results, source="local", version=version, command=command, load_before=load_before)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.output}: {summary['requests_per_second_per_pod']} requests/s per pod")
    return 0


if __name__ == "__main__":
    sys.exit(main())
