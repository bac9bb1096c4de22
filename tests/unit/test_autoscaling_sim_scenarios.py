"""Scenario-level checks of the autoscaling simulation (docs/autoscaling.md) against the brief's targets."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from cdk_app.autoscaling_sim.__main__ import Report, main, run_all
from cdk_app.autoscaling_sim.load import PodCapacity, node_burst
from cdk_app.autoscaling_sim.report import markdown_table, table_in
from cdk_app.autoscaling_sim.scenarios import all_scenarios, load_hpa_manifest, shipped, simulation_parameters
from cdk_app.autoscaling_sim.simulate import RESPONSE_TARGET_S, SCALE_DOWN_TARGET_S, Summary, simulate, summarise
from cdk_app.config import load_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report() -> Report:
    return run_all("dev")


def pick(report: Report, profile: str, scenario: str) -> Summary:
    (summary,) = [s for s in report.summaries if s.profile == profile and s.scenario == scenario]
    return summary


def test_the_docs_table_is_what_the_code_produces(report):
    """docs/autoscaling.md's figures come from this code: regenerate with --update-docs after a change."""
    document = (REPO / "docs" / "autoscaling.md").read_text()
    assert table_in(document) == markdown_table(report.summaries)


@pytest.mark.parametrize("profile", ["burst", "node-burst"])
def test_shipped_configuration_has_capacity_within_two_minutes(report, profile):
    summary = pick(report, profile, "shipped")
    assert summary.time_to_capacity_s is not None
    assert summary.time_to_capacity_s < RESPONSE_TARGET_S
    assert summary.response_ok


def test_the_node_burst_needs_a_gpu_beyond_the_warm_pods(report):
    summary = pick(report, "node-burst", "shipped")
    config = load_config("dev")
    assert summary.needed_replicas > config.autoscaling.min_replicas
    # The extra pod lands on the placeholder's node; the Cluster Autoscaler replaces the spare behind it.
    assert summary.max_nodes > config.autoscaling.min_replicas + config.autoscaling.overprovisioning_placeholders
    assert summary.warm_pod_startup_max_s is not None and summary.warm_pod_startup_max_s < 30


def test_the_baseline_is_slower_and_loses_requests(report):
    shipped_summary = pick(report, "node-burst", "shipped")
    baseline = pick(report, "node-burst", "baseline")
    assert baseline.time_to_capacity_s is None or baseline.time_to_capacity_s > shipped_summary.time_to_capacity_s
    assert not baseline.response_ok
    assert baseline.latency_p99_s > shipped_summary.latency_p99_s
    assert baseline.rejected > shipped_summary.rejected


def test_two_minutes_hold_whatever_the_hpa_sync_phase():
    """The load may start anywhere in the HPA's 15 s sync period."""
    config = load_config("dev")
    capacity = PodCapacity.load()
    scenario = shipped(config)
    base = simulation_parameters(config)
    for offset in range(base.hpa_sync_s):
        parameters = dataclasses.replace(base, lead_in_s=base.lead_in_s + offset, tail_s=60)
        summary = summarise(simulate(scenario, node_burst(capacity), capacity, parameters))
        assert summary.time_to_capacity_s is not None and summary.time_to_capacity_s < RESPONSE_TARGET_S, offset


def test_scale_down(report):
    # The brief's profiles need no extra pod: nothing to scale down.
    for profile in ("burst", "sustained"):
        assert pick(report, profile, "shipped").scale_down_s == 0
    node = pick(report, "node-burst", "shipped")
    # The shipped configuration releases the extra capacity within the brief's 5 minutes.
    assert node.scale_down_s is not None and node.scale_down_s < SCALE_DOWN_TARGET_S
    assert node.scale_down_ok


def test_gpu_hours_are_positive_and_track_the_nodes(report):
    for summary in report.summaries:
        assert summary.gpu_hours > 0
    assert pick(report, "sustained", "shipped").gpu_hours > pick(report, "sustained", "baseline").gpu_hours


def test_every_scenario_runs_every_profile(report):
    names = {s.name for s in all_scenarios(load_config("dev"))}
    assert {"shipped", "baseline", "baseline-cpu60", "baseline-cpu80", "shipped-cpu60", "shipped-cpu80"} <= names
    assert len(report.summaries) == 3 * len(names)


def test_the_rendered_hpa_gives_the_same_results(report):
    hpa = load_hpa_manifest(REPO / "k8s_manifests" / "hpa.yaml")
    again = run_all("dev", ["node-burst"], hpa=hpa)
    assert pick(again, "node-burst", "shipped") == pick(report, "node-burst", "shipped")


def test_cli_writes_the_png_json_and_table(tmp_path):
    assert main(["--stage", "dev", "--profile", "node-burst", "--output-dir", str(tmp_path)]) == 0
    png = tmp_path / "timeline-node-burst.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    document = json.loads((tmp_path / "summary.json").read_text())
    assert {r["scenario"] for r in document["results"]} >= {"shipped", "baseline"}
    assert document["capacity"]["requests_per_second"] > 0
    assert "| node-burst |" in (tmp_path / "report.md").read_text()


def test_node_burst_first_new_pod_within_45_s_and_no_flapping_on_sustained():
    """Issue 15: the metrics path (5 s scrape and evaluation) gets the first new pod Ready in <= 45 s."""
    from cdk_app.autoscaling_sim.load import SUSTAINED

    config = load_config("dev")
    capacity = PodCapacity.load()
    scenario = shipped(config)
    parameters = simulation_parameters(config)
    assert parameters.custom_metrics_delay_s == 12
    summary = summarise(simulate(scenario, node_burst(capacity), capacity, parameters))
    assert summary.first_new_pod_ready_s is not None and summary.first_new_pod_ready_s <= 45
    sustained = simulate(scenario, SUSTAINED, capacity, parameters)
    assert len({sample.desired for sample in sustained.timeline}) == 1, "the desired replica count moved"


def test_signal_trial_compares_the_old_and_shipped_metrics_paths():
    from cdk_app.autoscaling_sim.signal_trial import trial_table

    rows = trial_table(load_config("dev"), PodCapacity.load())[2:]
    assert [row.split(" | ")[0] for row in rows] == [
        "| queue time, 30 s path (before)",
        "| queue time + pending gauge, 30 s path",
        "| queue time, 12 s path (shipped)",
        "| queue time + pending gauge, 12 s path",
    ]
    document = (REPO / "docs" / "autoscaling.md").read_text()
    assert all(row in document for row in rows), "docs/autoscaling.md quotes an older signal_trial table"


def test_pending_gauge_reads_the_queue_length_as_sampled():
    from cdk_app.autoscaling_sim.load import PodServer

    # One slot, 1 s per request: five requests at t=10 start at 10, 11, 12, 13 and 14.
    capacity = dataclasses.replace(PodCapacity.load(), requests_per_second=1.0, service_time_s=1.0)
    server = PodServer("a", capacity, ready_at=0.0)
    for _ in range(5):
        server.submit(10.0)
    server.record_pending(10)  # sampled at the end of second 10: three still wait
    assert server.pending_signal(10.5) == 3.0
    assert server.pending_signal(12.0) == 3.0  # the last sample until the next one
    assert server.pending_signal(5.0) == 0.0
