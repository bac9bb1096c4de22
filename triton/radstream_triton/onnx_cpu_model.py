"""Python-backend stand-in for an ONNX Runtime model, for the CPU-only local server.

The ``nvidia-pytriton`` server ships only the Python backend. This file is copied
as ``model.py`` next to the unchanged ``model.onnx``; the generated config keeps
the model's name, inputs, outputs, ``max_batch_size`` and dynamic batching, so
Triton batches requests exactly as it does for the real ``onnxruntime`` backend.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import triton_python_backend_utils as pb_utils  # provided by the Python backend

TRITON_TO_NUMPY = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16, "TYPE_INT64": np.int64}


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        model_file = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # one instance per core; Triton runs instances in parallel
        self.session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self.input_names = [entry["name"] for entry in config["input"]]
        self.outputs = [(entry["name"], TRITON_TO_NUMPY[entry["data_type"]]) for entry in config["output"]]

    def execute(self, requests: list[Any]) -> list[Any]:
        # One onnxruntime run for the whole dynamic batch, then split per request.
        per_request = [
            {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names}
            for request in requests
        ]
        sizes = [tensors[self.input_names[0]].shape[0] for tensors in per_request]
        feed = {name: np.concatenate([tensors[name] for tensors in per_request]) for name in self.input_names}
        results = self.session.run([name for name, _ in self.outputs], feed)
        boundaries = np.cumsum(sizes)[:-1]
        split = [np.split(result, boundaries) for result in results]
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(name, split[k][i].astype(dtype)) for k, (name, dtype) in enumerate(self.outputs)
                ]
            )
            for i in range(len(requests))
        ]
