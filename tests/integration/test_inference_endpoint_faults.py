"""The RadStreamInference state machine under faults on the real local Triton (its own server, so it can
be killed), executed by moto with the real handler answering its Lambda task (one container: one
invocation at a time). The retry waits really elapse here, with a short Triton retry policy of the same
shape as the shipped one (full jitter, capped), sized for this test's outage instead of a new GPU node.

The "done when" burst of issue 14: 50 studies, Triton killed after the 10th result and restarted 20 s
later: every study ends with one result, none failed, none duplicated or mixed, and no log line holds a
study id in clear. Run with ``-s`` to see the four counts."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cdk_app.config import RetryConfig
from lambdas.inference_endpoint import handler as handler_module
from lambdas.inference_endpoint.findings import summarize_mask
from radstream_triton.cpu_repository import build_cpu_repository
from radstream_triton.server import LocalTritonServer
from tests.unit.lambdas.test_inference_endpoint_faults import logged_lines
from tests.unit.lambdas.test_inference_endpoint_support import (
    INPUT_BUCKET,
    LOG_HASH_KEY,
    RESULTS_BUCKET,
    LambdaContext,
    StateMachineSandbox,
    set_aws_test_environment,
    set_endpoint_environment,
)

pytestmark = pytest.mark.integration

STUDIES = 50
KILL_AFTER = 10
RESTART_AFTER_S = 20.0
# Same shape as config.TRITON_RETRY (full jitter, capped), sized for this outage: mean total ~77 s,
# at least ~56 s with three deviations, for 20 s down + the restart.
TEST_TRITON_RETRY = RetryConfig(interval_seconds=1, backoff_rate=2.0, max_delay_seconds=4, max_attempts=40)


@pytest.fixture(scope="module")
def own_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTritonServer]:
    build_dir = tmp_path_factory.mktemp("triton-faults")
    repository = build_cpu_repository(build_dir / "model_repository", cpu_instances=1)
    server = LocalTritonServer(repository, build_dir, exit_timeout_secs=2)
    server.start()
    try:
        server.wait_ready(timeout_s=120)
        yield server
    finally:
        server.stop(timeout_s=10)


def kill(server: LocalTritonServer) -> None:
    """SIGKILL, no drain: the pod is gone."""
    assert server.process is not None
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()


def study_png(chest_xray_bytes: bytes, index: int) -> bytes:
    """A distinct PNG per study: the radiograph, one corner pixel set from the study's number."""
    from pydicom import dcmread

    pixels = dcmread(io.BytesIO(chest_xray_bytes)).pixel_array.astype(np.float32)
    pixels = (255 * (pixels - pixels.min()) / max(float(np.ptp(pixels)), 1.0)).astype(np.uint8)[::4, ::4].copy()
    pixels[0, 0] = index
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_burst_survives_triton_killed_and_restarted(
    monkeypatch: pytest.MonkeyPatch,
    own_triton: LocalTritonServer,
    chest_xray_bytes: bytes,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level("INFO")
    set_aws_test_environment(monkeypatch)
    set_endpoint_environment(monkeypatch, own_triton.http_url, TRITON_TIMEOUT_SECONDS="30")
    handler_module.reset_caches()
    studies = {f"1.2.826.0.1.3680043.8.498.{9000 + n}": f"studies/burst/{n:02d}/image.png" for n in range(STUDIES)}
    served: list[str] = []
    events: dict[str, float] = {}
    restart: list[threading.Timer] = []

    def restart_triton() -> None:
        events["restarted"] = time.monotonic()
        own_triton.start()
        own_triton.wait_ready(timeout_s=120)
        events["ready"] = time.monotonic()

    def lambda_runtime(event: dict[str, Any]) -> Any:
        result = handler_module.handler(event, LambdaContext())
        served.append(event["study"]["study_id"])
        if len(served) == KILL_AFTER:
            kill(own_triton)
            events["killed"] = time.monotonic()
            timer = threading.Timer(RESTART_AFTER_S, restart_triton)
            timer.start()
            restart.append(timer)
        return result

    with StateMachineSandbox(lambda_runtime, monkeypatch, sleep=True).running(
        triton_retry=TEST_TRITON_RETRY
    ) as sandbox:
        for n, key in enumerate(studies.values()):
            sandbox.put_image(key, study_png(chest_xray_bytes, n))
        started = time.monotonic()
        arns = {
            study: sandbox.start({"bucket": INPUT_BUCKET, "key": key, "study_id": study}, name=f"burst-{n:02d}")
            for n, (study, key) in enumerate(studies.items())
        }
        reports = {study: sandbox.wait_for(arn, study, timeout_s=600) for study, arn in arns.items()}
        elapsed = time.monotonic() - started
        for timer in restart:
            timer.join()

        failures = [study for study, report in reports.items() if report.status != "SUCCEEDED"]
        results = 0
        bad: list[str] = []
        for n, (study, key) in enumerate(studies.items()):
            summaries = [k for k in sandbox.objects(RESULTS_BUCKET, f"results/{study}/") if k.endswith("result.json")]
            versions = sandbox.s3.list_object_versions(Bucket=RESULTS_BUCKET, Prefix=f"results/{study}/")
            written = [v for v in versions.get("Versions", []) if v["Key"].endswith("result.json")]
            if len(summaries) != 1 or len(written) != 1:
                bad.append(study)  # duplicated (two runs, or one run written twice) or missing
                continue
            results += 1
            stored = json.loads(sandbox.objects(RESULTS_BUCKET, summaries[0])[summaries[0]])
            head = sandbox.s3.head_object(Bucket=INPUT_BUCKET, Key=key)
            mask_object = sandbox.s3.get_object(
                Bucket=RESULTS_BUCKET, Key=stored["result"]["mask_key"], VersionId=stored["result"]["mask_version_id"]
            )["Body"].read()
            with np.load(io.BytesIO(mask_object)) as archive:
                mask = np.array(archive["lesion_mask"])
            own = (
                stored["study_id"] == study
                and stored["execution"] == f"burst-{n:02d}"
                and (stored["image"]["key"], stored["image"]["etag"]) == (key, head["ETag"])
                and stored["image"]["version_id"] == head["VersionId"]
                and stored["mask"] == summarize_mask(mask, stored["mask"]["threshold"]).to_dict()
            )
            if not own:
                bad.append(study)  # mixed: the summary is another study's, or its mask another run's

    lines = logged_lines(capsys, caplog)
    clear = [line for line in lines if any(study in line for study in studies) or LOG_HASH_KEY in line]
    retried = sum(report.lambda_attempts - 1 for report in reports.values())
    print(
        f"\nburst of {STUDIES}: results={results} failures={len(failures)} duplicated_or_mixed={len(bad)} "
        f"log_lines_with_clear_study_id={len(clear)} (of {len(lines)} lines; {retried} Lambda retries; "
        f"Triton down {events.get('ready', 0) - events.get('killed', 0):.1f} s; {elapsed:.1f} s in all)"
    )
    handler_module.reset_caches()
    assert "killed" in events and "ready" in events, events
    assert retried > 0  # executions did meet the outage
    assert (results, len(failures), len(bad), len(clear)) == (STUDIES, 0, 0, 0)
    assert len(served) == STUDIES  # each study served once


def test_the_ssm_address_changed_under_a_warm_function_on_the_real_triton(
    monkeypatch: pytest.MonkeyPatch, own_triton: LocalTritonServer, chest_xray_bytes: bytes
) -> None:
    """The old NLB (a forwarder to the real server) goes away and SSM names the new one: the warm
    function's next invocation fails over at once, inside its 60 s address cache."""
    import boto3
    from moto import mock_aws

    from tests.unit.lambdas.test_inference_endpoint_support import (
        REGION,
        TcpForwarder,
        create_log_hash_key,
        free_port,
    )

    own_triton.wait_ready(timeout_s=120)
    set_aws_test_environment(monkeypatch)
    old_port = free_port()
    old_nlb = TcpForwarder(old_port, own_triton.http_url)
    set_endpoint_environment(monkeypatch, own_triton.http_url)
    monkeypatch.delenv("TRITON_URL")
    monkeypatch.setenv("TRITON_URL_PARAMETER", "/radstream/test/triton-url")
    handler_module.reset_caches()
    event = {"bucket": INPUT_BUCKET, "key": "studies/warm/image.png", "study_id": "warm-1"}
    try:
        with mock_aws():
            ssm = boto3.client("ssm", region_name=REGION)
            ssm.put_parameter(Name="/radstream/test/triton-url", Value=f"127.0.0.1:{old_port}", Type="String")
            s3 = boto3.client("s3", region_name=REGION)
            for bucket in (INPUT_BUCKET, RESULTS_BUCKET):
                s3.create_bucket(Bucket=bucket)
            s3.put_object(Bucket=INPUT_BUCKET, Key=event["key"], Body=study_png(chest_xray_bytes, 7))
            create_log_hash_key()
            first = handler_module.handler(dict(event), LambdaContext())
            old_nlb.close()  # the old load balancer is gone: connection refused
            ssm.put_parameter(
                Name="/radstream/test/triton-url", Value=own_triton.http_url, Type="String", Overwrite=True
            )
            second = handler_module.handler(dict(event), LambdaContext())
    finally:
        old_nlb.close()
        handler_module.reset_caches()
    assert first["status"] == second["status"] == "SUCCEEDED"
    assert first["findings"] == second["findings"]
