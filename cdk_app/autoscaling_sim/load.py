"""Load on Triton pods: arrival profiles and a queueing model of one pod, calibrated by measurement.

A pod is a FIFO queue in front of ``k`` parallel execution slots with a
deterministic service time (G/D/k). Its capacity ``k / service`` is the measured
sustained throughput of the pipeline (``docs/measurements/pod_capacity.json``,
written by ``python -m cdk_app.autoscaling_sim.measure``); ``k`` is the measured
single-request latency times that capacity, rounded (at least 1).

From each request's wait and service the model derives what the HPA reads:

* the queue signal (``triton_queue_time_per_request_us``, cdk_app/scaling_signal.py):
  the average, over the requests a pod finished in the rate window, of the
  measured unloaded queue time (dynamic-batching delays) plus the fraction of the
  wait that Triton books as queue time. On a CPU-bound pod part of the waiting
  shows up as longer compute (the preprocess instances share the cores), so the
  fraction is fitted to the measured queue signal at each concurrency level;
* CPU usage (metrics-server): the measured CPU seconds per request, spread over
  each request's service, plus an idle floor; model loading burns CPU before the
  pod is Ready.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CAPACITY_FILE = Path(__file__).resolve().parents[2] / "docs" / "measurements" / "pod_capacity.json"
#: Triton rejects a request when a step's queue holds this many (default_queue_policy.max_queue_size in
#: triton/model_repository/*/config.pbtxt); the client sees an error.
TRITON_MAX_QUEUE_SIZE = 256
#: Assumptions (docs/autoscaling.md): an idle Triton pod's CPU, and what model loading burns before Ready.
IDLE_CPU_MILLICORES = 20.0
STARTUP_CPU_MILLICORES = 1000.0


@dataclass(frozen=True)
class PodCapacity:
    """One pod's measured service characteristics."""

    requests_per_second: float
    service_time_s: float
    cpu_seconds_per_request: float
    queue_floor_us: float
    queue_signal_fraction: float
    source: str = "docs/measurements/pod_capacity.json"

    @property
    def slots(self) -> int:
        return max(1, round(self.requests_per_second * self.service_time_s))

    @property
    def slot_service_time_s(self) -> float:
        """Service time per slot so that ``slots / slot_service_time_s`` is exactly the measured capacity."""
        return self.slots / self.requests_per_second

    @property
    def saturated_cpu_millicores(self) -> float:
        return self.requests_per_second * self.cpu_seconds_per_request * 1000.0 + IDLE_CPU_MILLICORES

    @classmethod
    def from_measurement(cls, data: dict[str, Any], source: str = "measurement") -> PodCapacity:
        capacity = float(data["requests_per_second_per_pod"])
        service = float(data["service_time_s"])
        cpu = data.get("cpu_seconds_per_request")
        floor = float(data.get("queue_us_per_request_unloaded") or 0.0)
        provisional = cls(capacity, service, float(cpu or 0.0), floor, 1.0, source)
        fraction = fit_queue_signal_fraction(provisional, data.get("levels", []))
        return cls(capacity, service, float(cpu or 0.0), floor, fraction, source)

    @classmethod
    def load(cls, path: Path = DEFAULT_CAPACITY_FILE) -> PodCapacity:
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `python -m cdk_app.autoscaling_sim.measure` first")
        return cls.from_measurement(json.loads(path.read_text()), source=path.name)


def closed_loop_wait_s(capacity: PodCapacity, concurrency: int) -> float:
    """The model's queue wait per request with ``concurrency`` clients always waiting (a closed loop)."""
    if concurrency <= capacity.slots:
        return 0.0
    return (concurrency - capacity.slots) / capacity.requests_per_second


def fit_queue_signal_fraction(capacity: PodCapacity, levels: list[dict[str, Any]]) -> float:
    """Least-squares fraction of the model's wait that Triton reports as queue time (0..1)."""
    numerator = denominator = 0.0
    for level in levels:
        wait_us = closed_loop_wait_s(capacity, int(level["concurrency"])) * 1e6
        if wait_us <= 0:
            continue
        excess = max(0.0, float(level["queue_us_per_request"]) - capacity.queue_floor_us)
        numerator += excess * wait_us
        denominator += wait_us * wait_us
    if denominator == 0:
        return 1.0
    return min(1.0, max(0.0, numerator / denominator))


# --------------------------------------------------------------------------- one pod


@dataclass
class Completion:
    arrival: float
    start: float
    finish: float
    pod: str

    @property
    def wait(self) -> float:
        return self.start - self.arrival

    @property
    def latency(self) -> float:
        return self.finish - self.arrival


@dataclass
class PodServer:
    """A Triton pod serving requests: FIFO into ``slots`` parallel slots, deterministic service."""

    name: str
    capacity: PodCapacity
    ready_at: float
    slot_free_at: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    #: Per whole second: CPU core-seconds, finished requests and their summed wait.
    cpu_core_seconds: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))
    finished: defaultdict[int, int] = field(default_factory=lambda: defaultdict(int))
    finished_wait_s: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))
    #: Per whole second: requests accepted but not started (Triton's pending-request gauge).
    pending: dict[int, int] = field(default_factory=dict)
    last_finish: float = 0.0

    def __post_init__(self) -> None:
        self.slot_free_at = [self.ready_at] * self.capacity.slots
        heapq.heapify(self.slot_free_at)

    def queued(self, now: float) -> int:
        """Requests accepted but not yet started at ``now``."""
        while self.starts and self.starts[0] <= now:
            heapq.heappop(self.starts)
        return len(self.starts)

    def submit(self, arrival: float) -> Completion | None:
        """Accept a request at ``arrival`` (None: rejected, the queue is full)."""
        if self.queued(arrival) >= TRITON_MAX_QUEUE_SIZE:
            return None
        free = heapq.heappop(self.slot_free_at)
        start = max(arrival, free)
        service = self.capacity.slot_service_time_s
        finish = start + service
        heapq.heappush(self.slot_free_at, finish)
        if start > arrival:
            heapq.heappush(self.starts, start)
        self._spread_cpu(start, finish, self.capacity.cpu_seconds_per_request)
        second = int(math.floor(finish))
        self.finished[second] += 1
        self.finished_wait_s[second] += start - arrival
        self.last_finish = max(self.last_finish, finish)
        return Completion(arrival, start, finish, self.name)

    def _spread_cpu(self, start: float, finish: float, core_seconds: float) -> None:
        rate = core_seconds / (finish - start)
        second = int(math.floor(start))
        while second < finish:
            overlap = min(finish, second + 1) - max(start, second)
            if overlap > 0:
                self.cpu_core_seconds[second] += rate * overlap
            second += 1

    def drained_at(self) -> float:
        """When the last accepted request finishes."""
        return max(self.last_finish, self.ready_at)

    def queue_signal_us(self, end: float, window: float) -> float:
        """The pod's ``triton_queue_time_per_request_us`` over ``(end - window, end]`` (0 when idle)."""
        count = 0
        wait = 0.0
        for second in range(int(end - window), int(end)):
            count += self.finished.get(second, 0)
            wait += self.finished_wait_s.get(second, 0.0)
        if count == 0:
            return 0.0
        return self.capacity.queue_floor_us + self.capacity.queue_signal_fraction * (wait / count) * 1e6

    def record_pending(self, now: int) -> None:
        """Sample the queue length at the end of second ``now`` (Triton refreshes its gauges)."""
        self.pending[now] = self.queued(now + 1.0)

    def pending_signal(self, end: float) -> float:
        """The pod's ``triton_pending_requests`` as last sampled at or before ``end``."""
        second = int(math.floor(end))
        while second >= 0 and second not in self.pending:
            second -= 1
        return float(self.pending.get(second, 0))

    def cpu_millicores(self, end: float, window: float) -> float:
        """Average CPU usage over ``(end - window, end]`` in millicores, idle floor included."""
        seconds = range(int(end - window), int(end))
        used = sum(self.cpu_core_seconds.get(second, 0.0) for second in seconds)
        return used / window * 1000.0 + IDLE_CPU_MILLICORES


# --------------------------------------------------------------------------- arrival profiles


@dataclass(frozen=True)
class Segment:
    """``count`` images arriving within ``[start_s, start_s + duration_s)`` after the load onset."""

    start_s: float
    duration_s: float
    count: int


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    segments: tuple[Segment, ...]

    @property
    def duration_s(self) -> float:
        return max(segment.start_s + segment.duration_s for segment in self.segments)

    @property
    def total(self) -> int:
        return sum(segment.count for segment in self.segments)

    @property
    def peak_rate(self) -> float:
        """The highest segment rate in requests per second."""
        return max(segment.count / segment.duration_s for segment in self.segments)

    def arrivals(self, onset_s: float, seed: int) -> list[float]:
        """Arrival times: each segment's ``count`` uniform in its window (a Poisson process given its count)."""
        rng = random.Random(seed)  # noqa: S311 - a reproducible simulation, not cryptography
        times: list[float] = []
        for segment in self.segments:
            start = onset_s + segment.start_s
            times.extend(start + rng.random() * segment.duration_s for _ in range(segment.count))
        return sorted(times)


#: The brief's burst: 50 images within 1 minute.
BURST = Profile("burst", "the brief's burst: 50 images within 1 minute", (Segment(0.0, 60.0, 50),))
#: The brief's sustained load: 10 images per minute for 30 minutes.
SUSTAINED = Profile(
    "sustained",
    "the brief's sustained load: 10 images per minute for 30 minutes",
    tuple(Segment(60.0 * minute, 60.0, 10) for minute in range(30)),
)
#: The node burst: this many times one pod's measured capacity ...
NODE_BURST_CAPACITY_FACTOR = 2.5
#: ... for this long: more than the minimum replicas can serve, so one more GPU (node) is needed.
NODE_BURST_DURATION_S = 300.0


def node_burst(capacity: PodCapacity) -> Profile:
    """A burst that needs a pod on a GPU node beyond the minimum replicas' nodes."""
    rate = NODE_BURST_CAPACITY_FACTOR * capacity.requests_per_second
    count = round(rate * NODE_BURST_DURATION_S)
    return Profile(
        "node-burst",
        f"{NODE_BURST_CAPACITY_FACTOR:g} x one pod's capacity ({rate:.1f} images/s) for "
        f"{NODE_BURST_DURATION_S / 60:g} minutes ({count} images): needs a GPU beyond two pods",
        (Segment(0.0, NODE_BURST_DURATION_S, count),),
    )


def profiles(capacity: PodCapacity) -> dict[str, Profile]:
    return {profile.name: profile for profile in (BURST, SUSTAINED, node_burst(capacity))}
