"""The generated CPU repository keeps every model's interface and batching."""

from __future__ import annotations

import hashlib

from tritonclient.grpc import model_config_pb2 as mc

from radstream_triton.cpu_repository import build_cpu_repository, load_config
from tests.conftest import MODEL_REPOSITORY


def _digest(root):
    return {p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def test_cpu_repository_preserves_interfaces_and_batching(tmp_path):
    before = _digest(MODEL_REPOSITORY)
    target = build_cpu_repository(tmp_path / "repo", cpu_instances=2)
    assert _digest(MODEL_REPOSITORY) == before, "the source repository must never be edited"

    for source_config in MODEL_REPOSITORY.glob("*/config.pbtxt"):
        original = load_config(source_config)
        generated = load_config(target / source_config.parent.name / "config.pbtxt")
        for field in ("name", "max_batch_size", "input", "output", "dynamic_batching", "ensemble_scheduling"):
            assert getattr(generated, field) == getattr(original, field), f"{original.name}.{field} changed"
        assert all(g.kind == mc.ModelInstanceGroup.KIND_CPU for g in generated.instance_group)


def test_onnx_models_are_served_by_the_python_wrapper_on_the_same_file(tmp_path):
    target = build_cpu_repository(tmp_path / "repo")
    for name in ("cxr_classifier", "lesion_segmenter"):
        generated = load_config(target / name / "config.pbtxt")
        assert generated.backend == "python" and not generated.platform
        assert [g.count for g in generated.instance_group] == [1]
        assert (target / name / "1" / "model.py").read_text().startswith('"""Python-backend stand-in')
        assert (target / name / "1" / "model.onnx").read_bytes() == (
            MODEL_REPOSITORY / name / "1" / "model.onnx"
        ).read_bytes()
    assert load_config(target / "radstream_pipeline" / "config.pbtxt").platform == "ensemble"


def test_rebuilding_replaces_stale_content(tmp_path):
    target = tmp_path / "repo"
    build_cpu_repository(target)
    (target / "stale_model").mkdir()
    build_cpu_repository(target)
    assert not (target / "stale_model").exists()


def test_model_parameters_can_be_switched_in_the_generated_copy(tmp_path):
    target = build_cpu_repository(tmp_path / "repo", parameters={"study_preprocess": {"decode_path": "reference"}})
    generated = load_config(target / "study_preprocess" / "config.pbtxt")
    original = load_config(MODEL_REPOSITORY / "study_preprocess" / "config.pbtxt")
    assert original.parameters["decode_path"].string_value == "fast"
    assert generated.parameters["decode_path"].string_value == "reference"
    assert generated.parameters["max_side_pixels"] == original.parameters["max_side_pixels"]


def test_parameters_for_an_unknown_model_are_refused(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="parameters for unknown models: no_such_model"):
        build_cpu_repository(tmp_path / "repo", parameters={"no_such_model": {"x": "1"}})
