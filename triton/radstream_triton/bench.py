"""``make bench``: the reference and fast preprocessing paths side by side, in one process.

1. ``study_decoder.prepare_study`` on the same images (uncompressed CR, JPEG 2000 CR,
   CT, PNG) by both paths, pinned to one CPU core: per-stage milliseconds (decode,
   reduce, lut, window, resize) of the best of ``--repeats`` runs, the total, images
   per second per core, and the reference/fast ratio.
2. The served pipeline on the real local Triton server (CPU): throughput and median
   latency at each ``--concurrency`` on the CXR DICOM, once with
   ``decode_path=reference`` and once with ``decode_path=fast`` (the model parameter
   is the only difference between the two servers).

A benchmark, not a test: it prints figures and asserts nothing. ``--update-docs``
writes the output into the marked block of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from radstream_triton.cpu_repository import build_cpu_repository
from radstream_triton.loadtest.images import ct_dicom, cxr_dicom, cxr_png, pydicom_test_file
from radstream_triton.server import TRITON_DIR, LocalTritonServer

sys.path.insert(0, str(TRITON_DIR / "model_repository" / "study_preprocess" / "1"))
import study_decoder

STAGES = ("decode", "reduce", "lut", "window", "resize")
PATHS = (study_decoder.REFERENCE, study_decoder.FAST)
BUILD_DIR = TRITON_DIR.parent / "build" / "bench"
DOC_BEGIN = "<!-- bench:begin (written by make bench) -->"
DOC_END = "<!-- bench:end -->"


def bench_images() -> dict[str, bytes]:
    return {
        "RG1_UNCR (CR 1955x1841, uncompressed)": cxr_dicom(),
        "RG1_J2KR (CR 1955x1841, JPEG 2000 lossless)": pydicom_test_file("RG1_J2KR.dcm").read_bytes(),
        "CT_small (CT 128x128)": ct_dicom(),
        "RG1 PNG (8-bit 1955x1841)": cxr_png(),
    }


@dataclass(frozen=True)
class PathTiming:
    stages: dict[str, float]
    total_ms: float

    @property
    def images_per_second(self) -> float:
        return 1000.0 / self.total_ms


def time_paths(payload: bytes, repeats: int) -> dict[str, PathTiming]:
    """Per path, the best of ``repeats`` runs by total time and the stages of that run;
    the paths alternate run by run, so that both see the same machine."""
    best: dict[str, PathTiming] = {}
    for _ in range(repeats):
        for path in PATHS:
            timer = study_decoder.StageTimer()
            started = time.perf_counter()
            study_decoder.prepare_study(payload, path=path, timer=timer)
            total = (time.perf_counter() - started) * 1000.0
            if path not in best or total < best[path].total_ms:
                best[path] = PathTiming(dict(timer.milliseconds), total)
    return best


def pin_to_one_core() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return f"pinned to core {core}"


def stage_table(images: dict[str, bytes], repeats: int, out: Callable[[str], None]) -> None:
    header = "| image | path | " + " | ".join(STAGES) + " | total ms | images/s/core | ratio |"
    out(header)
    out("|" + "---|" * (header.count("|") - 1))
    for name, payload in images.items():
        timings = time_paths(payload, repeats)
        ratio = timings[study_decoder.REFERENCE].total_ms / timings[study_decoder.FAST].total_ms
        for path in PATHS:
            timing = timings[path]
            cells = [f"{timing.stages[stage]:.1f}" if stage in timing.stages else "-" for stage in STAGES]
            shown_ratio = f"**{ratio:.1f}x**" if path == study_decoder.FAST else "1.0x"
            out(
                f"| {name} | {path} | " + " | ".join(cells) + f" | {timing.total_ms:.1f} | "
                f"{timing.images_per_second:.1f} | {shown_ratio} |"
            )


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    completed: int
    errors: int
    seconds: float
    latencies_ms: tuple[float, ...]

    @property
    def throughput(self) -> float:
        return self.completed / self.seconds

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")


def closed_loop(url: str, payload: bytes, concurrency: int, seconds: float) -> LoadResult:
    """``concurrency`` clients, each sending the next request when the last returns."""
    import numpy as np
    import tritonclient.http as httpclient

    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def worker() -> None:
        client = httpclient.InferenceServerClient(url, network_timeout=120)
        tensor = httpclient.InferInput("IMAGE_BYTES", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[payload]], dtype=object))
        # Binary outputs, as the platform's clients ask for them (a JSON mask is 65,536 numbers).
        outputs = [httpclient.InferRequestedOutput(name) for name in ("FINDINGS", "LESION_MASK")]
        try:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    client.infer("radstream_pipeline", [tensor], outputs=outputs)
                except Exception:  # counted, not raised: a benchmark reports its errors
                    with lock:
                        errors[0] += 1
                    continue
                with lock:
                    latencies.append((time.perf_counter() - started) * 1000.0)
        finally:
            client.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadResult(concurrency, len(latencies), errors[0], time.monotonic() - started, tuple(latencies))


def serve_and_load(
    path: str, payload: bytes, concurrencies: Sequence[int], seconds: float, warmup_s: float
) -> list[LoadResult]:
    build_dir = BUILD_DIR / path
    repository = build_cpu_repository(
        build_dir / "model_repository", parameters={"study_preprocess": {"decode_path": path}}
    )
    with LocalTritonServer(repository, build_dir, log_level="warning", exit_timeout_secs=5) as server:
        closed_loop(server.http_url, payload, max(concurrencies), warmup_s)
        return [closed_loop(server.http_url, payload, level, seconds) for level in concurrencies]


def served_table(concurrencies: Sequence[int], seconds: float, warmup_s: float, out: Callable[[str], None]) -> None:
    payload = cxr_dicom()
    results = {path: serve_and_load(path, payload, concurrencies, seconds, warmup_s) for path in PATHS}
    out("| concurrency | reference req/s | reference p50 ms | fast req/s | fast p50 ms | ratio | errors |")
    out("|---|---|---|---|---|---|---|")
    for before, after in zip(results[study_decoder.REFERENCE], results[study_decoder.FAST], strict=True):
        out(
            f"| {before.concurrency} | {before.throughput:.1f} | {before.p50_ms:.0f} | {after.throughput:.1f} | "
            f"{after.p50_ms:.0f} | **{after.throughput / before.throughput:.1f}x** | {before.errors + after.errors} |"
        )


def update_docs(doc: Path, block: str) -> None:
    text = doc.read_text()
    if DOC_BEGIN not in text or DOC_END not in text:
        raise SystemExit(f"{doc} has no {DOC_BEGIN} ... {DOC_END} block")
    head, rest = text.split(DOC_BEGIN, 1)
    _, tail = rest.split(DOC_END, 1)
    doc.write_text(f"{head}{DOC_BEGIN}\n{block}\n{DOC_END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs per image and path (best is shown)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=15.0, help="closed-loop duration per concurrency level")
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--skip-server", action="store_true", help="only the in-process comparison")
    parser.add_argument("--update-docs", type=Path, help="write the output into this file's bench block")
    args = parser.parse_args(argv)

    lines: list[str] = []

    def out(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    out(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    out(f"\nPreprocessing in process ({pin_to_one_core()}; best of {args.repeats}; ms):\n")
    stage_table(bench_images(), args.repeats, out)
    if allowed is not None:
        os.sched_setaffinity(0, allowed)
    if not args.skip_server:
        out(
            f"\nServed pipeline, real Triton on CPU, CXR DICOM (RG1_UNCR), closed loop {args.seconds:.0f} s per level, "
            "decode_path switched between two server starts:\n"
        )
        served_table(args.concurrency, args.seconds, args.warmup_seconds, out)
    if args.update_docs:
        update_docs(args.update_docs, "\n".join(lines))
        print(f"\nwrote {args.update_docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
