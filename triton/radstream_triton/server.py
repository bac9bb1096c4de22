"""Start the real ``tritonserver`` from the ``nvidia-pytriton`` wheel, on CPU.

Used by the local platform (``make local``) and by the integration tests. The
server is always launched through ``triton/start_triton.sh``, the same script
the container runs; this module only supplies the environment a pip-installed
server needs (library path, Python backend stub, interpreter on PATH).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

TRITON_DIR = Path(__file__).resolve().parents[1]
START_SCRIPT = TRITON_DIR / "start_triton.sh"


class ServerError(RuntimeError):
    """The server could not be prepared, failed to start, or died."""


@dataclass(frozen=True)
class PytritonInstall:
    """Where the wheel put the server, its backends and its bundled libraries."""

    package_dir: Path

    @classmethod
    def find(cls) -> PytritonInstall:
        try:
            import pytriton
        except ImportError as error:
            raise ServerError("nvidia-pytriton is not installed: run `make install`") from error
        return cls(Path(pytriton.__file__).resolve().parent)

    @property
    def server_binary(self) -> Path:
        return self.package_dir / "tritonserver" / "bin" / "tritonserver"

    @property
    def python_backend(self) -> Path:
        return self.package_dir / "tritonserver" / "backends" / "python"

    @property
    def python_stub(self) -> Path:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return self.package_dir / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub"

    @property
    def bundled_libraries(self) -> Path:
        return self.package_dir.parent / "nvidia_pytriton.libs"

    def backend_directory(self, build_dir: Path) -> Path:
        """A backends folder in ``build_dir``: the wheel's Python backend plus the stub
        for this interpreter (the wheel keeps stubs aside; site-packages stays untouched)."""
        backends = build_dir / "backends"
        python = backends / "python"
        python.mkdir(parents=True, exist_ok=True)
        for source in [*self.python_backend.glob("*.so"), *self.python_backend.glob("*.py"), self.python_stub]:
            if not source.exists():
                raise ServerError(f"the nvidia-pytriton wheel lacks {source}")
            target = python / source.name
            if not target.exists() or target.stat().st_size != source.stat().st_size:
                shutil.copy2(source, target)
        return backends

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        interpreter_bin = str(Path(sys.executable).parent)
        # The stub links libpython and finds `python3` on PATH: both must be this venv's.
        library_path = [sysconfig.get_config_var("LIBDIR") or "", str(self.bundled_libraries)]
        if env.get("LD_LIBRARY_PATH"):
            library_path.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in library_path if p)
        env["PATH"] = os.pathsep.join([interpreter_bin, env.get("PATH", "")])
        env["TRITONSERVER_BIN"] = str(self.server_binary)
        return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalTritonServer:
    """One ``tritonserver`` process serving ``model_repository`` on loopback ports."""

    model_repository: Path
    build_dir: Path
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    admin_key: str = "local-admin-key"
    log_level: str = "info"
    exit_timeout_secs: int = 10
    log_path: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> None:
        install = PytritonInstall.find()
        env = install.environment()
        env.update(
            MODEL_REPOSITORY=str(self.model_repository),
            TRITON_HTTP_PORT=str(self.http_port),
            TRITON_GRPC_PORT=str(self.grpc_port),
            TRITON_METRICS_PORT=str(self.metrics_port),
            TRITON_LOG_LEVEL=self.log_level,
            TRITON_EXIT_TIMEOUT_SECS=str(self.exit_timeout_secs),
            TRITON_ADMIN_KEY=self.admin_key,
            TRITON_BIND_ADDRESS="127.0.0.1",
            TRITON_BACKEND_DIR=str(install.backend_directory(self.build_dir)),
        )
        env.update(self.extra_env)
        self.log_path = self.log_path or self.build_dir / "tritonserver.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            ["bash", str(START_SCRIPT)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout_s: float = 120.0) -> float:
        """Block until /v2/health/ready answers 200; returns the seconds waited."""
        started = time.monotonic()
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() - started < timeout_s:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(f"tritonserver exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise ServerError(f"tritonserver not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (Triton drains in-flight requests), then SIGKILL if it overstays."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> LocalTritonServer:
        self.start()
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
