"""The event Step Functions sends: ``{"study": {"bucket": ..., "key": ..., "study_id": ...}, "execution": name}``
(the state machine adds its execution's name), or the study alone when invoked directly; checked with pydantic."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from lambdas.inference_endpoint.errors import InputInvalid

# S3's bucket naming rules (lower case, digits, dots, hyphens; 3 to 63 characters).
BucketName = Annotated[str, StringConstraints(strict=True, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
ObjectKey = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=1024)]
# study_id names S3 prefixes (results and failure records): no slashes, no leading dot.
StudyId = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
# A Step Functions execution name as RadStream's callers give them (1-80 characters; an S3 path segment).
ExecutionName = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,79}$")]


class InferenceRequest(BaseModel):
    """Extra fields (anything else in the state's input) are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    bucket: BucketName
    key: ObjectKey
    study_id: StudyId
    execution: ExecutionName | None = None


def parse_request(event: Any) -> InferenceRequest:
    """The validated request, or InputInvalid naming every bad field."""
    if isinstance(event, dict) and isinstance(event.get("study"), dict):
        event = {**event["study"], "execution": event.get("execution")}
    try:
        return InferenceRequest.model_validate(event)
    except ValidationError as error:
        problems: list[str] = []
        fields: list[str] = []
        for detail in error.errors(include_url=False, include_input=False):
            field = ".".join(str(part) for part in detail["loc"]) or "(event)"
            fields.append(field)
            problems.append(f"{field}: {detail['msg']}")
        raise InputInvalid("invalid input: " + "; ".join(problems), tuple(fields)) from None
