"""Build RadStream's reference ONNX networks, reproducibly.

The networks are small CNNs with fixed-seed, *untrained* weights. They exist to
exercise the serving path (shapes, batching, latency, metrics) end to end; a team
replaces ``model.onnx`` with its trained network that keeps the same names and I/O.

Run ``python -m radstream_triton.reference_models`` (with ``triton/`` on
``PYTHONPATH``) to rewrite the files under ``triton/model_repository``; the same
seed and onnx version give byte-identical files, which a test checks.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # readable by every onnxruntime shipped with Triton 24.x
SEED = 20240917

REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"

# The 14 findings of the NIH ChestX-ray14 label set, in output order.
CXR_FINDINGS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)

CXR_SIDE = 224
SEG_SIDE = 256


@dataclass
class _GraphBuilder:
    """Accumulates nodes and initializers; names are generated, weights seeded."""

    rng: np.random.Generator
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    counter: int = 0

    def _name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_{self.counter}"

    def _weight(self, name: str, array: NDArray[np.float64]) -> str:
        self.initializers.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv(self, x: str, c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> str:
        name = self._name("conv")
        fan_in = c_in * kernel * kernel
        w = self.rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(c_out, c_in, kernel, kernel))
        b = np.zeros(c_out)
        out = f"{name}_out"
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, self._weight(f"{name}.weight", w), self._weight(f"{name}.bias", b)],
                [out],
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[kernel // 2] * 4,
            )
        )
        return out

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        out = output or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def relu(self, x: str) -> str:
        return self.op("Relu", [x])

    def upsample2x(self, x: str) -> str:
        scales = self._weight(self._name("scales"), np.array([1.0, 1.0, 2.0, 2.0]))
        return self.op("Resize", [x, "", scales], mode="nearest")


def _model(
    builder: _GraphBuilder, name: str, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]
) -> onnx.ModelProto:
    graph = helper.make_graph(builder.nodes, name, inputs, outputs, builder.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="radstream-reference-models",
        producer_version="1",
        doc_string="RadStream reference network: fixed-seed UNTRAINED weights.",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def build_cxr_classifier(seed: int = SEED) -> onnx.ModelProto:
    """Multi-label classifier: IMAGE [N,1,224,224] -> PROBABILITIES [N,14]."""
    g = _GraphBuilder(np.random.default_rng(seed))
    x = g.relu(g.conv("IMAGE", 1, 8, stride=2))  # 112
    x = g.relu(g.conv(x, 8, 16, stride=2))  # 56
    x = g.relu(g.conv(x, 16, 32, stride=2))  # 28
    x = g.op("GlobalAveragePool", [x])
    x = g.op("Flatten", [x], axis=1)
    w = g._weight("head.weight", g.rng.normal(0.0, 0.5, size=(len(CXR_FINDINGS), 32)))
    b = g._weight("head.bias", np.full(len(CXR_FINDINGS), -1.0))
    logits = g.op("Gemm", [x, w, b], transB=1)
    g.op("Sigmoid", [logits], output="PROBABILITIES")
    return _model(
        g,
        "cxr_classifier",
        [helper.make_tensor_value_info("IMAGE", TensorProto.FLOAT, ["batch", 1, CXR_SIDE, CXR_SIDE])],
        [helper.make_tensor_value_info("PROBABILITIES", TensorProto.FLOAT, ["batch", len(CXR_FINDINGS)])],
    )


def build_lesion_segmenter(seed: int = SEED + 1) -> onnx.ModelProto:
    """Two-level U-Net: IMAGE [N,1,256,256] -> MASK [N,1,256,256] probabilities."""
    g = _GraphBuilder(np.random.default_rng(seed))
    e1 = g.relu(g.conv("IMAGE", 1, 8))  # 256
    p1 = g.op("MaxPool", [e1], kernel_shape=[2, 2], strides=[2, 2])
    e2 = g.relu(g.conv(p1, 8, 16))  # 128
    p2 = g.op("MaxPool", [e2], kernel_shape=[2, 2], strides=[2, 2])
    bottleneck = g.relu(g.conv(p2, 16, 32))  # 64
    d2 = g.op("Concat", [g.upsample2x(bottleneck), e2], axis=1)  # 48 channels
    d2 = g.relu(g.conv(d2, 48, 16))
    d1 = g.op("Concat", [g.upsample2x(d2), e1], axis=1)  # 24 channels
    d1 = g.relu(g.conv(d1, 24, 8))
    logits = g.conv(d1, 8, 1, kernel=1)
    g.op("Sigmoid", [logits], output="MASK")
    return _model(
        g,
        "lesion_segmenter",
        [helper.make_tensor_value_info("IMAGE", TensorProto.FLOAT, ["batch", 1, SEG_SIDE, SEG_SIDE])],
        [helper.make_tensor_value_info("MASK", TensorProto.FLOAT, ["batch", 1, SEG_SIDE, SEG_SIDE])],
    )


def serialized_reference_models() -> dict[Path, bytes]:
    """Every generated file, relative to the model repository, with its bytes."""
    return {
        Path("cxr_classifier/1/model.onnx"): build_cxr_classifier().SerializeToString(),
        Path("cxr_classifier/labels.txt"): ("\n".join(CXR_FINDINGS) + "\n").encode(),
        Path("lesion_segmenter/1/model.onnx"): build_lesion_segmenter().SerializeToString(),
    }


def write_reference_models(repository: Path = REPOSITORY) -> list[Path]:
    written = []
    for relative, payload in serialized_reference_models().items():
        target = repository / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(payload)
        written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=REPOSITORY)
    args = parser.parse_args()
    for path in write_reference_models(args.repository):
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
