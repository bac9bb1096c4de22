"""RadStream's local platform: the real Triton server on CPU, serving the repository.

``make local`` runs this. It generates the CPU model repository, starts
``tritonserver`` (from the ``nvidia-pytriton`` wheel) through ``start_triton.sh``,
waits for readiness, runs ``health_check.py`` with a smoke inference on a real
chest X-ray, prints the addresses and a curl example, then serves until Ctrl-C
or SIGTERM, when Triton drains in-flight requests and exits.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from radstream_triton.cpu_repository import build_cpu_repository
from radstream_triton.server import TRITON_DIR, LocalTritonServer, ServerError

sys.path.insert(0, str(TRITON_DIR))
import health_check

BUILD_DIR = TRITON_DIR.parent / "build" / "local"
LABELS = (TRITON_DIR / "model_repository" / "cxr_classifier" / "labels.txt").read_text().split()


def chest_xray_path() -> Path:
    """The real chest radiograph shipped by pydicom-data (CR, 1955x1841, 16-bit)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file("RG1_UNCR.dcm")
    if path is None:
        raise ServerError("RG1_UNCR.dcm not found: is pydicom-data installed?")
    return Path(str(path))


def binary_infer_request(payload: bytes, outputs: list[str]) -> tuple[bytes, int]:
    """A KServe v2 request with the image as a binary BYTES tensor (Triton's
    binary-data extension), asking for JSON outputs: body and JSON header length."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "IMAGE_BYTES",
                    "shape": [1, 1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(payload) + 4},
                }
            ],
            "outputs": [{"name": name, "parameters": {"binary_data": False}} for name in outputs],
        }
    ).encode()
    return header + len(payload).to_bytes(4, "little") + payload, len(header)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--build-dir", type=Path, default=BUILD_DIR)
    parser.add_argument("--log-level", default="warning", choices=("error", "warning", "info", "verbose"))
    parser.add_argument("--admin-key", default="local-admin-key")
    parser.add_argument("--check-only", action="store_true", help="start, check, stop (no serving loop)")
    args = parser.parse_args(argv)

    repository = build_cpu_repository(args.build_dir / "model_repository")
    server = LocalTritonServer(
        repository,
        args.build_dir,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        admin_key=args.admin_key,
        log_level=args.log_level,
    )
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        print(f"\n{signal.Signals(signum).name}: draining in-flight requests and stopping Triton...", flush=True)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    print(f"Starting Triton (CPU) on {repository} ...", flush=True)
    server.start()
    try:
        waited = server.wait_ready()
        print(f"Triton ready in {waited:.1f} s (log: {server.log_path})")
        image = chest_xray_path()
        report = health_check.check_health(server.http_url, smoke_payload=image.read_bytes(), timeout_s=60)
        print(report.summary())
        if not report.ok:
            return 1
        body, header_length = binary_infer_request(image.read_bytes(), ["FINDINGS"])
        request_file = args.build_dir / "chest_xray_request.bin"
        request_file.write_bytes(body)
        print(
            f"""
RadStream local platform (real Triton {server.http_url}, CPU; no GPU, Kubernetes or AWS):
  HTTP     http://{server.http_url}   (ready: /v2/health/ready)
  gRPC     {server.grpc_url}
  metrics  {server.metrics_url}
  admin    header 'admin-key: {args.admin_key}' for repository/config/trace/logging APIs

Try it:
  curl -i http://{server.http_url}/v2/health/ready
  curl -s -X POST http://{server.http_url}/v2/models/radstream_pipeline/infer \\
       -H 'Inference-Header-Content-Length: {header_length}' \\
       -H 'Content-Type: application/octet-stream' --data-binary @{request_file}
  python3 triton/health_check.py --url {server.http_url} --smoke-image {image} --json

Findings are listed in the order of {TRITON_DIR / "model_repository/cxr_classifier/labels.txt"}.
Serving until Ctrl-C.""",
            flush=True,
        )
        if args.check_only:
            return 0
        while not stop.is_set():
            if server.process is not None and server.process.poll() is not None:
                print(f"tritonserver exited unexpectedly ({server.process.returncode}):\n{server.log_tail()}")
                return 1
            stop.wait(1.0)
        return 0
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        code = server.stop()
        print(f"Triton stopped (exit status {code}).", flush=True)


if __name__ == "__main__":
    sys.exit(main())
