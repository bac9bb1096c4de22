"""Send the pipeline requests: open loop on a schedule, or closed loop at fixed concurrency.

Open loop: request ``i`` is sent at ``offsets[i]`` seconds after the start whether or
not earlier requests have finished, so a slow server makes latency grow instead of
slowing the senders down (a closed loop would hide the queueing). Each request is its
own asyncio task; the connection pool is sized to the number of requests, so no
request waits on the client side for a free connection.

Closed loop (``run_closed_loop``): ``concurrency`` workers, each sending its next
request as soon as its previous one answered. This is what ``perf_analyzer
--concurrency-range N`` measures, and is only used to cross-check against it.

Every request is recorded with its scheduled and actual send time, latency and status:
``"ok"``; the HTTP status code (``"400"``, ``"503"``...) or the gRPC code
(``"INVALID_ARGUMENT"``, ``"UNAVAILABLE"``...) when the server answered an error;
``"timeout"`` when no answer came within the timeout; ``"client_error"`` for any other
client-side failure (connection refused, reset...); ``"bad_response"`` when a success
lacked the expected ``FINDINGS`` shape.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from radstream_triton.loadtest.images import StudyImage

Transport = Literal["http", "grpc"]
PROTOCOLS: tuple[Transport, ...] = ("http", "grpc")
MODEL = "radstream_pipeline"
INPUT = "IMAGE_BYTES"
OUTPUTS = ("FINDINGS", "LESION_MASK")
FINDINGS_SHAPE = (1, 14)
OK = "ok"
TIMEOUT = "timeout"
CLIENT_ERROR = "client_error"
BAD_RESPONSE = "bad_response"
MAX_CONNECTIONS = 1024
MAX_ERROR_MESSAGE = 300


@dataclass(frozen=True)
class Target:
    """Where and how to send: ``url`` is ``host:port``; an ``http://`` or ``https://``
    prefix is accepted and ``https://`` turns TLS on."""

    url: str
    protocol: Transport = "http"
    model: str = MODEL
    timeout_s: float = 60.0
    ssl: bool = False

    @classmethod
    def parse(cls, url: str, protocol: Transport = "http", **kwargs: Any) -> Target:
        ssl = bool(kwargs.pop("ssl", False))
        for scheme in ("http://", "https://", "grpc://", "grpcs://"):
            if url.startswith(scheme):
                ssl = ssl or scheme in ("https://", "grpcs://")
                url = url[len(scheme) :]
        return cls(url=url.rstrip("/"), protocol=protocol, ssl=ssl, **kwargs)


@dataclass(frozen=True)
class RequestRecord:
    """One request. Times are seconds from the start of the run (monotonic clock)."""

    index: int
    image: str
    sent_s: float
    latency_s: float
    status: str
    scheduled_s: float | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def completed_s(self) -> float:
        return self.sent_s + self.latency_s

    @property
    def send_lag_s(self) -> float:
        """How late the request left compared with its schedule (open loop only)."""
        return 0.0 if self.scheduled_s is None else self.sent_s - self.scheduled_s


@dataclass
class RunResult:
    mode: Literal["open", "closed"]
    target: Target
    records: list[RequestRecord]
    started_at: str
    duration_s: float
    concurrency: int | None = None
    offsets: list[float] = field(default_factory=list)


class ProgressSink(Protocol):
    """Told about each send and each completion (for a progress bar)."""

    def sent(self, record_index: int) -> None: ...

    def completed(self, record: RequestRecord) -> None: ...


class _NoProgress:
    def sent(self, record_index: int) -> None:
        pass

    def completed(self, record: RequestRecord) -> None:
        pass


class RequestFailed(Exception):
    """The server answered, with an error status."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def classify_error(error: BaseException, protocol: Transport) -> tuple[str, str]:
    """(status, message) for a failed request."""
    from tritonclient.utils import InferenceServerException

    message = (str(error) or type(error).__name__)[:MAX_ERROR_MESSAGE]
    if isinstance(error, RequestFailed):
        return error.status, message
    if isinstance(error, TimeoutError):
        return TIMEOUT, f"no answer within the timeout ({type(error).__name__})"
    if isinstance(error, InferenceServerException):
        status = error.status()
        if not status:
            return CLIENT_ERROR, message
        status = str(status)
        if protocol == "grpc":
            status = status.removeprefix("StatusCode.")
            if status == "DEADLINE_EXCEEDED":
                return TIMEOUT, message
        return status, message
    return CLIENT_ERROR, f"{type(error).__name__}: {message}"


class Sender:
    """One asyncio client for the whole run, with a prepared request per image."""

    def __init__(self, target: Target, images: Sequence[StudyImage], max_connections: int = MAX_CONNECTIONS) -> None:
        self.target = target
        if target.protocol == "http":
            import tritonclient.http.aio as module

            self._client: Any = module.InferenceServerClient(
                target.url,
                conn_limit=max(1, max_connections),
                conn_timeout=target.timeout_s + 5.0,
                ssl=target.ssl,
            )
            self._outputs = [module.InferRequestedOutput(name, binary_data=True) for name in OUTPUTS]
            # aiohttp advertises gzip by default and Triton then compresses the 256 KiB mask
            # (about 15 ms of server CPU per request on CPU); perf_analyzer and most clients
            # do not ask for compression, so neither does the load test.
            self._headers: dict[str, str] | None = {"Accept-Encoding": "identity"}
        elif target.protocol == "grpc":
            import tritonclient.grpc.aio as module

            self._client = module.InferenceServerClient(target.url, ssl=target.ssl)
            self._outputs = [module.InferRequestedOutput(name) for name in OUTPUTS]
            self._headers = None
        else:
            raise ValueError(f"protocol must be http or grpc, got {target.protocol!r}")
        self._inputs: dict[str, Any] = {}
        for image in images:
            tensor = module.InferInput(INPUT, [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[image.payload]], dtype=np.object_))
            self._inputs[image.name] = tensor

    async def infer(self, image_name: str) -> None:
        """Raise on anything but a well-formed success."""
        result = await self._client.infer(
            self.target.model, [self._inputs[image_name]], outputs=self._outputs, headers=self._headers
        )
        findings = result.as_numpy("FINDINGS")
        if findings is None or tuple(findings.shape) != FINDINGS_SHAPE:
            shape = None if findings is None else tuple(findings.shape)
            raise RequestFailed(BAD_RESPONSE, f"FINDINGS shape {shape}, expected {FINDINGS_SHAPE}")

    async def timed(self, index: int, image: str, t0: float, scheduled_s: float | None) -> RequestRecord:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        try:
            await asyncio.wait_for(self.infer(image), timeout=self.target.timeout_s)
            status, message = OK, ""
        except asyncio.CancelledError:
            raise
        except Exception as error:
            status, message = classify_error(error, self.target.protocol)
        latency = loop.time() - sent
        return RequestRecord(index, image, sent - t0, latency, status, scheduled_s, message)

    async def ready(self) -> str | None:
        """None when the server and the model are ready, else why not."""
        try:
            if not await asyncio.wait_for(self._client.is_server_ready(), timeout=10):
                return f"server {self.target.url} is not ready"
            if not await asyncio.wait_for(self._client.is_model_ready(self.target.model), timeout=10):
                return f"model {self.target.model} is not ready on {self.target.url}"
        except Exception as error:
            status, message = classify_error(error, self.target.protocol)
            return f"server {self.target.url} ({self.target.protocol}) unreachable: {status}: {message}"
        return None

    async def close(self) -> None:
        await self._client.close()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


async def run_open_loop(
    target: Target,
    offsets: Sequence[float],
    images: Sequence[StudyImage],
    assignment: Sequence[int],
    progress: ProgressSink | None = None,
) -> RunResult:
    """Send request ``i`` (image ``images[assignment[i]]``) at ``offsets[i]`` seconds."""
    if len(assignment) != len(offsets):
        raise ValueError("one image assignment per offset is needed")
    if list(offsets) != sorted(offsets):
        raise ValueError("offsets must be sorted")
    sink = progress or _NoProgress()
    sender = Sender(target, images, max_connections=min(max(len(offsets), 1), MAX_CONNECTIONS))
    loop = asyncio.get_running_loop()
    records: list[RequestRecord] = []

    async def one(index: int, offset: float) -> None:
        sink.sent(index)
        record = await sender.timed(index, images[assignment[index]].name, t0, offset)
        records.append(record)
        sink.completed(record)

    started_at = _now()
    try:
        t0 = loop.time()
        tasks: list[asyncio.Task[None]] = []
        for index, offset in enumerate(offsets):
            delay = t0 + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index, offset)))
        await asyncio.gather(*tasks)
        duration = loop.time() - t0
    finally:
        await sender.close()
    records.sort(key=lambda r: r.index)
    return RunResult("open", target, records, started_at, duration, offsets=list(offsets))


async def run_closed_loop(
    target: Target,
    images: Sequence[StudyImage],
    assignment: Sequence[int],
    concurrency: int,
    warmup: int = 0,
    progress: ProgressSink | None = None,
) -> RunResult:
    """``concurrency`` workers send ``len(assignment)`` requests back to back, after
    ``warmup`` unrecorded requests (sent the same way, to reach steady state)."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    sink = progress or _NoProgress()
    sender = Sender(target, images, max_connections=concurrency)
    loop = asyncio.get_running_loop()
    records: list[RequestRecord] = []

    async def phase(count: int, record: bool, t0: float) -> None:
        counter = itertools.count()

        async def worker() -> None:
            while (index := next(counter)) < count:
                image = images[assignment[index % len(assignment)]].name
                if record:
                    sink.sent(index)
                result = await sender.timed(index, image, t0, None)
                if record:
                    records.append(result)
                    sink.completed(result)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    try:
        if warmup:
            await phase(warmup, False, loop.time())
        started_at = _now()
        t0 = loop.time()
        await phase(len(assignment), True, t0)
        duration = loop.time() - t0
    finally:
        await sender.close()
    records.sort(key=lambda r: r.index)
    return RunResult("closed", target, records, started_at, duration, concurrency=concurrency)


async def check_ready(target: Target) -> str | None:
    """None when ``target`` serves its model, else one line saying why not."""
    sender = Sender(target, [], max_connections=1)
    try:
        return await sender.ready()
    finally:
        await sender.close()
