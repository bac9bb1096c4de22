"""Summaries, thresholds, the JSON report and the PNG plot of a load test run.

Definitions (also in docs/loadtest.md):

- latency: from the moment the request is handed to the client library until its
  answer (or error) is back, in ms; the percentiles are over the *successful*
  requests, computed with ``numpy.percentile`` (linear interpolation);
- duration: from the start of the run (the first scheduled send) to the last answer;
- throughput: successful requests per second over that duration; offered rate: the
  requests per second the schedule asked for (open loop only);
- error rate: requests whose status is not ``ok``, over all requests;
- per-second series: requests sent in each second (by send time), completed and
  failed in each second (by completion time), and the latency of the successful
  requests completed in it.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radstream_triton.loadtest.runner import OK, RequestRecord, RunResult

SCHEMA = "radstream.loadtest/v1"


@dataclass(frozen=True)
class LatencyStats:
    count: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    min_ms: float | None
    mean_ms: float | None

    @classmethod
    def of(cls, seconds: Sequence[float]) -> LatencyStats:
        if not seconds:
            return cls(0, None, None, None, None, None, None)
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
        return cls(len(ms), p50, p90, p99, float(ms.max()), float(ms.min()), float(ms.mean()))


@dataclass(frozen=True)
class Summary:
    mode: str
    requests: int
    ok: int
    errors: int
    error_rate: float
    status_counts: dict[str, int]
    errors_by_status: dict[str, int]
    duration_s: float
    throughput_rps: float
    offered_rps: float | None
    latency_ms: LatencyStats
    send_lag_ms: LatencyStats
    concurrency: int | None


@dataclass(frozen=True)
class Thresholds:
    max_error_rate: float | None = None
    max_p99_ms: float | None = None


def summarize(result: RunResult) -> Summary:
    records = result.records
    statuses = Counter(r.status for r in records)
    ok = statuses.get(OK, 0)
    errors = len(records) - ok
    duration = max([result.duration_s, *(r.completed_s for r in records)], default=0.0)
    offered = None
    if result.mode == "open" and len(result.offsets) > 1 and result.offsets[-1] > result.offsets[0]:
        # n arrivals evenly spaced by d span (n - 1) * d: the rate is (n - 1) / span.
        offered = (len(result.offsets) - 1) / (result.offsets[-1] - result.offsets[0])
    return Summary(
        mode=result.mode,
        requests=len(records),
        ok=ok,
        errors=errors,
        error_rate=errors / len(records) if records else 0.0,
        status_counts=dict(sorted(statuses.items())),
        errors_by_status=dict(sorted((s, n) for s, n in statuses.items() if s != OK)),
        duration_s=duration,
        throughput_rps=ok / duration if duration > 0 else 0.0,
        offered_rps=offered,
        latency_ms=LatencyStats.of([r.latency_s for r in records if r.ok]),
        send_lag_ms=LatencyStats.of([r.send_lag_s for r in records if r.scheduled_s is not None]),
        concurrency=result.concurrency,
    )


def per_second(records: Sequence[RequestRecord]) -> list[dict[str, Any]]:
    """One row per second of the run: sent (by send time), completed, ok and errors
    (by completion time), and the p50/max latency of the successes completed then."""
    if not records:
        return []
    seconds = math.floor(max(r.completed_s for r in records)) + 1
    sent = [0] * seconds
    completed = [0] * seconds
    failed = [0] * seconds
    latencies: list[list[float]] = [[] for _ in range(seconds)]
    for r in records:
        sent[max(0, math.floor(r.sent_s))] += 1
        done = math.floor(r.completed_s)
        completed[done] += 1
        if r.ok:
            latencies[done].append(r.latency_s * 1000.0)
        else:
            failed[done] += 1
    rows = []
    for second in range(seconds):
        lat = latencies[second]
        rows.append(
            {
                "second": second,
                "sent": sent[second],
                "completed": completed[second],
                "ok": completed[second] - failed[second],
                "errors": failed[second],
                "latency_p50_ms": float(np.percentile(lat, 50)) if lat else None,
                "latency_max_ms": max(lat) if lat else None,
            }
        )
    return rows


def breaches(summary: Summary, thresholds: Thresholds) -> list[str]:
    """One phrase per breached threshold (empty when the run passes)."""
    found = []
    if thresholds.max_error_rate is not None and summary.error_rate > thresholds.max_error_rate:
        by_status = ", ".join(f"{s}: {n}" for s, n in summary.errors_by_status.items())
        found.append(
            f"error rate {summary.error_rate:.4f} exceeds --max-error-rate {thresholds.max_error_rate:g} "
            f"({summary.errors}/{summary.requests} failed; {by_status})"
        )
    if thresholds.max_p99_ms is not None:
        p99 = summary.latency_ms.p99_ms
        if p99 is None:
            found.append(f"p99 latency unavailable (no successful request) for --max-p99-ms {thresholds.max_p99_ms:g}")
        elif p99 > thresholds.max_p99_ms:
            found.append(f"p99 latency {p99:.1f} ms exceeds --max-p99-ms {thresholds.max_p99_ms:g}")
    return found


def exit_code(found: Sequence[str]) -> int:
    return 1 if found else 0


def build_report(result: RunResult, config: dict[str, Any], thresholds: Thresholds | None = None) -> dict[str, Any]:
    """The JSON document: schema, config, summary, thresholds, per_second, requests."""
    thresholds = thresholds or Thresholds()
    summary = summarize(result)
    found = breaches(summary, thresholds)
    return {
        "schema": SCHEMA,
        "started_at": result.started_at,
        "config": {
            "url": result.target.url,
            "protocol": result.target.protocol,
            "model": result.target.model,
            "timeout_s": result.target.timeout_s,
            **config,
        },
        "summary": asdict(summary),
        "thresholds": {**asdict(thresholds), "breaches": found, "passed": not found},
        "per_second": per_second(result.records),
        "requests": [
            {
                "index": r.index,
                "image": r.image,
                "scheduled_s": r.scheduled_s,
                "sent_s": r.sent_s,
                "latency_ms": r.latency_s * 1000.0,
                "status": r.status,
                "error": r.error,
            }
            for r in result.records
        ],
    }


def write_json(report: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def write_png(report: dict[str, Any], path: Path) -> Path:
    """Latency of every request over time, throughput per second, errors per second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    requests = report["requests"]
    rows = report["per_second"]
    summary = report["summary"]
    latency = summary["latency_ms"]
    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(11, 9), sharex=True, constrained_layout=True)

    ok = [r for r in requests if r["status"] == OK]
    bad = [r for r in requests if r["status"] != OK]
    top.scatter([r["sent_s"] for r in ok], [r["latency_ms"] for r in ok], s=12, label="ok", color="tab:blue")
    if bad:
        top.scatter(
            [r["sent_s"] for r in bad], [r["latency_ms"] for r in bad], s=18, marker="x", color="tab:red", label="error"
        )
    for name, style in (("p50_ms", "--"), ("p99_ms", ":")):
        if latency[name] is not None:
            top.axhline(latency[name], linestyle=style, color="grey", label=f"{name[:3]} {latency[name]:.0f} ms")
    top.set_ylabel("latency (ms)")
    top.set_title("latency by send time")
    top.legend(loc="best", fontsize="small")

    seconds = [row["second"] for row in rows]
    # Row ``s`` counts the second [s, s + 1): bars and steps start at the left edge.
    middle.bar(
        seconds, [row["ok"] for row in rows], width=0.9, align="edge", color="tab:green", label="ok completed / s"
    )
    sent = [row["sent"] for row in rows]
    middle.step([*seconds, len(rows)], [*sent, sent[-1] if sent else 0], where="post", color="black", label="sent / s")
    middle.set_ylabel("requests per second")
    middle.set_title(f"throughput (mean {summary['throughput_rps']:.2f} req/s)")
    middle.legend(loc="upper left", fontsize="small")

    errors = [row["errors"] for row in rows]
    bottom.bar(seconds, errors, width=0.9, align="edge", color="tab:red")
    bottom.set_ylim(0, max([1, *errors]) * 1.1)
    bottom.set_ylabel("errors per second")
    statuses = ", ".join(f"{s}: {n}" for s, n in summary["errors_by_status"].items()) or "none"
    bottom.set_title(f"errors (rate {summary['error_rate']:.2%}; {statuses})")
    bottom.set_xlabel("seconds since start")

    config = report["config"]
    if config.get("profile"):
        run = f"{config['profile']} x{config.get('time_scale', 1):g}"
    else:
        run = f"closed loop c={summary['concurrency']}"
    figure.suptitle(
        f"RadStream load test: {run} on {config['url']} ({config['protocol']}), "
        f"{summary['requests']} requests, p99 {latency['p99_ms'] or float('nan'):.0f} ms"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def format_summary(summary: Summary) -> str:
    """A few human lines for the terminal."""
    lat = summary.latency_ms

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    statuses = ", ".join(f"{s}={n}" for s, n in summary.status_counts.items())
    offered = "" if summary.offered_rps is None else f" (offered {summary.offered_rps:.2f} req/s)"
    lines = [
        f"requests {summary.requests} in {summary.duration_s:.1f} s: throughput {summary.throughput_rps:.2f} req/s"
        + offered,
        f"latency ms: p50 {ms(lat.p50_ms)}  p90 {ms(lat.p90_ms)}  p99 {ms(lat.p99_ms)}  max {ms(lat.max_ms)}",
        f"errors {summary.errors} (rate {summary.error_rate:.2%}); statuses: {statuses}",
    ]
    if summary.send_lag_ms.count:
        lines.append(f"send lag behind schedule ms: p99 {ms(summary.send_lag_ms.p99_ms)}")
    return "\n".join(lines)
