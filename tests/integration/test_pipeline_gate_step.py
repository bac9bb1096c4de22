"""The pipeline's HealthGate step, run as CodeBuild runs it (one bash, commands in order), against a
Lambda Invoke endpoint on loopback whose gate takes longer than the AWS CLI's 60 s read timeout.

The ``aws`` on PATH is ``fake_aws_cli.py``: the CLI's options over the real botocore Lambda client
(timeouts, retries). Time is scaled down by ``SCALE`` on both sides (the gate's 75 s and the CLI's
60 s default alike), so "longer than a minute" takes seconds; what is compared is the ratio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cdk_app.pipeline_stack import HEALTH_GATE_COMMANDS

SCALE = 0.04  # 75 s gate -> 3.0 s; the CLI's 60 s default -> 2.4 s
GATE_SECONDS = 75.0
FUNCTION = "RadStream-dev-HooksHealthCheck0123-ABCDEF"
# The step before this change (commit 4549c36), for the comparison.
OLD_COMMANDS = (
    'aws lambda invoke --function-name "$HEALTH_FUNCTION" --payload \'{"source": "pipeline"}\' '
    "--cli-binary-format raw-in-base64-out --log-type None gate.json > invoke.json",
    "cat gate.json invoke.json",
    "! grep -q FunctionError invoke.json",
)
PASSED = "HEALTH GATE PASSED in 74.2 s: rollout: deployment rolled out; triton: 4 models READY"
FAILED = "HEALTH GATE FAILED: rollout: deployment radstream/triton-inference-server exceeded its progress deadline"


@dataclass
class FakeLambda:
    """Lambda's Invoke API (POST /2015-03-31/functions/<name>/invocations): the gate runs, then answers."""

    ok: bool = True
    invocations: list[str] = field(default_factory=list)

    def answer(self) -> tuple[dict[str, str], bytes]:
        if self.ok:
            return {}, json.dumps({"ok": True, "summary": PASSED}).encode()
        body = {"errorMessage": FAILED, "errorType": "HealthGateFailed", "requestId": "0", "stackTrace": []}
        return {"X-Amz-Function-Error": "Unhandled"}, json.dumps(body).encode()


@pytest.fixture
def fake_lambda() -> Iterator[tuple[FakeLambda, str]]:
    state = FakeLambda()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.invocations.append(self.path)
            time.sleep(GATE_SECONDS * SCALE)
            headers, body = state.answer()
            try:
                self.send_response(200)
                for name, value in {**headers, "X-Amz-Executed-Version": "7"}.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up
                pass

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_step(commands: tuple[str, ...], endpoint: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    aws = bin_dir / "aws"
    aws.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).with_name("fake_aws_cli.py")}" "$@"\n')
    aws.chmod(0o755)
    python3 = bin_dir / "python3"
    python3.symlink_to(sys.executable)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HEALTH_FUNCTION": FUNCTION,
        "FAKE_LAMBDA_ENDPOINT": endpoint,
        "FAKE_AWS_TIME_SCALE": str(SCALE),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    script = "set -e\n" + "\n".join(commands) + "\n"
    return subprocess.run(
        ["bash", "-c", script], cwd=workdir, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_step_waits_for_a_gate_longer_than_the_cli_read_timeout(fake_lambda, tmp_path: Path) -> None:
    """Defect 2: a 75 s gate (scaled) passes through the step, invoked exactly once."""
    state, endpoint = fake_lambda
    result = run_step(HEALTH_GATE_COMMANDS, endpoint, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(PASSED)
    assert len(state.invocations) == 1
    assert state.invocations[0] == f"/2015-03-31/functions/{FUNCTION}/invocations"


def test_a_failed_gate_fails_the_step_with_the_gates_one_line_reason(fake_lambda, tmp_path: Path) -> None:
    state, endpoint = fake_lambda
    state.ok = False
    result = run_step(HEALTH_GATE_COMMANDS, endpoint, tmp_path)
    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[-1] == FAILED
    assert len(state.invocations) == 1


def test_the_old_step_timed_out_and_invoked_the_gate_again(fake_lambda, tmp_path: Path) -> None:
    """What the step did before: the CLI's 60 s read timeout cut the 75 s gate, retried it, and failed."""
    state, endpoint = fake_lambda
    result = run_step(OLD_COMMANDS, endpoint, tmp_path)
    assert result.returncode != 0
    assert "Read timeout on endpoint URL" in result.stderr
    assert len(state.invocations) == 3, "each retry started another gate"
