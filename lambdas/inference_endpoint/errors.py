"""The typed errors of the inference endpoint.

The Lambda runtime reports an unhandled exception's class name as ``errorType``, and Step Functions
matches that name in ``Retry``/``Catch`` ``ErrorEquals``: the class names are the contract with
``cdk_app/state_machine_definition.py`` and must not be renamed.

Messages never hold the study id or the object key: the runtime logs an unhandled error's message,
and Step Functions keeps it as the execution's cause.
"""

from __future__ import annotations

from typing import ClassVar


class InferenceEndpointError(Exception):
    """Base of the endpoint's typed errors; ``retryable`` documents the Step Functions policy."""

    retryable: ClassVar[bool] = False


class InputInvalid(InferenceEndpointError):
    """The event is malformed (field names in the message), or names an object that cannot be read."""

    def __init__(self, message: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields


class ImageTooLarge(InferenceEndpointError):
    """The S3 object is over MAX_IMAGE_BYTES; detected from its size before any download."""


class ImageRejected(InferenceEndpointError):
    """Triton rejected the image (HTTP 400: not an image, truncated, no pixel data, too large a
    declared size...). The message is Triton's. Retrying cannot help."""


class TritonUnavailable(InferenceEndpointError):
    """Triton could not serve the request now: connection refused or reset, timeout, DNS failure,
    queue full (503) or another 5xx, model not ready. Step Functions retries with backoff."""

    retryable = True


class StorageUnavailable(InferenceEndpointError):
    """S3 or KMS could not serve the read or the write now: a timeout, a dropped connection, throttling
    (SlowDown, KMS throttling), a 5xx, or the invocation's deadline spent on S3. Retried by Step Functions;
    the S3 client has already retried adaptively."""

    retryable = True


class PipelineOutputInvalid(InferenceEndpointError):
    """Triton answered, but the outputs do not have the contract's names, shapes or value ranges
    (a model or labels.txt deployed out of step). A deployment error: no retry."""


UNEXPECTED = "Unexpected"
# The values of the ErrorType metric dimension: the typed errors, the configuration error and one
# bucket for everything else (a bounded set, whatever the exception).
ERROR_TYPES = (
    "InputInvalid",
    "ImageTooLarge",
    "ImageRejected",
    "TritonUnavailable",
    "StorageUnavailable",
    "PipelineOutputInvalid",
    "ConfigurationError",
    UNEXPECTED,
)


def error_type(error: BaseException) -> str:
    """The ErrorType dimension of ``error``: its class name when it is one of ERROR_TYPES."""
    name = type(error).__name__
    return name if name in ERROR_TYPES else UNEXPECTED
