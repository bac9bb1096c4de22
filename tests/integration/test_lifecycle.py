"""Start-up and shutdown as the platform relies on them: the local platform's
main command, and SIGTERM draining in-flight requests before a clean exit."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tritonclient.http as httpclient

from radstream_triton.cpu_repository import build_cpu_repository
from radstream_triton.server import LocalTritonServer, free_port
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration


def test_sigterm_lets_an_in_flight_request_finish_then_exits_0(tmp_path, chest_xray_bytes):
    server = LocalTritonServer(build_cpu_repository(tmp_path / "repo"), tmp_path, exit_timeout_secs=20)
    server.start()
    server.wait_ready()
    outcome: dict[str, object] = {}

    batch = np.array([[chest_xray_bytes]] * 8, dtype=object)  # ~2 s of decoding on CPU
    connected = threading.Event()

    def request() -> None:
        client = httpclient.InferenceServerClient(server.http_url, network_timeout=60)
        try:
            assert client.is_server_live()  # the keep-alive connection is open before SIGTERM
            connected.set()
            tensor = httpclient.InferInput("IMAGE_BYTES", [8, 1], "BYTES")
            tensor.set_data_from_numpy(batch)
            outcome["findings"] = client.infer("radstream_pipeline", [tensor]).as_numpy("FINDINGS")
        except Exception as error:
            outcome["error"] = error
        finally:
            connected.set()
            client.close()

    worker = threading.Thread(target=request)
    worker.start()
    assert connected.wait(timeout=30)
    time.sleep(0.5)  # sent (loopback) and being decoded, far from done
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    worker.join(timeout=60)
    code = server.process.wait(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["findings"].shape == (8, 14)
    assert code == 0, server.log_tail()


def test_local_platform_serves_checks_and_stops_cleanly(tmp_path):
    ports = [str(free_port()) for _ in range(3)]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "radstream_triton.local_platform",
            "--check-only",
            "--http-port",
            ports[0],
            "--grpc-port",
            ports[1],
            "--metrics-port",
            ports[2],
            "--build-dir",
            str(tmp_path),
        ],
        cwd=REPO_ROOT / "triton",
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"HEALTHY 127.0.0.1:{ports[0]}: live, ready, models, smoke_inference" in result.stdout
    assert f"curl -i http://127.0.0.1:{ports[0]}/v2/health/ready" in result.stdout
    assert "Triton stopped (exit status 0)." in result.stdout
    assert (tmp_path / "chest_xray_request.bin").stat().st_size > 7_000_000


def test_server_refuses_to_start_on_a_broken_repository(tmp_path):
    repository = build_cpu_repository(tmp_path / "repo")
    (repository / "cxr_classifier" / "config.pbtxt").write_text('name: "cxr_classifier"\nbackend: "python"\n')
    server = LocalTritonServer(repository, tmp_path)
    server.start()
    with pytest.raises(Exception, match="exited with"):
        server.wait_ready(timeout_s=60)
    assert server.process is not None and server.process.returncode != 0
