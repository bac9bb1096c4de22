"""S3 reads and writes of the endpoint: the study image (size-capped, one pinned version) and the results,
with S3's and KMS's transient failures raised as StorageUnavailable (retried) and the permanent ones typed
or left as they are (not retried).

Results are addressed per run: ``{prefix}/{study_id}/{run}/result.json`` and ``lesion_mask.npz``, where
``run`` is the Step Functions execution's name (or, when invoked directly, the input object's version or
ETag), so two executions for one study never pair one's summary with the other's mask.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, ResponseStreamingError
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from numpy.typing import NDArray

from lambdas.inference_endpoint.errors import ImageTooLarge, InputInvalid, StorageUnavailable

_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchBucket", "NoSuchVersion"}
_DENIED = {"403", "AccessDenied", "Forbidden"}
# Throttling and server-side trouble of S3 and of KMS behind SSE-KMS (S3 reports KMS's own codes).
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "ServiceUnavailable",
    "KMS.ThrottlingException",
    "KMS.KMSInternalException",
    "KMS.DependencyTimeoutException",
    "500",
    "503",
}
# Connection-level failures: botocore's ConnectTimeoutError, EndpointConnectionError (ConnectionError),
# ReadTimeoutError, ConnectionClosedError (HTTPClientError), and a body cut short (ResponseStreamingError).
_TRANSIENT_EXCEPTIONS = (BotocoreConnectionError, HTTPClientError, ResponseStreamingError, TimeoutError)


def client_config(connect_timeout_s: float, read_timeout_s: float, max_attempts: int) -> Config:
    """Short timeouts and adaptive retries (botocore's client-side rate limiting with backoff): inside
    a function whose whole deadline is 90 s, the 60 s defaults would outlast it."""
    return Config(
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        retries={"mode": "adaptive", "total_max_attempts": max_attempts},
    )


def _client_error_code(error: Exception) -> str | None:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return None
    return str(response.get("Error", {}).get("Code", "")) or None


def _status(error: Exception) -> int:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return 0
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def storage_error(error: Exception, action: str) -> Exception:
    """StorageUnavailable for a transient failure of ``action`` ("reading the study", ...), else ``error``."""
    if isinstance(error, _TRANSIENT_EXCEPTIONS):
        return StorageUnavailable(f"S3 unavailable while {action}: {type(error).__name__}")
    if isinstance(error, ClientError):
        code = _client_error_code(error) or ""
        if code in _TRANSIENT_CODES or _status(error) >= 500:
            return StorageUnavailable(f"S3 unavailable while {action}: {code or _status(error)}")
    unchanged: Exception = error
    return unchanged


def _input_error(error: Exception) -> Exception:
    code = _client_error_code(error)
    if code in _NOT_FOUND:
        return InputInvalid("the study object does not exist", ("bucket", "key"))
    if code in _DENIED:
        return InputInvalid("the study object is not readable by this endpoint (access denied)", ("bucket",))
    return storage_error(error, "reading the study")


def _raise_mapped(error: Exception, mapped: Exception) -> NoReturn:
    if mapped is error:
        raise error
    raise mapped from None


@dataclass(frozen=True)
class StudyObject:
    data: bytes
    version_id: str | None  # None: the bucket is not versioned
    etag: str


def read_image(s3: Any, bucket: str, key: str, max_bytes: int) -> StudyObject:
    """The object's bytes, version and ETag. HEAD first: an object over ``max_bytes`` is refused without
    downloading it; the GET is pinned to the version (or ETag) the HEAD saw, and stops after
    ``max_bytes + 1`` bytes."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except Exception as error:
        _raise_mapped(error, _input_error(error))
    size = int(head["ContentLength"])
    if size > max_bytes:
        raise ImageTooLarge(f"the study object is {size} bytes, over the limit of {max_bytes} bytes")
    version_id = head.get("VersionId")
    if version_id in (None, "", "null"):
        version_id = None
    etag = str(head.get("ETag", ""))
    pinned = {"VersionId": version_id} if version_id else ({"IfMatch": etag} if etag else {})
    try:
        body = s3.get_object(Bucket=bucket, Key=key, **pinned)["Body"]
    except Exception as error:
        if _client_error_code(error) in {"PreconditionFailed", "412"}:
            raise StorageUnavailable("the study object changed between HEAD and GET") from None
        _raise_mapped(error, _input_error(error))
    try:
        data: bytes = body.read(max_bytes + 1)
    except Exception as error:
        _raise_mapped(error, storage_error(error, "reading the study"))
    finally:
        body.close()
    if len(data) > max_bytes:
        raise ImageTooLarge(f"the study object grew past the limit of {max_bytes} bytes while being read")
    return StudyObject(data=data, version_id=version_id, etag=etag)


def sniff_format(data: bytes) -> str:
    """What the bytes look like (for the record; Triton decides what it accepts)."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    return "unknown"


@dataclass(frozen=True)
class ResultLocation:
    bucket: str
    summary_key: str
    mask_key: str

    def to_dict(self) -> dict[str, str]:
        return {
            "bucket": self.bucket,
            "summary_key": self.summary_key,
            "mask_key": self.mask_key,
            "summary_uri": f"s3://{self.bucket}/{self.summary_key}",
            "mask_uri": f"s3://{self.bucket}/{self.mask_key}",
        }


def run_name(execution: str | None, study: StudyObject) -> str:
    """Where this run's results go under the study: the execution's name, or (a direct invocation) the
    input object's version, or its ETag."""
    if execution:
        return execution
    if study.version_id:
        return f"version-{study.version_id}"
    return f"etag-{study.etag.strip(chr(34))}"


def result_location(bucket: str, prefix: str, study_id: str, run: str) -> ResultLocation:
    base = f"{prefix}/{study_id}/{run}"
    return ResultLocation(bucket, f"{base}/result.json", f"{base}/lesion_mask.npz")


def encode_mask(mask: NDArray[np.float32]) -> bytes:
    """The full-resolution mask as a compressed ``.npz`` holding ``lesion_mask`` (float32, 256x256)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, lesion_mask=mask.astype(np.float32, copy=False))
    return buffer.getvalue()


def _put(s3: Any, **arguments: Any) -> str | None:
    try:
        response = s3.put_object(**arguments)
    except Exception as error:
        _raise_mapped(error, storage_error(error, "writing the results"))
    version = response.get("VersionId")
    return None if version in (None, "", "null") else str(version)


def write_mask(s3: Any, location: ResultLocation, mask: NDArray[np.float32]) -> str | None:
    """The mask, first; its version id (None in an unversioned bucket)."""
    return _put(
        s3,
        Bucket=location.bucket,
        Key=location.mask_key,
        Body=encode_mask(mask),
        ContentType="application/octet-stream",
    )


def write_summary(s3: Any, location: ResultLocation, summary: dict[str, Any]) -> str | None:
    """The JSON summary that points at the mask (and names its version): a reader that finds result.json
    always finds its mask."""
    return _put(
        s3,
        Bucket=location.bucket,
        Key=location.summary_key,
        Body=json.dumps(summary, indent=2, sort_keys=True).encode("utf-8"),
        ContentType="application/json",
    )
