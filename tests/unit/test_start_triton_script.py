"""start_triton.sh: hardened flags, configuration from the environment, and one
clear line for each bad setting. A recording stand-in replaces tritonserver here;
the integration tests run the script with the real server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import MODEL_REPOSITORY, TRITON_DIR

SCRIPT = TRITON_DIR / "start_triton.sh"


@pytest.fixture
def fake_server(tmp_path: Path) -> Path:
    """Prints its PID and arguments, one per line, instead of serving."""
    binary = tmp_path / "tritonserver"
    binary.write_text('#!/usr/bin/env bash\n[[ "${1:-}" == --help ]] && exit 0\necho "pid=$$"\nprintf "%s\\n" "$@"\n')
    binary.chmod(0o755)
    return binary


def run_script(fake_server: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ["PATH"],
        "MODEL_REPOSITORY": str(MODEL_REPOSITORY),
        "TRITONSERVER_BIN": str(fake_server),
        "TRITON_ADMIN_KEY": "k3y",
        **env,
    }
    return subprocess.run(
        ["bash", str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=30, check=False
    )


def test_defaults_give_the_hardened_command_line(fake_server):
    result = run_script(fake_server)
    assert result.returncode == 0, result.stderr
    args = result.stdout.splitlines()[1:]
    for flag in (
        f"--model-repository={MODEL_REPOSITORY}",
        "--model-control-mode=none",
        "--strict-readiness=true",
        "--exit-on-error=true",
        "--disable-auto-complete-config",
        "--exit-timeout-secs=25",
        "--http-port=8000",
        "--grpc-port=8001",
        "--metrics-port=8002",
        "--allow-sagemaker=false",
        "--allow-vertex-ai=false",
        "--http-restricted-api=model-repository,model-config,shared-memory,trace,logging:admin-key=k3y",
        "--grpc-restricted-protocol=model-repository,model-config,shared-memory,trace,logging:admin-key=k3y",
        # Latency quantiles for CloudWatch (cdk_app/metric_catalog.py): p50, p95, p99, highest last.
        "--metrics-config=summary_latencies=true",
        "--metrics-config=summary_quantiles=0.5:0.05,0.95:0.01,0.99:0.001",
    ):
        assert flag in args
    # The stand-in's --help does not list --http-max-input-size (as in 2.51): not passed.
    assert not any(a.startswith("--http-max-input-size") for a in args)


def test_http_max_input_size_is_passed_when_the_server_supports_it(fake_server):
    fake_server.write_text(
        '#!/usr/bin/env bash\n[[ "${1:-}" == --help ]] && { echo "  --http-max-input-size <integer>"; exit 0; }\n'
        'printf "%s\\n" "$@"\n'
    )
    result = run_script(fake_server, TRITON_HTTP_MAX_INPUT_BYTES="1048576")
    assert "--http-max-input-size=1048576" in result.stdout.splitlines()


def test_environment_overrides_and_extra_arguments(fake_server):
    result = subprocess.run(
        ["bash", str(SCRIPT), "--model-load-thread-count=2"],
        env={
            "PATH": os.environ["PATH"],
            "MODEL_REPOSITORY": "s3://radstream-models/prod",
            "TRITONSERVER_BIN": str(fake_server),
            "TRITON_ADMIN_KEY": "k3y",
            "TRITON_HTTP_PORT": "9000",
            "TRITON_LOG_LEVEL": "verbose",
            "TRITON_EXIT_TIMEOUT_SECS": "55",
            "TRITON_BIND_ADDRESS": "127.0.0.1",
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    args = result.stdout.splitlines()
    assert "--model-repository=s3://radstream-models/prod" in args
    assert "--http-port=9000" in args and "--log-verbose=1" in args and "--exit-timeout-secs=55" in args
    assert "--http-address=127.0.0.1" in args
    assert args[-1] == "--model-load-thread-count=2"


def test_exec_replaces_the_shell_so_signals_reach_the_server(fake_server):
    process = subprocess.Popen(
        ["bash", str(SCRIPT)],
        env={
            "PATH": os.environ["PATH"],
            "MODEL_REPOSITORY": str(MODEL_REPOSITORY),
            "TRITONSERVER_BIN": str(fake_server),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = process.communicate(timeout=30)
    assert stdout.splitlines()[0] == f"pid={process.pid}"
    assert "admin APIs are locked with a random key" in stderr


def test_admin_key_is_read_from_the_mounted_secret_file(fake_server, tmp_path):
    key_file = tmp_path / "admin-key"
    key_file.write_text("from-the-secret\n")
    result = run_script(fake_server, TRITON_ADMIN_KEY="", TRITON_ADMIN_KEY_FILE=str(key_file))
    assert any(a.endswith(":admin-key=from-the-secret") for a in result.stdout.splitlines())
    missing = run_script(fake_server, TRITON_ADMIN_KEY="", TRITON_ADMIN_KEY_FILE=str(tmp_path / "absent"))
    assert missing.returncode == 0
    assert "admin APIs are locked with a random key" in missing.stderr


def test_unset_admin_key_locks_admin_apis_with_a_random_key(fake_server):
    env = {"PATH": os.environ["PATH"], "MODEL_REPOSITORY": str(MODEL_REPOSITORY), "TRITONSERVER_BIN": str(fake_server)}
    keys = set()
    for _ in range(2):
        out = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, check=True).stdout
        (restricted,) = [a for a in out.splitlines() if a.startswith("--http-restricted-api=")]
        keys.add(restricted.split("admin-key=")[1])
    assert len(keys) == 2 and all(len(k) == 48 for k in keys)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"TRITON_LOG_LEVEL": "chatty"}, "TRITON_LOG_LEVEL=chatty is not one of error, warning, info, verbose"),
        ({"MODEL_REPOSITORY": "/nonexistent/models"}, "MODEL_REPOSITORY=/nonexistent/models is not a directory"),
        ({"MODEL_REPOSITORY": str(TRITON_DIR)}, "holds no model (no */config.pbtxt)"),
        ({"TRITON_HTTP_PORT": "eighty"}, "TRITON_HTTP_PORT=eighty is not a port number (1-65535)"),
        ({"TRITON_GRPC_PORT": "70000"}, "TRITON_GRPC_PORT=70000 is not a port number (1-65535)"),
        ({"TRITON_METRICS_PORT": "0"}, "TRITON_METRICS_PORT=0 is not a port number (1-65535)"),
        ({"TRITON_GRPC_PORT": "8000"}, "must differ"),
        ({"TRITON_EXIT_TIMEOUT_SECS": "soon"}, "TRITON_EXIT_TIMEOUT_SECS=soon is not a positive integer"),
        ({"TRITON_HTTP_MAX_INPUT_BYTES": "-1"}, "TRITON_HTTP_MAX_INPUT_BYTES=-1 is not a positive integer"),
        ({"TRITON_ADMIN_KEY": "bad key;"}, "TRITON_ADMIN_KEY must be letters, digits"),
        ({"TRITON_BIND_ADDRESS": "everywhere"}, "TRITON_BIND_ADDRESS=everywhere is not an IPv4 address"),
        ({"TRITONSERVER_BIN": "/nonexistent/tritonserver"}, "is not an executable"),
    ],
)
def test_bad_setting_exits_non_zero_with_one_clear_line(fake_server, setting, message):
    result = run_script(fake_server, **setting)
    assert result.returncode == 64
    assert result.stdout == "", "tritonserver must not start"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("start_triton.sh: ")
    assert message in lines[0]
