"""Triton Python-backend adapter over ``study_decoder`` (which holds the logic)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by the Python backend

from study_decoder import DecodeLimits, ImageRejected, decode_path_from_parameters, prepare_study


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.limits = DecodeLimits.from_parameters(parameters)
        self.decode_path = decode_path_from_parameters(parameters)

    def execute(self, requests: list[Any]) -> list[Any]:
        return [self._execute_one(request) for request in requests]

    def _execute_one(self, request: object) -> object:
        items = pb_utils.get_input_tensor_by_name(request, "IMAGE_BYTES").as_numpy().reshape(-1)
        cxr_batch, seg_batch = [], []
        for index, item in enumerate(items):
            payload = item if isinstance(item, bytes) else bytes(item)
            try:
                study = prepare_study(payload, self.limits, self.decode_path)
            except ImageRejected as error:
                prefix = f"batch item {index}: " if len(items) > 1 else ""
                return pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"{prefix}{error}", pb_utils.TritonError.INVALID_ARG)
                )
            cxr_batch.append(study.cxr_image)
            seg_batch.append(study.seg_image)
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("CXR_IMAGE", np.stack(cxr_batch).astype(np.float32)),
                pb_utils.Tensor("SEG_IMAGE", np.stack(seg_batch).astype(np.float32)),
            ]
        )
