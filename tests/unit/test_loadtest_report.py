"""Load-test summaries, thresholds, JSON and PNG output, error statuses, CLI usage
errors, and perf_analyzer's input and CSV formats (no server needed)."""

from __future__ import annotations

import base64
import json
import os

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from radstream_triton import perf_analyzer
from radstream_triton.loadtest import cli
from radstream_triton.loadtest.report import (
    SCHEMA,
    LatencyStats,
    Thresholds,
    breaches,
    build_report,
    exit_code,
    per_second,
    summarize,
    write_json,
    write_png,
)
from radstream_triton.loadtest.runner import RequestFailed, RequestRecord, RunResult, Target, classify_error

TARGET = Target("127.0.0.1:8000")


def _records(latencies_s, statuses=None, spacing_s=0.1):
    statuses = statuses or ["ok"] * len(latencies_s)
    return [
        RequestRecord(i, "ct-dicom", sent_s=i * spacing_s, latency_s=lat, status=status, scheduled_s=i * spacing_s)
        for i, (lat, status) in enumerate(zip(latencies_s, statuses, strict=True))
    ]


def _result(records, mode="open"):
    offsets = [r.scheduled_s for r in records] if mode == "open" else []
    duration = max(r.completed_s for r in records)
    return RunResult(mode, TARGET, records, "2025-01-01T00:00:00+00:00", duration, offsets=offsets)


def test_latency_percentiles_match_numpy_and_exclude_errors():
    rng = np.random.default_rng(0)
    latencies = list(rng.gamma(2.0, 0.05, size=500))
    statuses = ["ok"] * 480 + ["503"] * 20
    latencies[480:] = [9.0] * 20  # errors must not move the percentiles
    summary = summarize(_result(_records(latencies, statuses)))
    ok_ms = np.asarray(latencies[:480]) * 1000
    for name, q in (("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99)):
        assert getattr(summary.latency_ms, name) == pytest.approx(np.percentile(ok_ms, q))
    assert summary.latency_ms.max_ms == pytest.approx(ok_ms.max())
    assert summary.latency_ms.count == 480


def test_error_rate_and_errors_grouped_by_status():
    statuses = ["ok"] * 6 + ["400", "400", "timeout", "client_error"]
    summary = summarize(_result(_records([0.05] * 10, statuses)))
    assert summary.requests == 10
    assert summary.ok == 6
    assert summary.errors == 4
    assert summary.error_rate == pytest.approx(0.4)
    assert summary.errors_by_status == {"400": 2, "client_error": 1, "timeout": 1}
    assert summary.status_counts == {"400": 2, "client_error": 1, "ok": 6, "timeout": 1}


def test_throughput_and_offered_rate():
    # 11 requests, one every 0.1 s, each answered in 0.05 s: 1.05 s from start to last answer.
    summary = summarize(_result(_records([0.05] * 11)))
    assert summary.duration_s == pytest.approx(1.05)
    assert summary.throughput_rps == pytest.approx(11 / 1.05)
    assert summary.offered_rps == pytest.approx(10.0)


def test_per_second_series_counts_sends_completions_and_errors():
    records = [
        RequestRecord(0, "a", 0.1, 0.2, "ok"),
        RequestRecord(1, "a", 0.5, 0.7, "ok"),
        RequestRecord(2, "a", 0.9, 1.5, "400"),
        RequestRecord(3, "a", 1.2, 0.1, "ok"),
    ]
    rows = per_second(records)
    assert [row["sent"] for row in rows] == [3, 1, 0]
    assert [row["completed"] for row in rows] == [1, 2, 1]
    assert [row["errors"] for row in rows] == [0, 0, 1]
    assert rows[1]["latency_p50_ms"] == pytest.approx(400.0)
    assert rows[1]["latency_max_ms"] == pytest.approx(700.0)
    assert rows[2]["latency_p50_ms"] is None


def test_thresholds_pass_and_breach_with_exit_codes():
    summary = summarize(_result(_records([0.1] * 95 + [3.0] * 5, ["ok"] * 99 + ["503"])))
    assert breaches(summary, Thresholds()) == []
    assert exit_code(breaches(summary, Thresholds(max_error_rate=0.05, max_p99_ms=5000))) == 0
    (p99,) = breaches(summary, Thresholds(max_p99_ms=2000))
    assert p99.startswith("p99 latency") and "--max-p99-ms 2000" in p99
    (rate,) = breaches(summary, Thresholds(max_error_rate=0.0))
    assert "--max-error-rate 0" in rate and "503: 1" in rate
    assert exit_code(breaches(summary, Thresholds(max_error_rate=0.0, max_p99_ms=2000))) == 1


def test_p99_threshold_breaches_when_nothing_succeeded():
    summary = summarize(_result(_records([0.01] * 3, ["client_error"] * 3)))
    assert summary.latency_ms == LatencyStats.of([])
    (found,) = breaches(summary, Thresholds(max_p99_ms=100))
    assert "no successful request" in found


def test_json_report_schema(tmp_path):
    result = _result(_records([0.05, 0.06, 0.07], ["ok", "ok", "400"]))
    report = build_report(result, {"profile": "burst", "time_scale": 6.0}, Thresholds(max_error_rate=0.5))
    path = write_json(report, tmp_path / "nested" / "report.json")
    loaded = json.loads(path.read_text())
    assert loaded["schema"] == SCHEMA
    assert set(loaded) == {"schema", "started_at", "config", "summary", "thresholds", "per_second", "requests"}
    assert loaded["config"]["url"] == "127.0.0.1:8000"
    assert loaded["config"]["protocol"] == "http"
    assert loaded["config"]["profile"] == "burst"
    assert {"requests", "errors", "error_rate", "errors_by_status", "throughput_rps", "duration_s"} <= set(
        loaded["summary"]
    )
    assert set(loaded["summary"]["latency_ms"]) >= {"p50_ms", "p90_ms", "p99_ms", "max_ms"}
    assert loaded["thresholds"] == {"max_error_rate": 0.5, "max_p99_ms": None, "breaches": [], "passed": True}
    assert [r["status"] for r in loaded["requests"]] == ["ok", "ok", "400"]
    assert {"second", "sent", "completed", "errors", "latency_p50_ms"} <= set(loaded["per_second"][0])


def test_png_plot_is_a_real_png(tmp_path):
    records = _records([0.05, 0.2, 0.4, 0.3], ["ok", "ok", "503", "ok"], spacing_s=0.5)
    report = build_report(_result(records), {"profile": "ramp"})
    path = write_png(report, tmp_path / "plot.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] >= 800


@pytest.mark.parametrize(
    ("error", "protocol", "expected"),
    [
        (InferenceServerException("bad image", status="400"), "http", "400"),
        (InferenceServerException("queue full", status="503"), "http", "503"),
        (InferenceServerException("bad image", status="StatusCode.INVALID_ARGUMENT"), "grpc", "INVALID_ARGUMENT"),
        (InferenceServerException("slow", status="StatusCode.DEADLINE_EXCEEDED"), "grpc", "timeout"),
        (InferenceServerException("client-side check", status=None), "http", "client_error"),
        (TimeoutError(), "http", "timeout"),
        (ConnectionRefusedError("refused"), "http", "client_error"),
        (RequestFailed("bad_response", "FINDINGS shape (1, 3)"), "grpc", "bad_response"),
    ],
)
def test_errors_are_classified_by_status(error, protocol, expected):
    status, message = classify_error(error, protocol)
    assert status == expected
    assert message


def test_target_accepts_a_scheme_and_turns_tls_on_for_https():
    assert Target.parse("http://triton.example:8000/") == Target("triton.example:8000")
    assert Target.parse("https://triton.example", "http").ssl is True


@pytest.mark.parametrize(
    "argv",
    [
        ["--concurrency", "2"],
        ["--requests", "10"],
        ["--time-scale", "0"],
        ["--profile", "spike"],
        ["--profile", "burst", "--concurrency", "2", "--requests", "4"],
        ["--perf-analyzer"],
        ["--concurrency", "2", "--requests", "4", "--perf-analyzer", "--protocol", "grpc"],
        ["--start-local", "--url", "127.0.0.1:8000"],
        ["--max-error-rate", "-1"],
        ["--images", "no-such-image"],
    ],
)
def test_cli_usage_errors_exit_2(argv, tmp_path, capsys):
    assert cli.main([*argv, "--output-dir", str(tmp_path), "--no-progress"]) == 2
    assert capsys.readouterr().err


def test_cli_fails_with_one_line_when_the_server_is_unreachable(tmp_path, capsys):
    from radstream_triton.server import free_port

    url = f"127.0.0.1:{free_port()}"  # nothing listens there
    assert cli.main(["--url", url, "--output-dir", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("loadtest: FAILED:") and url in err[-1]


def test_perf_analyzer_input_is_a_length_prefixed_base64_bytes_tensor(ct_bytes):
    document = perf_analyzer.input_data(ct_bytes)
    (entry,) = document["data"]
    tensor = entry["IMAGE_BYTES"]
    assert tensor["shape"] == [1]
    raw = base64.b64decode(tensor["b64"])
    assert int.from_bytes(raw[:4], "little") == len(ct_bytes)
    assert raw[4:] == ct_bytes


def test_perf_analyzer_csv_is_parsed(tmp_path):
    path = tmp_path / "pa.csv"
    path.write_text(
        "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
        "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
        "2,42.0258,145,3015,1,340,42472,1021,430,43963,52766,62289,107983\n"
    )
    values = perf_analyzer.parse_csv(path)
    assert values["concurrency"] == 2
    assert values["throughput_rps"] == pytest.approx(42.0258)
    assert values["p50_usec"] == 43963
    with pytest.raises(perf_analyzer.PerfAnalyzerError):
        perf_analyzer.parse_csv(tmp_path / "missing.csv")


def test_perf_analyzer_libraries_are_linked_under_their_plain_names(tmp_path):
    libs = perf_analyzer.library_directory(tmp_path)
    for name in ("libb64.so.0d", "libcudart.so.12"):
        assert (libs / name).is_symlink()
        assert (libs / name).resolve().is_file()
    env = perf_analyzer.environment(tmp_path, base={"LD_LIBRARY_PATH": "/opt/x"})
    paths = env["LD_LIBRARY_PATH"].split(os.pathsep)
    assert paths[0] == str(libs)
    assert paths[-1] == "/opt/x"
    assert any(p.endswith("nvidia_pytriton.libs") for p in paths)


def _runs(throughputs, p50s):
    return [{"throughput_rps": t, "p50_latency_ms": p} for t, p in zip(throughputs, p50s, strict=True)]


def test_cross_check_pairs_each_perf_analyzer_run_with_the_tool_runs_around_it():
    check = cli.CrossCheck(
        2,
        "ct-dicom",
        loadtest_runs=_runs([40, 44, 30, 42], [50, 46, 66, 48]),
        perf_analyzer_runs=_runs([42, 30, 50], [48, 80, 40]),
    )
    assert check.pairs("throughput_rps") == [(42, 42), (37, 30), (36, 50)]
    differences = check.differences()
    # One pair disturbed each way; the median pair agrees exactly.
    assert differences["throughput_rps"]["relative_difference"] == pytest.approx(0.0)
    assert differences["p50_latency_ms"]["relative_difference"] == pytest.approx(0.0)
    assert check.breaches(0.10) == []


def test_cross_check_flags_a_systematic_difference():
    check = cli.CrossCheck(
        2,
        "ct-dicom",
        loadtest_runs=_runs([46, 46, 46, 46], [40, 40, 40, 40]),
        perf_analyzer_runs=_runs([40, 40, 40], [40, 40, 40]),
    )
    (found,) = check.breaches(0.10)
    assert found.startswith("throughput_rps differs from perf_analyzer by 15.0%")
    assert check.as_dict(0.10)["tolerance"] == 0.10
