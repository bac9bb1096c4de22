"""Turning the pipeline's raw outputs into findings and a mask summary (pure numpy, no AWS)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lambdas.inference_endpoint.errors import PipelineOutputInvalid

MASK_SHAPE = (256, 256)


@dataclass(frozen=True)
class Finding:
    label: str
    probability: float
    above_threshold: bool


@dataclass(frozen=True)
class BoundingBox:
    """Inclusive pixel bounds in the mask's 256x256 frame (the study letterboxed to a square)."""

    row_min: int
    col_min: int
    row_max: int
    col_max: int


@dataclass(frozen=True)
class MaskSummary:
    threshold: float
    shape: tuple[int, int]
    max_probability: float
    mean_probability: float
    area_pixels: int
    area_fraction: float
    bounding_box: BoundingBox | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-native (lists, not tuples): the same whether returned or read back from S3."""
        return {**asdict(self), "shape": list(self.shape)}


def _checked(name: str, array: NDArray[Any] | None, shape: tuple[int, ...]) -> NDArray[np.float32]:
    if array is None:
        raise PipelineOutputInvalid(f"output {name} missing from Triton's response")
    if array.dtype != np.float32:
        raise PipelineOutputInvalid(f"output {name} has dtype {array.dtype}, expected float32")
    if array.size != int(np.prod(shape)):
        raise PipelineOutputInvalid(f"output {name} has shape {list(array.shape)}, expected {list(shape)}")
    values = array.reshape(shape)
    if not np.all(np.isfinite(values)):
        raise PipelineOutputInvalid(f"output {name} contains NaN or infinity")
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        raise PipelineOutputInvalid(f"output {name} spans [{low:.4f}, {high:.4f}], outside [0, 1]")
    return values


def findings_probabilities(array: NDArray[Any] | None, label_count: int) -> NDArray[np.float32]:
    """FINDINGS as a flat float32 vector, one probability per label; checked."""
    return _checked("FINDINGS", array, (label_count,))


def lesion_mask(array: NDArray[Any] | None) -> NDArray[np.float32]:
    """LESION_MASK ([1, 1, 256, 256] from the pipeline) as a checked 256x256 float32 array."""
    return _checked("LESION_MASK", array, MASK_SHAPE)


def build_findings(probabilities: NDArray[np.float32], labels: Sequence[str], threshold: float) -> list[Finding]:
    if len(labels) != probabilities.size:
        raise PipelineOutputInvalid(f"FINDINGS has {probabilities.size} values but labels.txt has {len(labels)} labels")
    return [
        Finding(label=label, probability=round(float(p), 6), above_threshold=bool(p >= threshold))
        for label, p in zip(labels, probabilities.tolist(), strict=True)
    ]


def summarize_mask(mask: NDArray[np.float32], threshold: float) -> MaskSummary:
    lesion = mask >= threshold
    area = int(lesion.sum())
    box = None
    if area:
        rows = np.flatnonzero(lesion.any(axis=1))
        cols = np.flatnonzero(lesion.any(axis=0))
        box = BoundingBox(int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1]))
    return MaskSummary(
        threshold=threshold,
        shape=(int(mask.shape[0]), int(mask.shape[1])),
        max_probability=round(float(mask.max()), 6),
        mean_probability=round(float(mask.mean()), 6),
        area_pixels=area,
        area_fraction=round(area / mask.size, 6),
        bounding_box=box,
    )
