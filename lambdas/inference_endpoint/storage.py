"""S3 reads and writes of the endpoint: the study image (size-capped) and the results."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lambdas.inference_endpoint.errors import ImageTooLarge, InputInvalid

_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_DENIED = {"403", "AccessDenied", "Forbidden"}


def _client_error_code(error: Exception) -> str | None:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return None
    return str(response.get("Error", {}).get("Code", "")) or None


def _input_error(error: Exception, bucket: str, key: str) -> Exception:
    code = _client_error_code(error)
    if code in _NOT_FOUND:
        return InputInvalid(f"s3://{bucket}/{key} does not exist", ("bucket", "key"))
    if code in _DENIED:
        return InputInvalid(f"s3://{bucket}/{key} is not readable by this endpoint (access denied)", ("bucket",))
    return error


def read_image(s3: Any, bucket: str, key: str, max_bytes: int) -> bytes:
    """The object's bytes. HEAD first: an object over ``max_bytes`` is refused without downloading it;
    the download itself stops after ``max_bytes + 1`` bytes in case the object was replaced meanwhile."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except Exception as error:
        mapped = _input_error(error, bucket, key)
        if mapped is error:
            raise
        raise mapped from None
    size = int(head["ContentLength"])
    if size > max_bytes:
        raise ImageTooLarge(f"s3://{bucket}/{key} is {size} bytes, over the limit of {max_bytes} bytes")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except Exception as error:
        mapped = _input_error(error, bucket, key)
        if mapped is error:
            raise
        raise mapped from None
    try:
        data: bytes = body.read(max_bytes + 1)
    finally:
        body.close()
    if len(data) > max_bytes:
        raise ImageTooLarge(f"s3://{bucket}/{key} grew past the limit of {max_bytes} bytes while being read")
    return data


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


def result_location(bucket: str, prefix: str, study_id: str) -> ResultLocation:
    base = f"{prefix}/{study_id}"
    return ResultLocation(bucket, f"{base}/result.json", f"{base}/lesion_mask.npz")


def encode_mask(mask: NDArray[np.float32]) -> bytes:
    """The full-resolution mask as a compressed ``.npz`` holding ``lesion_mask`` (float32, 256x256)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, lesion_mask=mask.astype(np.float32, copy=False))
    return buffer.getvalue()


def write_results(s3: Any, location: ResultLocation, summary: dict[str, Any], mask: NDArray[np.float32]) -> None:
    """The mask first, then the JSON summary that points at it: a reader that finds result.json
    always finds its mask."""
    s3.put_object(
        Bucket=location.bucket,
        Key=location.mask_key,
        Body=encode_mask(mask),
        ContentType="application/octet-stream",
    )
    s3.put_object(
        Bucket=location.bucket,
        Key=location.summary_key,
        Body=json.dumps(summary, indent=2, sort_keys=True).encode("utf-8"),
        ContentType="application/json",
    )
