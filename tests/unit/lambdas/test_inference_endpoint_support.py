"""Test support for the inference endpoint, shared by its unit and integration tests (and self-tested here).

- ``StubTriton``: a tiny HTTP server speaking the part of Triton's v2 protocol the endpoint uses
  (pipeline infer, model metadata), answering with scripted outputs or errors, so tritonclient
  itself is exercised without a Triton server.
- ``LambdaContext``: the attributes Powertools reads from a Lambda context.
- ``lambda_error_payload``: what the Lambda Python runtime returns when a handler raises.
- ``StateMachineSandbox``: the real ASL document from ``cdk_app/state_machine_definition.py`` run by
  moto's Step Functions interpreter (``execute_state_machine``) with moto S3, IAM and Lambda.

How the Lambda task is answered (moto 5.2.5): moto's Step Functions interpreter calls moto's Lambda
``Invoke`` API, which runs the function's code only inside Docker (``LambdaFunction._invoke_lambda``),
and there is no Docker here. Moto's alternatives do not fit: its Docker-less Lambda
(``lambda: {use_docker: False}``) returns canned strings and can never report a function error, and
its Step Functions "mocked responses" loader is stubbed out (``load_mock_test_case_for`` returns None).
So the sandbox replaces exactly that one Docker seam: ``_invoke_lambda`` runs a Python callable (the
real handler) in-process and turns a raised exception into the Lambda runtime's error payload
(``errorType`` = the exception class name, ``FunctionError`` set). Everything else is moto's:
the Lambda API response, the interpreter's Retry/Catch/Choice/Pass/Fail, the intrinsic functions,
the ``aws-sdk:s3:putObject`` integration writing to moto S3, and the execution history. The retry
waits are recorded instead of slept (moto's retrier calls ``time.sleep``), so the test checks the
backoff the interpreter computed without waiting 30 s.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import struct
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws
from moto.awslambda.models import LambdaFunction
from moto.core.exceptions import JsonRESTError
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

from cdk_app.config import RetryConfig
from cdk_app.state_machine_definition import STATE_MACHINE_NAME, build_definition

REGION = "us-east-1"
INPUT_BUCKET = "radstream-studies"
RESULTS_BUCKET = "radstream-results"
LABEL_COUNT = 14
LOG_HASH_KEY_SECRET = "radstream/test/log-hash-key"
LOG_HASH_KEY = "k3y-for-the-study-id-hash-0123456789abcdef0123456789"


def create_log_hash_key(region: str = REGION) -> None:
    """The stage's log hash key in (moto) Secrets Manager, as cdk_app/inference_api.py deploys it."""
    boto3.client("secretsmanager", region_name=region).create_secret(
        Name=LOG_HASH_KEY_SECRET, SecretString=LOG_HASH_KEY
    )


def free_port() -> int:
    """A loopback port with nothing listening (the OS hands out ports sequentially, not this one again soon)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def set_aws_test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a region for moto; Powertools without X-Ray."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def set_endpoint_environment(monkeypatch: pytest.MonkeyPatch, triton_url: str, **extra: str) -> None:
    monkeypatch.setenv("TRITON_URL", triton_url)
    monkeypatch.delenv("TRITON_URL_PARAMETER", raising=False)
    monkeypatch.setenv("RESULTS_BUCKET", RESULTS_BUCKET)
    monkeypatch.setenv("RESULTS_PREFIX", "results")
    monkeypatch.setenv("TRITON_TIMEOUT_SECONDS", "60")
    monkeypatch.setenv("INFERENCE_DEADLINE_SECONDS", "120")
    monkeypatch.setenv("S3_PHASE_BUDGET_SECONDS", "30")
    monkeypatch.setenv("LOG_HASH_KEY_SECRET", LOG_HASH_KEY_SECRET)
    monkeypatch.setenv("STAGE", "test")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "radstream-inference-endpoint")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "RadStreamTest")
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


@dataclass
class LambdaContext:
    function_name: str = "radstream-inference-endpoint"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:radstream-inference-endpoint"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    remaining_ms: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def lambda_error_payload(error: BaseException, request_id: str) -> dict[str, Any]:
    """The Lambda Python runtime's answer when a handler raises (errorType is the class name)."""
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_tb(error.__traceback__),
    }


def emf_metrics(stdout: str) -> list[dict[str, Any]]:
    """The CloudWatch embedded-metric-format documents Powertools printed."""
    documents = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{") and '"_aws"' in line:
            documents.append(json.loads(line))
    return documents


def metric_values(stdout: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for document in emf_metrics(stdout):
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                values[metric["Name"]] = float(value[0] if isinstance(value, list) else value)
    return values


# --- A stub of Triton's HTTP/REST v2 protocol -------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer to an infer request: outputs (status 200) or an error."""

    status: int = 200
    error: str = ""
    findings: np.ndarray | None = None
    mask: np.ndarray | None = None


def _decode_bytes_input(body: bytes, header_length: int) -> tuple[dict[str, Any], list[bytes]]:
    header = json.loads(body[:header_length])
    raw = body[header_length:]
    items = []
    while raw:
        (length,) = struct.unpack("<I", raw[:4])
        items.append(raw[4 : 4 + length])
        raw = raw[4 + length :]
    return header, items


class StubTriton:
    """Answers POST /v2/models/radstream_pipeline/infer from a script and GET /v2/models/<name>."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.default = Reply(
            findings=np.linspace(0.05, 0.95, LABEL_COUNT, dtype=np.float32).reshape(1, LABEL_COUNT),
            mask=np.zeros((1, 1, 256, 256), np.float32),
        )
        self.images: list[bytes] = []
        self.lock = threading.Lock()
        self.metadata_status = 200
        # When set: the reply to an infer request is computed from the image (distinct studies, distinct outputs).
        self.reply_for: Callable[[bytes], Reply] | None = None
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, document: dict[str, Any]) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                with stub.lock:
                    stub.metadata_requests += 1
                if stub.metadata_status != 200:
                    self._send(stub.metadata_status, {"error": "metadata unavailable"})
                    return
                name = self.path.rstrip("/").rsplit("/", 1)[-1]
                self._send(200, {"name": name, "versions": ["1"], "platform": "stub"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                header_length = int(self.headers.get("Inference-Header-Content-Length", len(body)))
                _, items = _decode_bytes_input(body, header_length)
                with stub.lock:
                    stub.images.extend(items)
                    if stub.script:
                        reply = stub.script.pop(0)
                    elif stub.reply_for is not None:
                        reply = stub.reply_for(items[0])
                    else:
                        reply = stub.default
                if reply.status != 200:
                    self._send(reply.status, {"error": reply.error})
                    return
                assert reply.findings is not None and reply.mask is not None
                outputs = [
                    {"name": name, "datatype": "FP32", "shape": list(array.shape), "data": array.ravel().tolist()}
                    for name, array in (("FINDINGS", reply.findings), ("LESION_MASK", reply.mask))
                ]
                self._send(200, {"model_name": "radstream_pipeline", "model_version": "1", "outputs": outputs})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.metadata_requests = 0
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StubTriton:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class TcpForwarder:
    """Listens on a loopback port and pipes each connection to ``target`` ("host:port"): a server that
    comes up on an address where nothing listened before."""

    def __init__(self, port: int, target: str) -> None:
        host, target_port = target.rsplit(":", 1)
        self.target = (host, int(target_port))
        self.listener = socket.create_server(("127.0.0.1", port))
        self.listener.settimeout(0.1)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=2)
        self.listener.close()


# --- moto Step Functions sandbox ---------------------------------------------------------------------


class TooManyRequestsException(JsonRESTError):
    """What the Lambda service answers when throttling (HTTP 429)."""

    code = 429

    def __init__(self) -> None:
        super().__init__("TooManyRequestsException", "Rate Exceeded.")


@dataclass
class ExecutionReport:
    status: str
    output: Any
    error: str | None
    cause: str | None
    history: list[dict[str, Any]]
    waits: list[float]

    @property
    def lambda_attempts(self) -> int:
        return sum(
            1
            for event in self.history
            if event["type"] == "TaskScheduled" and event["taskScheduledEventDetails"]["resourceType"] == "lambda"
        )

    @property
    def states_entered(self) -> list[str]:
        return [
            event["stateEnteredEventDetails"]["name"] for event in self.history if "stateEnteredEventDetails" in event
        ]


class StateMachineSandbox:
    """moto S3 + IAM + Lambda + Step Functions holding RadStreamInference; ``runtime`` answers each
    Lambda invocation in-process: it gets the event and returns the payload, or raises."""

    def __init__(
        self,
        runtime: Callable[[dict[str, Any]], Any],
        monkeypatch: pytest.MonkeyPatch,
        *,
        sleep: bool = False,
        one_container: bool = True,
    ) -> None:
        """``sleep``: the retry waits really elapse (for tests where time matters, with short policies);
        otherwise they are recorded and skipped. Invocations run one at a time, as in one container."""
        self.runtime = runtime
        self.sleep = sleep
        self.container: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if one_container else contextlib.nullcontext()
        )
        self.waits: list[float] = []
        self.on_wait: Callable[[float], None] | None = None
        self.invocations: list[dict[str, Any]] = []
        sandbox = self

        def invoke_in_process(function: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
            # Replaces moto's Docker run of the function; returns (payload, errored, logs) like it.
            payload = event if isinstance(event, dict) else json.loads(event or "{}")
            sandbox.invocations.append(payload)
            request_id = str(uuid.uuid4())
            try:
                with sandbox.container:
                    return json.dumps(sandbox.runtime(payload)), False, ""
            except JsonRESTError:
                raise  # a Lambda *service* error: moto's Invoke API answers it as such
            except Exception as error:
                return json.dumps(lambda_error_payload(error, request_id)), True, ""

        class RecordingClock:
            @staticmethod
            def sleep(seconds: float) -> None:
                sandbox.waits.append(seconds)
                if sandbox.on_wait is not None:
                    sandbox.on_wait(seconds)
                if sandbox.sleep:
                    time.sleep(seconds)

        monkeypatch.setattr(LambdaFunction, "_invoke_lambda", invoke_in_process)
        monkeypatch.setattr(retrier_decl, "time", RecordingClock)

    @contextmanager
    def running(
        self, *, failure_bucket: str = RESULTS_BUCKET, versioned: bool = True, **retries: RetryConfig
    ) -> Iterator[StateMachineSandbox]:
        """``retries``: build_definition's retry policies (triton_retry=..., ...), the shipped ones otherwise."""
        with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
            self.s3 = boto3.client("s3", region_name=REGION)
            for bucket in (INPUT_BUCKET, RESULTS_BUCKET):
                self.s3.create_bucket(Bucket=bucket)
                if versioned:  # as deployed (cdk_app/inference_api.py)
                    self.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            create_log_hash_key()
            iam = boto3.client("iam", region_name=REGION)
            role = iam.create_role(
                RoleName="radstream-test-role",
                AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
            )["Role"]["Arn"]
            function_arn = boto3.client("lambda", region_name=REGION).create_function(
                FunctionName="radstream-inference-endpoint",
                Runtime="python3.11",
                Role=role,
                Handler="handler.handler",
                Code={"ZipFile": _placeholder_zip()},  # never run: the invocation is answered in-process
                Timeout=300,
            )["FunctionArn"]
            self.definition = build_definition(function_arn, failure_bucket, **retries)
            self.sfn = boto3.client("stepfunctions", region_name=REGION)
            self.state_machine_arn = self.sfn.create_state_machine(
                name=STATE_MACHINE_NAME, definition=json.dumps(self.definition), roleArn=role
            )["stateMachineArn"]
            yield self

    def put_image(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=INPUT_BUCKET, Key=key, Body=data)

    def start(self, execution_input: dict[str, Any], name: str) -> str:
        return str(
            self.sfn.start_execution(
                stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(execution_input)
            )["executionArn"]
        )

    def execute(self, execution_input: dict[str, Any], name: str, timeout_s: float = 240.0) -> ExecutionReport:
        self.waits.clear()
        return self.wait_for(self.start(execution_input, name), name, timeout_s)

    def wait_for(self, arn: str, name: str, timeout_s: float = 240.0) -> ExecutionReport:
        deadline = time.monotonic() + timeout_s
        while True:
            description = self.sfn.describe_execution(executionArn=arn)
            if description["status"] != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"execution {name} still RUNNING after {timeout_s} s")
            time.sleep(0.05)
        history = self.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        output = description.get("output")
        return ExecutionReport(
            status=description["status"],
            output=json.loads(output) if output else None,
            error=description.get("error"),
            cause=description.get("cause"),
            history=history,
            waits=list(self.waits),
        )

    def objects(self, bucket: str, prefix: str) -> dict[str, bytes]:
        listing = self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return {item["Key"]: self.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listing}


def _placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    raise NotImplementedError\n")
    return buffer.getvalue()


# --- Self-tests of the support code -------------------------------------------------------------------


def test_stub_triton_speaks_the_protocol_tritonclient_expects() -> None:
    import tritonclient.http as httpclient

    with StubTriton() as stub:
        client = httpclient.InferenceServerClient(stub.url)
        tensor = httpclient.InferInput("IMAGE_BYTES", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[b"\x00image\xff"]], dtype=np.object_))
        result = client.infer("radstream_pipeline", [tensor])
        assert result.as_numpy("FINDINGS").shape == (1, LABEL_COUNT)
        assert result.as_numpy("LESION_MASK").dtype == np.float32
        assert stub.images == [b"\x00image\xff"]
        assert client.get_model_metadata("cxr_classifier")["versions"] == ["1"]
        client.close()


def test_lambda_error_payload_names_the_exception_class() -> None:
    class TritonUnavailable(Exception):
        pass

    try:
        raise TritonUnavailable("down")
    except TritonUnavailable as error:
        payload = lambda_error_payload(error, "r-1")
    assert payload["errorType"] == "TritonUnavailable"
    assert payload["errorMessage"] == "down"
    assert payload["stackTrace"]


def test_emf_metrics_are_read_from_powertools_output() -> None:
    line = json.dumps(
        {
            "_aws": {
                "Timestamp": 1,
                "CloudWatchMetrics": [{"Namespace": "N", "Dimensions": [[]], "Metrics": [{"Name": "A"}]}],
            },
            "A": [2.0],
        }
    )
    assert metric_values(f'{{"level": "INFO"}}\n{line}\n') == {"A": 2.0}
