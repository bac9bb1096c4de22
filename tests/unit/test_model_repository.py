"""The model repository: configs valid under Triton's schema, the ensemble wired
consistently, and the reference networks reproducible and matching their configs."""

from __future__ import annotations

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from radstream_triton import reference_models
from radstream_triton.cpu_repository import load_config
from tests.conftest import MODEL_REPOSITORY

MODELS = ("cxr_classifier", "lesion_segmenter", "study_preprocess", "radstream_pipeline")
TYPE_TO_ONNX = {mc.TYPE_FP32: onnx.TensorProto.FLOAT}


def config(name: str) -> mc.ModelConfig:
    return load_config(MODEL_REPOSITORY / name / "config.pbtxt")


def test_repository_holds_exactly_the_four_models():
    found = sorted(path.parent.name for path in MODEL_REPOSITORY.glob("*/config.pbtxt"))
    assert found == sorted(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_config_is_complete_for_a_server_without_auto_complete(name):
    cfg = config(name)
    assert cfg.name == name, "the config name must match its folder"
    assert cfg.input and cfg.output, "--disable-auto-complete-config needs explicit inputs and outputs"
    assert cfg.max_batch_size > 0
    assert (MODEL_REPOSITORY / name / "1").is_dir(), "version 1 folder missing"


@pytest.mark.parametrize("name", ["cxr_classifier", "lesion_segmenter"])
def test_networks_run_on_gpu_with_bounded_dynamic_batching(name):
    cfg = config(name)
    assert cfg.backend == "onnxruntime"
    assert [group.kind for group in cfg.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    batching = cfg.dynamic_batching
    assert batching.preferred_batch_size and max(batching.preferred_batch_size) <= cfg.max_batch_size
    assert 0 < batching.max_queue_delay_microseconds <= 10_000
    assert batching.default_queue_policy.max_queue_size > 0, "an unbounded queue hides overload"


def test_classifier_labels_match_its_output():
    cfg = config("cxr_classifier")
    (output,) = cfg.output
    labels = (MODEL_REPOSITORY / "cxr_classifier" / output.label_filename).read_text().split()
    assert list(output.dims) == [len(labels)] == [14]
    assert labels == list(reference_models.CXR_FINDINGS)


def _tensors(cfg: mc.ModelConfig, kind: str) -> dict[str, tuple[int, list[int]]]:
    return {t.name: (t.data_type, list(t.dims)) for t in getattr(cfg, kind)}


def test_ensemble_steps_connect_matching_tensors():
    pipeline = config("radstream_pipeline")
    assert pipeline.platform == "ensemble"
    produced = _tensors(pipeline, "input")
    consumers: dict[str, tuple[int, list[int]]] = {}
    for step in pipeline.ensemble_scheduling.step:
        model = config(step.model_name)
        assert model.max_batch_size >= pipeline.max_batch_size, f"{step.model_name} batches less than the ensemble"
        model_inputs, model_outputs = _tensors(model, "input"), _tensors(model, "output")
        for model_tensor, ensemble_tensor in step.input_map.items():
            assert ensemble_tensor in produced, f"{ensemble_tensor} consumed before it is produced"
            assert produced[ensemble_tensor] == model_inputs[model_tensor], f"{step.model_name}.{model_tensor}"
            consumers[ensemble_tensor] = model_inputs[model_tensor]
        for model_tensor, ensemble_tensor in step.output_map.items():
            produced[ensemble_tensor] = model_outputs[model_tensor]
    outputs = _tensors(pipeline, "output")
    for name, spec in outputs.items():
        assert produced.get(name) == spec, f"ensemble output {name} not produced with that type and shape"
    intermediate = set(produced) - set(outputs) - set(_tensors(pipeline, "input"))
    assert intermediate <= set(consumers), f"produced but never used: {intermediate - set(consumers)}"


@pytest.mark.parametrize(
    ("name", "builder"),
    [
        ("cxr_classifier", reference_models.build_cxr_classifier),
        ("lesion_segmenter", reference_models.build_lesion_segmenter),
    ],
)
def test_onnx_io_matches_the_triton_config(name, builder):
    model = onnx.load(MODEL_REPOSITORY / name / "1" / "model.onnx")
    onnx.checker.check_model(model, full_check=True)
    cfg = config(name)
    for graph_values, config_values in ((model.graph.input, cfg.input), (model.graph.output, cfg.output)):
        by_name = {value.name: value for value in graph_values}
        for tensor in config_values:
            value = by_name[tensor.name]
            shape = value.type.tensor_type.shape.dim
            assert shape[0].dim_param == "batch", "dimension 0 must be the dynamic batch"
            assert [d.dim_value for d in shape[1:]] == list(tensor.dims)
            assert value.type.tensor_type.elem_type == TYPE_TO_ONNX[tensor.data_type]


def test_reference_models_are_reproducible_and_committed_files_are_current():
    for relative, payload in reference_models.serialized_reference_models().items():
        committed = (MODEL_REPOSITORY / relative).read_bytes()
        assert committed == payload, f"{relative} differs from its build: run `make models`"


def test_configs_round_trip_through_triton_schema():
    for name in MODELS:
        text = (MODEL_REPOSITORY / name / "config.pbtxt").read_text()
        parsed = text_format.Parse(text, mc.ModelConfig())
        assert text_format.Parse(text_format.MessageToString(parsed), mc.ModelConfig()) == parsed


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_preprocess_instances_match_the_gpu_node_vcpus_from_config(stage):
    """The image's config.pbtxt carries the instance count cdk_app.config sizes from the node."""
    from cdk_app.config import GPU_INSTANCE_VCPUS
    from cdk_app.config import load_config as load_platform_config

    platform = load_platform_config(stage)
    (group,) = config("study_preprocess").instance_group
    assert group.kind == mc.ModelInstanceGroup.KIND_CPU
    assert (
        group.count == platform.preprocess_instances == GPU_INSTANCE_VCPUS[platform.cluster.gpu_nodes.instance_types[0]]
    )
    assert platform.preprocess_instances == 4  # the shipped g5.xlarge


def test_every_gpu_instance_type_has_its_vcpus():
    from cdk_app.config import GPU_INSTANCE_GPUS, GPU_INSTANCE_VCPUS

    assert set(GPU_INSTANCE_VCPUS) == set(GPU_INSTANCE_GPUS)
    assert GPU_INSTANCE_VCPUS["g5.xlarge"] == 4 and GPU_INSTANCE_VCPUS["g4dn.12xlarge"] == 48
