"""The scaling signal on the real thing: Prometheus (Debian's server) scrapes the real
local Triton under load, evaluates the shipped recording rules, and the recorded
signal rises with load, matches the value computed by hand from two scrapes of
/metrics, and falls back to zero when the load stops."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import tritonclient.http as httpclient
import yaml
from prometheus_client.parser import text_string_to_metric_families

from cdk_app.config import load_config
from cdk_app.scaling_signal import ENSEMBLE_MODEL, POD_QUEUE_RULE, recording_rules
from radstream_triton.cpu_repository import build_cpu_repository
from radstream_triton.server import LocalTritonServer, free_port
from tests.integration.pipeline_client import infer_pipeline

pytestmark = pytest.mark.integration

# The shipped rules with a window short enough for a test: 12 s instead of 1 m.
WINDOW_SECONDS = 12
LOAD_SECONDS = 5
POD = "local-0"


class Prometheus:
    def __init__(self, workdir: Path, metrics_target: str) -> None:
        config = load_config("dev")
        config = replace(
            config,
            monitoring=replace(config.monitoring, rate_window=f"{WINDOW_SECONDS}s", rule_evaluation_interval_seconds=1),
        )
        (workdir / "rules.yml").write_text(yaml.safe_dump(recording_rules(config)))
        scrape = {
            "job_name": "radstream-triton",
            "scrape_interval": "1s",
            "static_configs": [{"targets": [metrics_target], "labels": {"namespace": "radstream", "pod": POD}}],
        }
        settings = {"global": {"evaluation_interval": "1s"}, "rule_files": ["rules.yml"], "scrape_configs": [scrape]}
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(settings))
        self.port = free_port()
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus not installed: run make install (Debian package prometheus)")
        self.log = (workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def query(self, expr: str) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        return {item["metric"].get("pod", ""): float(item["value"][1]) for item in body["data"]["result"]}

    def wait_for(self, expr: str, timeout_s: float = 30) -> float:
        """The first value the rule records for the local pod (scrapes and rules need a few cycles)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            values = self.query(expr)
            if POD in values:
                return values[POD]
            time.sleep(0.5)
        raise AssertionError(f"{expr} recorded nothing for {POD} in {timeout_s} s")

    def wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("prometheus did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)
        self.log.close()


@pytest.fixture(scope="module")
def triton_and_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalTritonServer, Prometheus]]:
    workdir = tmp_path_factory.mktemp("signal")
    server = LocalTritonServer(
        build_cpu_repository(workdir / "repo"), workdir, extra_env={"TRITON_METRICS_INTERVAL_MS": "500"}
    )
    server.start()
    server.wait_ready()
    prometheus = Prometheus(workdir, f"127.0.0.1:{server.metrics_port}")
    try:
        prometheus.wait_ready()
        yield server, prometheus
    finally:
        prometheus.stop()
        server.stop()


def scrape_counters(metrics_url: str) -> dict[tuple[str, str], float]:
    """(counter, model) -> value, summed over other labels (failure reasons)."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    counters: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "model" in sample.labels and sample.name.endswith("_total"):
                key = (family.name, sample.labels["model"])
                counters[key] = counters.get(key, 0.0) + sample.value
    return counters


def by_hand(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> float:
    """Sum over the pipeline's steps of queue time / requests, from two scrapes."""
    total = 0.0
    steps = {model for (_, model) in after if model != ENSEMBLE_MODEL}
    for model in steps:

        def delta(name: str, model: str = model) -> float:
            return after.get((name, model), 0.0) - before.get((name, model), 0.0)

        requests = delta("nv_inference_request_success") + delta("nv_inference_request_failure")
        if requests:
            total += delta("nv_inference_queue_duration_us") / requests
    return total


def load(server: LocalTritonServer, payloads: list[bytes], seconds: float, threads: int = 6) -> int:
    """Closed-loop clients, more than the server's single instance per model: queues form."""
    stop_at = time.monotonic() + seconds
    sent = [0] * threads

    def worker(index: int) -> None:
        client = httpclient.InferenceServerClient(server.http_url, network_timeout=60)
        try:
            while time.monotonic() < stop_at:
                infer_pipeline(client, payloads[(index + sent[index]) % len(payloads)])
                sent[index] += 1
        finally:
            client.close()

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(sent)


def test_recorded_signal_rises_matches_the_hand_computation_and_falls_back(triton_and_prometheus, ct_bytes, png_bytes):
    server, prometheus = triton_and_prometheus
    # Counters that start near zero inside the window make rate() cap its extrapolation at
    # the zero point, differently for each counter, and the ratio drifts by a few percent
    # from the totals' ratio once the load is large (the fast path serves ~20/s here). A
    # warm-up load first, then a full window of idle: the counters enter the window large.
    load(server, [ct_bytes, png_bytes], LOAD_SECONDS)
    time.sleep(WINDOW_SECONDS + 3)
    idle = prometheus.wait_for(POD_QUEUE_RULE)
    assert idle == 0.0, f"an idle pod must report 0, got {idle}"
    time.sleep(WINDOW_SECONDS / 3)  # more idle scrapes: the window will start before the load

    before = scrape_counters(server.metrics_url)
    sent = load(server, [ct_bytes, png_bytes], LOAD_SECONDS)
    # Triton refreshes its counters every TRITON_METRICS_INTERVAL_MS (500 ms here): read them
    # after the last refresh, or the last half second of completions (a tenth of the load at
    # the fast path's throughput) is missing from the hand computation.
    time.sleep(1.0)
    after = scrape_counters(server.metrics_url)
    expected = by_hand(before, after)
    assert sent > 10
    assert expected > 1000, f"6 clients on 1 instance per model must queue: {expected:.0f} us per request"

    # Now the window covers idle - load - idle: rate() ratios equal the totals' ratios.
    time.sleep(2)
    recorded = prometheus.query(POD_QUEUE_RULE)[POD]
    assert recorded == pytest.approx(expected, rel=0.02), (recorded, expected)

    time.sleep(WINDOW_SECONDS + 3)
    assert prometheus.query(POD_QUEUE_RULE)[POD] == 0.0, "the signal must fall back when the load stops"
