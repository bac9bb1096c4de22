"""The Amazon States Language document of the RadStreamInference state machine (pure: no CDK).

    InvokeInference (Lambda, the inference endpoint; payload {"study": the input, "execution": its name})
      ok ------------------------------------------------------------> InferenceSucceeded (Succeed)
      TritonUnavailable: hooks.triton_retry (full jitter, capped; long enough for a new GPU node)
      StorageUnavailable (S3/KMS transient): hooks.storage_retry
      Sandbox.Timedout, out of memory (Lambda.Unknown): hooks.lambda_crash_retry
      Lambda service errors: retried 6 times, 2 s x 2 backoff
      permanent errors (InputInvalid, ImageTooLarge, ImageRejected, ...): never retried
      any error, once retries are spent (Catch States.ALL, error kept at $.error):
        -> NameFailureRecord (Choice: is $.study_id a string?)
             -> FailureRecordForStudy | FailureRecordWithoutStudy (Pass: key, execution, time at $.failure)
             -> RecordFailure (aws-sdk s3:putObject of the whole state as JSON, retried; if it still fails,
                its error goes to $.record_error and the execution fails all the same)
             -> InferenceFailed (Fail, Error and Cause from $.error)

The failure record is ``{failure_prefix}/{study_id}/{execution name}.json`` (or
``{failure_prefix}/_no_study_id/{execution name}.json`` when the input had no usable study_id): one
object per failed execution, so a study that fails twice keeps both records.

The CDK stack renders it with ``sfn.DefinitionBody.from_string(json.dumps(build_definition(...)))``;
``function_arn`` and ``failure_bucket`` may be literal values or ``${...}`` substitution placeholders.
"""

from __future__ import annotations

from typing import Any

from cdk_app.config import LAMBDA_CRASH_RETRY, STORAGE_RETRY, TRITON_RETRY, RetryConfig

STATE_MACHINE_NAME = "RadStreamInference"
FAILURES_PREFIX = "failures"  # failure records: {FAILURES_PREFIX}/{study_id}/{execution name}.json

INVOKE_STATE = "InvokeInference"
SUCCEEDED_STATE = "InferenceSucceeded"
NAME_FAILURE_STATE = "NameFailureRecord"
FAILURE_FOR_STUDY_STATE = "FailureRecordForStudy"
FAILURE_WITHOUT_STUDY_STATE = "FailureRecordWithoutStudy"
RECORD_FAILURE_STATE = "RecordFailure"
FAILED_STATE = "InferenceFailed"

# The Lambda's error names (exception class names in lambdas/inference_endpoint/errors.py).
TRITON_UNAVAILABLE = "TritonUnavailable"
STORAGE_UNAVAILABLE = "StorageUnavailable"
NON_RETRYABLE_ERRORS = ("InputInvalid", "ImageTooLarge", "ImageRejected", "PipelineOutputInvalid", "ConfigurationError")
# The function timed out or ran out of memory: the runtime reports Sandbox.Timedout / Runtime.OutOfMemory,
# and Step Functions names unhandled Lambda errors Lambda.Unknown
# (docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html).
LAMBDA_CRASH_ERRORS = ("Sandbox.Timedout", "Runtime.OutOfMemory", "Lambda.Unknown")

# Transient errors of the Lambda service itself (AWS's recommended retry set for lambda:invoke).
LAMBDA_SERVICE_ERRORS = (
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)


def retrier(policy: RetryConfig, errors: tuple[str, ...]) -> dict[str, Any]:
    document: dict[str, Any] = {
        "ErrorEquals": list(errors),
        "IntervalSeconds": policy.interval_seconds,
        "MaxAttempts": policy.max_attempts,
        "BackoffRate": policy.backoff_rate,
        "MaxDelaySeconds": policy.max_delay_seconds,
    }
    if policy.full_jitter:
        document["JitterStrategy"] = "FULL"
    return document


LAMBDA_SERVICE_RETRY = RetryConfig(
    interval_seconds=2, backoff_rate=2.0, max_delay_seconds=64, max_attempts=6, full_jitter=False
)
RECORD_FAILURE_RETRY = RetryConfig(
    interval_seconds=1, backoff_rate=2.0, max_delay_seconds=4, max_attempts=3, full_jitter=False
)


def build_definition(
    function_arn: str,
    failure_bucket: str,
    *,
    failure_prefix: str = FAILURES_PREFIX,
    triton_retry: RetryConfig = TRITON_RETRY,
    storage_retry: RetryConfig = STORAGE_RETRY,
    lambda_crash_retry: RetryConfig = LAMBDA_CRASH_RETRY,
    lambda_service_retry: RetryConfig = LAMBDA_SERVICE_RETRY,
    record_failure_retry: RetryConfig = RECORD_FAILURE_RETRY,
) -> dict[str, Any]:
    """The ASL document. Input: ``{"bucket", "key", "study_id"}``; the Lambda gets it with the execution's
    name (results are addressed per execution); output on success: the Lambda's summary (its
    ``Payload``); on failure the execution fails with the Lambda's error and cause. The retry policies
    come from ``config.hooks`` (tests pass short ones)."""
    prefix = failure_prefix.strip("/")
    if not prefix or "'" in prefix or "{" in prefix or "}" in prefix:
        raise ValueError(f"failure_prefix must be a plain S3 prefix, got {failure_prefix!r}")

    def failure_record(key_format: str, *key_args: str) -> dict[str, Any]:
        args = ", ".join(key_args)
        return {
            "Type": "Pass",
            "Comment": "Where the failure is recorded, and which execution it was.",
            "Parameters": {
                "key.$": f"States.Format('{key_format}', {args})",
                "execution.$": "$$.Execution.Id",
                "state_machine.$": "$$.StateMachine.Id",
                "failed_at.$": "$$.State.EnteredTime",
            },
            "ResultPath": "$.failure",
            "Next": RECORD_FAILURE_STATE,
        }

    return {
        "Comment": "RadStream inference of one study: Triton pipeline through the inference endpoint Lambda.",
        "StartAt": INVOKE_STATE,
        "States": {
            INVOKE_STATE: {
                "Type": "Task",
                "Comment": "Run radstream_pipeline on the study; the Lambda's error names drive Retry and Catch.",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {
                    "FunctionName": function_arn,
                    "Payload": {"study.$": "$", "execution.$": "$$.Execution.Name"},
                },
                "OutputPath": "$.Payload",
                "Retry": [
                    retrier(triton_retry, (TRITON_UNAVAILABLE,)),
                    retrier(storage_retry, (STORAGE_UNAVAILABLE,)),
                    retrier(lambda_crash_retry, LAMBDA_CRASH_ERRORS),
                    retrier(lambda_service_retry, LAMBDA_SERVICE_ERRORS),
                ],
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": NAME_FAILURE_STATE}],
                "Next": SUCCEEDED_STATE,
            },
            SUCCEEDED_STATE: {"Type": "Succeed"},
            NAME_FAILURE_STATE: {
                "Type": "Choice",
                "Comment": "An input without a usable study_id is recorded under the execution's name only.",
                "Choices": [
                    {
                        "And": [
                            {"Variable": "$.study_id", "IsPresent": True},
                            {"Variable": "$.study_id", "IsString": True},
                        ],
                        "Next": FAILURE_FOR_STUDY_STATE,
                    }
                ],
                "Default": FAILURE_WITHOUT_STUDY_STATE,
            },
            FAILURE_FOR_STUDY_STATE: failure_record(f"{prefix}/{{}}/{{}}.json", "$.study_id", "$$.Execution.Name"),
            FAILURE_WITHOUT_STUDY_STATE: failure_record(f"{prefix}/_no_study_id/{{}}.json", "$$.Execution.Name"),
            RECORD_FAILURE_STATE: {
                "Type": "Task",
                "Comment": "Keep the failure (input, error, cause, execution) in S3 so nothing is lost.",
                "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
                "Parameters": {
                    "Bucket": failure_bucket,
                    "Key.$": "$.failure.key",
                    "Body.$": "States.JsonToString($)",
                    "ContentType": "application/json",
                },
                "ResultPath": None,
                "Retry": [retrier(record_failure_retry, ("States.ALL",))],
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.record_error", "Next": FAILED_STATE}],
                "Next": FAILED_STATE,
            },
            FAILED_STATE: {
                "Type": "Fail",
                "Comment": "Fail with the inference's own error name and cause.",
                "ErrorPath": "$.error.Error",
                "CausePath": "$.error.Cause",
            },
        },
    }
