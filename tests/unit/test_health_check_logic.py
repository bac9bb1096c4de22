"""health_check.py's output validation and built-in smoke image, without a server."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from health_check import CheckFailed, known_input_png, validate_pipeline_outputs
from study_decoder import prepare_study


def _good(batch: int = 1) -> dict[str, np.ndarray]:
    return {
        "FINDINGS": np.full((batch, 14), 0.5, np.float32),
        "LESION_MASK": np.full((batch, 1, 256, 256), 0.2, np.float32),
    }


def test_known_input_is_a_valid_png_the_pipeline_accepts():
    payload = known_input_png()
    image = Image.open(io.BytesIO(payload))
    assert (image.format, image.mode, image.size) == ("PNG", "L", (256, 256))
    pixels = np.asarray(image)
    assert pixels[128, 128] == pixels.max() and pixels[0, 0] == 0
    assert prepare_study(payload).cxr_image.std() > 0.1
    assert known_input_png() == payload, "the smoke input must be deterministic"


def test_valid_outputs_pass_with_a_summary():
    summary = validate_pipeline_outputs(_good())
    assert "FINDINGS[1, 14]" in summary and "LESION_MASK[1, 1, 256, 256]" in summary


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o.pop("FINDINGS"), "output FINDINGS missing"),
        (lambda o: o.update(FINDINGS=np.zeros((1, 13), np.float32)), r"shape \[1, 13\], expected \[1, 14\]"),
        (lambda o: o.update(FINDINGS=np.zeros((1, 14), np.float64)), "dtype float64"),
        (lambda o: o["FINDINGS"].__setitem__((0, 3), np.nan), "NaN or infinity"),
        (lambda o: o["LESION_MASK"].__setitem__((0, 0, 5, 5), 1.5), r"outside \[0, 1\]"),
        (lambda o: o["LESION_MASK"].__setitem__((0, 0, 5, 5), -0.1), r"outside \[0, 1\]"),
    ],
)
def test_wrong_outputs_fail_with_the_reason(mutate, message):
    outputs = _good()
    mutate(outputs)
    with pytest.raises(CheckFailed, match=message):
        validate_pipeline_outputs(outputs)
