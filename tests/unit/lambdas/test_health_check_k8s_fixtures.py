"""The Kubernetes objects the hook tests use are real API objects: Kubernetes 1.36, strict schema."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from tests.unit.lambdas import k8s_fixtures as fx

KUBERNETES_VERSION = "1.36.0"


def _name(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


@pytest.mark.parametrize("obj", fx.all_objects(), ids=_name)
def test_fixture_validates_strictly_against_kubernetes_1_36(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_strict_schema_rejects_a_misspelt_field() -> None:
    broken = fx.pending_gpu_pod()
    broken["status"]["phaze"] = "Pending"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("obj", fx.all_objects(), ids=_name)
def test_fixture_deserializes_into_the_client_model(obj: dict[str, Any]) -> None:
    model = fx.to_model(obj)
    assert model.metadata.name == obj["metadata"]["name"]
    assert model.metadata.creation_timestamp.tzinfo is not None
