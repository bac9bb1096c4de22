"""Which scaling signal gets the node burst's first new pod Ready soonest, in the simulator.

``python -m cdk_app.autoscaling_sim.signal_trial`` prints the comparison.

Variants of the shipped configuration on the node-burst profile, each at every one of
the HPA's 15 sync phases (the load may start anywhere in the sync period), and on the
sustained profile (flapping: how often the desired replica count changes):

* the metrics path as it was before issue 15 (30 s: 10 s scrape, 10 s rule evaluation
  and ~10 s counted for prometheus-adapter) with the queue-time signal alone;
* the metrics path as shipped (``config.capacity_timing.metrics_pipeline_delay_seconds``);
* either path with Triton's pending-request gauge (``nv_inference_pending_request_count``,
  summed over the pipeline's steps per pod; no rate window) as a second Pods metric.

It prints a Markdown table; docs/autoscaling.md quotes it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path

from cdk_app.autoscaling_sim.load import DEFAULT_CAPACITY_FILE, SUSTAINED, PodCapacity, node_burst
from cdk_app.autoscaling_sim.scenarios import shipped, simulation_parameters
from cdk_app.autoscaling_sim.simulate import Scenario, SimulationParameters, simulate, summarise
from cdk_app.config import PlatformConfig, load_config

#: The trial's gauge: its Pods metric name and per-pod target (half a second of the
#: measured pod's capacity of 15.5 images/s). Tried, not shipped: see docs/autoscaling.md.
PENDING_METRIC = "triton_pending_requests"
PENDING_TARGET = "8"
#: The metrics path before issue 15: 10 s scrape + 10 s evaluation + ~10 s adapter.
PREVIOUS_DELAY_S = 30.0


def with_pending_gauge(scenario: Scenario) -> Scenario:
    hpa = copy.deepcopy(dict(scenario.hpa))
    hpa["spec"]["metrics"].insert(
        1,
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": PENDING_METRIC},
                "target": {"type": "AverageValue", "averageValue": PENDING_TARGET},
            },
        },
    )
    return dataclasses.replace(scenario, name=f"{scenario.name}+pending", hpa=hpa)


def variants(config: PlatformConfig) -> Iterator[tuple[str, Scenario, SimulationParameters]]:
    queue_only = shipped(config)
    gauge = with_pending_gauge(queue_only)
    shipped_parameters = dataclasses.replace(simulation_parameters(config), pending_metric_name=PENDING_METRIC)
    previous = dataclasses.replace(shipped_parameters, custom_metrics_delay_s=PREVIOUS_DELAY_S)
    yield f"queue time, {PREVIOUS_DELAY_S:.0f} s path (before)", queue_only, previous
    yield f"queue time + pending gauge, {PREVIOUS_DELAY_S:.0f} s path", gauge, previous
    shipped_delay = shipped_parameters.custom_metrics_delay_s
    yield f"queue time, {shipped_delay:.0f} s path (shipped)", queue_only, shipped_parameters
    yield f"queue time + pending gauge, {shipped_delay:.0f} s path", gauge, shipped_parameters


def trial_table(config: PlatformConfig, capacity: PodCapacity) -> list[str]:
    lines = [
        "| signal | first new pod Ready, sync phase 0 | over the 15 sync phases | phases <= 45 s "
        "| sustained: desired-replica changes |",
        "|---|---|---|---|---|",
    ]
    burst = node_burst(capacity)
    for name, scenario, parameters in variants(config):
        firsts = []
        for offset in range(parameters.hpa_sync_s):
            shifted = dataclasses.replace(parameters, lead_in_s=parameters.lead_in_s + offset, tail_s=60)
            first = summarise(simulate(scenario, burst, capacity, shifted)).first_new_pod_ready_s
            firsts.append(float("inf") if first is None else first)
        sustained = simulate(scenario, SUSTAINED, capacity, parameters)
        changes = sum(
            1 for a, b in zip(sustained.timeline, sustained.timeline[1:], strict=False) if a.desired != b.desired
        )
        within = sum(1 for first in firsts if first <= 45)
        lines.append(
            f"| {name} | {firsts[0]:.0f} s | {min(firsts):.0f}-{max(firsts):.0f} s | {within} of {len(firsts)} "
            f"| {changes} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--capacity", type=Path, default=DEFAULT_CAPACITY_FILE)
    args = parser.parse_args(argv)
    print("\n".join(trial_table(load_config(args.stage), PodCapacity.load(args.capacity))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
