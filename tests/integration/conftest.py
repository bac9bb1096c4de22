"""The real Triton server (from the nvidia-pytriton wheel), started once per
test session on free loopback ports, serving the CPU variant of the repository."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from radstream_triton.cpu_repository import build_cpu_repository
from radstream_triton.server import LocalTritonServer

ADMIN_KEY = "test-admin-key"


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTritonServer]:
    build_dir = tmp_path_factory.mktemp("triton")
    repository = build_cpu_repository(build_dir / "model_repository", cpu_instances=1)
    server = LocalTritonServer(repository, build_dir, admin_key=ADMIN_KEY, exit_timeout_secs=5)
    server.start()
    try:
        server.wait_ready(timeout_s=120)
        yield server
    finally:
        code = server.stop()
        print(f"tritonserver exit status {code}")


@pytest.fixture
def http_client(triton_server: LocalTritonServer) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(triton_server.http_url, network_timeout=120)
    yield client
    client.close()


@pytest.fixture
def grpc_client(triton_server: LocalTritonServer) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    yield client
    client.close()
