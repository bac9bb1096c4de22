"""Load-test the RadStream pipeline (open loop on a profile, or closed loop at fixed concurrency).

Examples:
  python -m radstream_triton.loadtest --start-local --profile burst --time-scale 6
  python -m radstream_triton.loadtest --url 127.0.0.1:8000 --profile sustained --time-scale 30 \\
      --max-error-rate 0.01 --max-p99-ms 2000
  python -m radstream_triton.loadtest --start-local --concurrency 2 --requests 100 --images ct-dicom --perf-analyzer

Exit status: 0 passed, 1 a threshold was breached (or the server was not ready, or
perf_analyzer disagreed by more than --perf-analyzer-tolerance), 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from radstream_triton import perf_analyzer
from radstream_triton.cpu_repository import build_cpu_repository
from radstream_triton.loadtest import images as image_set
from radstream_triton.loadtest import profiles
from radstream_triton.loadtest.report import (
    Thresholds,
    breaches,
    build_report,
    exit_code,
    format_summary,
    summarize,
    write_json,
    write_png,
)
from radstream_triton.loadtest.runner import (
    PROTOCOLS,
    RequestRecord,
    RunResult,
    Target,
    check_ready,
    run_closed_loop,
    run_open_loop,
)
from radstream_triton.perf_analyzer import PerfAnalyzerError
from radstream_triton.server import LocalTritonServer, ServerError

DEFAULT_OUTPUT_DIR = Path("build/loadtest")
PREFIX = "loadtest"


class RichProgress:
    """A progress bar on stderr: completed of total, in flight, errors, elapsed."""

    def __init__(self, total: int, description: str, enabled: bool = True) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("in flight {task.fields[in_flight]}  errors {task.fields[errors]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._task = self._progress.add_task(description, total=total, in_flight=0, errors=0)
        self._sent = 0
        self._completed = 0
        self._errors = 0

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._progress.stop()

    def sent(self, record_index: int) -> None:
        self._sent += 1
        self._progress.update(self._task, in_flight=self._sent - self._completed)

    def completed(self, record: RequestRecord) -> None:
        self._completed += 1
        self._errors += 0 if record.ok else 1
        self._progress.update(self._task, advance=1, in_flight=self._sent - self._completed, errors=self._errors)


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        prog="python -m radstream_triton.loadtest",
        description=doc.splitlines()[0],
        epilog="\n".join(doc.splitlines()[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = parser.add_argument_group("target")
    target.add_argument(
        "--url", default=None, help="host:port of Triton's HTTP or gRPC endpoint (default 127.0.0.1:8000)"
    )
    target.add_argument("--protocol", choices=PROTOCOLS, default="http")
    target.add_argument("--model", default="radstream_pipeline")
    target.add_argument("--timeout", type=positive_float, default=60.0, help="per-request timeout, seconds")
    target.add_argument(
        "--start-local",
        action="store_true",
        help="start the local CPU Triton server (in OUTPUT_DIR/server) for the run and stop it afterwards",
    )
    target.add_argument("--admin-key", default="local-admin-key", help="admin key (perf_analyzer over HTTP needs it)")

    load = parser.add_argument_group("open loop (default)")
    load.add_argument("--profile", choices=sorted(profiles.PROFILES), default=None, help="default: burst")
    load.add_argument(
        "--time-scale", type=positive_float, default=1.0, help="divide every send offset (60: a 60 s profile in 1 s)"
    )
    load.add_argument("--arrivals", choices=profiles.ARRIVALS, default="even", help="even spacing or seeded Poisson")
    load.add_argument("--seed", type=int, default=0, help="seed for Poisson arrivals and random image order")

    closed = parser.add_argument_group("closed loop (perf_analyzer comparison)")
    closed.add_argument("--concurrency", type=positive_int, default=None, help="workers; selects the closed loop")
    closed.add_argument("--requests", type=positive_int, default=None, help="recorded requests in the closed loop")
    closed.add_argument(
        "--warmup", type=int, default=None, help="unrecorded warm-up requests (default 4 x concurrency)"
    )
    closed.add_argument(
        "--perf-analyzer", action="store_true", help="then run perf_analyzer at the same concurrency and compare"
    )
    closed.add_argument("--perf-analyzer-interval-ms", type=positive_int, default=1000, help="measurement window")
    closed.add_argument(
        "--perf-analyzer-rounds", type=positive_int, default=3, help="perf_analyzer runs, alternating with the tool's"
    )
    closed.add_argument(
        "--perf-analyzer-tolerance", type=positive_float, default=0.10, help="allowed relative difference (0.10)"
    )

    data = parser.add_argument_group("images")
    data.add_argument(
        "--images",
        default=",".join(image_set.DEFAULT_IMAGES),
        help=f"comma-separated built-ins ({', '.join(image_set.BUILTIN)}) or file paths",
    )
    data.add_argument("--image-order", choices=image_set.ORDERS, default="round-robin")

    out = parser.add_argument_group("report")
    out.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR)
    out.add_argument("--name", default=None, help="report file stem (default from the profile or concurrency)")
    out.add_argument("--max-error-rate", type=non_negative_float, default=None, help="fail above this error rate")
    out.add_argument("--max-p99-ms", type=positive_float, default=None, help="fail above this p99 latency (ms)")
    out.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def _validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    closed = args.concurrency is not None or args.requests is not None
    if closed and (args.concurrency is None or args.requests is None):
        parser.error("the closed loop needs both --concurrency and --requests")
    if closed and args.profile is not None:
        parser.error("--profile (open loop) and --concurrency/--requests (closed loop) exclude each other")
    if args.perf_analyzer and not closed:
        parser.error("--perf-analyzer compares the closed loop: give --concurrency and --requests")
    if args.perf_analyzer and args.protocol != "http":
        # start_triton.sh restricts model-config, which perf_analyzer reads, and perf_analyzer
        # sends the admin key (-H) over HTTP only.
        parser.error("--perf-analyzer needs --protocol http (perf_analyzer cannot send the admin key over gRPC)")
    if args.perf_analyzer and "," in args.images:
        parser.error("--perf-analyzer sends one image, so must the closed loop: give a single --images")
    if args.start_local and args.url is not None:
        parser.error("--start-local serves on free loopback ports: leave --url out")
    if args.warmup is not None and args.warmup < 0:
        parser.error("--warmup must be >= 0")


def _report_config(args: argparse.Namespace, names: list[str], closed: bool) -> dict[str, Any]:
    config: dict[str, Any] = {
        "mode": "closed" if closed else "open",
        "images": names,
        "image_order": args.image_order,
        "seed": args.seed,
        "local_server": args.start_local,
    }
    if closed:
        config.update(concurrency=args.concurrency, requests=args.requests, warmup=args.warmup)
    else:
        config.update(
            profile=args.profile,
            time_scale=args.time_scale,
            arrivals=args.arrivals,
            nominal_duration_s=profiles.nominal_duration_s(args.profile),
        )
    return config


def _run(args: argparse.Namespace, target: Target, loaded: list[image_set.StudyImage]) -> RunResult:
    progress_on = not args.no_progress
    if args.concurrency is not None:
        assignment = image_set.assign(args.requests, len(loaded), args.image_order, args.seed)
        label = f"closed loop c={args.concurrency}"
        with RichProgress(len(assignment), label, progress_on) as bar:
            return asyncio.run(run_closed_loop(target, loaded, assignment, args.concurrency, args.warmup, bar))
    offsets = profiles.schedule(args.profile, args.time_scale, args.arrivals, args.seed)
    assignment = image_set.assign(len(offsets), len(loaded), args.image_order, args.seed)
    label = f"{args.profile} x{args.time_scale:g}"
    with RichProgress(len(offsets), label, progress_on) as bar:
        return asyncio.run(run_open_loop(target, offsets, loaded, assignment, bar))


@dataclass(frozen=True)
class CrossCheck:
    """The closed loop and perf_analyzer, measured in turns on the same server.

    The tool runs ``rounds + 1`` times and perf_analyzer ``rounds`` times in between
    (tool, pa, tool, pa, ..., tool). Each perf_analyzer run is compared with the mean
    of the tool's runs just before and after it (a drift of the machine's speed then
    affects both sides alike: on a shared 2-core machine it moves throughput by more
    than 10% within a minute), and the verdict is the median of these paired
    differences, so one pair disturbed by a burst of foreign load does not decide.
    """

    concurrency: int
    image: str
    loadtest_runs: list[dict[str, float]]
    perf_analyzer_runs: list[dict[str, float]]

    def pairs(self, key: str) -> list[tuple[float, float]]:
        """(tool, perf_analyzer) for each perf_analyzer run; the tool's side is the
        mean of its runs before and after."""
        tool = [run[key] for run in self.loadtest_runs]
        return [
            ((tool[i] + tool[i + 1]) / 2 if i + 1 < len(tool) else tool[i], run[key])
            for i, run in enumerate(self.perf_analyzer_runs)
        ]

    def differences(self) -> dict[str, dict[str, Any]]:
        result = {}
        for key in ("throughput_rps", "p50_latency_ms"):
            pairs = self.pairs(key)
            ratios = [tool / reference for tool, reference in pairs]
            result[key] = {
                "loadtest": statistics.median(tool for tool, _ in pairs),
                "perf_analyzer": statistics.median(reference for _, reference in pairs),
                "relative_difference": abs(statistics.median(ratios) - 1.0),
                "paired_ratios": ratios,
            }
        return result

    def breaches(self, tolerance: float) -> list[str]:
        return [
            f"{key} differs from perf_analyzer by {values['relative_difference']:.1%} (> {tolerance:.0%})"
            for key, values in self.differences().items()
            if values["relative_difference"] > tolerance
        ]

    def as_dict(self, tolerance: float) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "image": self.image,
            "tolerance": tolerance,
            "loadtest_runs": self.loadtest_runs,
            "perf_analyzer_runs": self.perf_analyzer_runs,
            **self.differences(),
        }


def _closed_loop_figures(result: RunResult) -> dict[str, float]:
    summary = summarize(result)
    if summary.errors or summary.latency_ms.p50_ms is None:
        raise PerfAnalyzerError(f"the closed loop had errors: {summary.errors_by_status}")
    return {"throughput_rps": summary.throughput_rps, "p50_latency_ms": summary.latency_ms.p50_ms}


def cross_check(
    target: Target,
    image: image_set.StudyImage,
    build_dir: Path,
    *,
    concurrency: int = 2,
    requests: int = 100,
    warmup: int = 8,
    rounds: int = 3,
    interval_ms: int = 1000,
    admin_key: str | None = None,
    first: RunResult | None = None,
) -> CrossCheck:
    """Alternate the tool's closed loop and perf_analyzer on one image at ``concurrency``
    (``first``, when given, is an already measured closed loop used as the first turn)."""

    def ours() -> dict[str, float]:
        assignment = [0] * requests
        return _closed_loop_figures(asyncio.run(run_closed_loop(target, [image], assignment, concurrency, warmup)))

    loadtest_runs = [_closed_loop_figures(first) if first is not None else ours()]
    perf_analyzer_runs = []
    for _ in range(rounds):
        measured = perf_analyzer.run(
            target.url,
            image.payload,
            build_dir,
            concurrency=concurrency,
            protocol=target.protocol,
            model=target.model,
            measurement_interval_ms=interval_ms,
            admin_key=admin_key,
        )
        perf_analyzer_runs.append(
            {"throughput_rps": measured.throughput_rps, "p50_latency_ms": measured.p50_latency_ms}
        )
        loadtest_runs.append(ours())
    return CrossCheck(concurrency, image.name, loadtest_runs, perf_analyzer_runs)


def _compare_perf_analyzer(
    args: argparse.Namespace, target: Target, image: image_set.StudyImage, first: RunResult, report: dict[str, Any]
) -> list[str]:
    check = cross_check(
        target,
        image,
        args.output_dir / "perf_analyzer",
        concurrency=args.concurrency,
        requests=args.requests,
        warmup=args.warmup,
        rounds=args.perf_analyzer_rounds,
        interval_ms=args.perf_analyzer_interval_ms,
        admin_key=args.admin_key,
        first=first,
    )
    for key, values in check.differences().items():
        print(
            f"perf_analyzer {key}: loadtest {values['loadtest']:.2f}, perf_analyzer {values['perf_analyzer']:.2f}, "
            f"difference {values['relative_difference']:.1%} (median of {len(check.perf_analyzer_runs)} "
            f"alternating pairs)"
        )
    report["perf_analyzer"] = check.as_dict(args.perf_analyzer_tolerance)
    return check.breaches(args.perf_analyzer_tolerance)


def run_with_args(args: argparse.Namespace) -> int:
    names = [name.strip() for name in args.images.split(",") if name.strip()]
    loaded = image_set.load_images(names)
    closed = args.concurrency is not None
    if closed and args.warmup is None:
        args.warmup = 4 * args.concurrency
    if not closed and args.profile is None:
        args.profile = "burst"
    stem = args.name or (f"closed-c{args.concurrency}-{args.protocol}" if closed else f"{args.profile}-{args.protocol}")
    thresholds = Thresholds(args.max_error_rate, args.max_p99_ms)

    server: LocalTritonServer | None = None
    try:
        if args.start_local:
            build_dir = (args.output_dir / "server").resolve()
            repository = build_cpu_repository(build_dir / "model_repository")
            server = LocalTritonServer(repository, build_dir, admin_key=args.admin_key, log_level="warning")
            print(f"{PREFIX}: starting the local CPU Triton server in {build_dir} ...", flush=True)
            server.start()
            server.wait_ready()
            args.url = server.http_url if args.protocol == "http" else server.grpc_url
        target = Target.parse(args.url or "127.0.0.1:8000", args.protocol, model=args.model, timeout_s=args.timeout)
        not_ready = asyncio.run(check_ready(target))
        if not_ready:
            print(f"{PREFIX}: FAILED: {not_ready}", file=sys.stderr)
            return 1
        result = _run(args, target, loaded)
        report = build_report(result, _report_config(args, names, closed), thresholds)
        found = breaches(summarize(result), thresholds)
        if args.perf_analyzer:
            try:
                found += _compare_perf_analyzer(args, target, loaded[0], result, report)
            except PerfAnalyzerError as error:
                found.append(f"perf_analyzer failed: {error}")
            report["thresholds"]["breaches"] = found
            report["thresholds"]["passed"] = not found
    except ServerError as error:
        print(f"{PREFIX}: FAILED: the local server did not start: {error}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()
    json_path = write_json(report, args.output_dir / f"{stem}.json")
    png_path = write_png(report, args.output_dir / f"{stem}.png")
    print(format_summary(summarize(result)))
    print(f"report: {json_path}\nplot:   {png_path}")
    if found:
        print(f"{PREFIX}: FAILED: {'; '.join(found)}", file=sys.stderr)
    else:
        print(f"{PREFIX}: passed")
    return exit_code(found)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _validate(parser, args)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 2
    try:
        return run_with_args(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"{PREFIX}: usage error: {error}", file=sys.stderr)
        return 2
