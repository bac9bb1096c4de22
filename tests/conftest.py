"""Shared test data: real radiology images from pydicom and pydicom-data."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_voi_lut

REPO_ROOT = Path(__file__).resolve().parents[1]
TRITON_DIR = REPO_ROOT / "triton"
MODEL_REPOSITORY = TRITON_DIR / "model_repository"


def pydicom_file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"{name} missing: install pydicom-data"
    return Path(str(path))


@pytest.fixture(scope="session")
def chest_xray_bytes() -> bytes:
    """RG1_UNCR.dcm: a real CR chest radiograph, 1955x1841, 16-bit."""
    return pydicom_file("RG1_UNCR.dcm").read_bytes()


@pytest.fixture(scope="session")
def ct_bytes() -> bytes:
    """CT_small.dcm: a real 128x128 CT slice shipped with pydicom."""
    return pydicom_file("CT_small.dcm").read_bytes()


def _chest_xray_8bit() -> np.ndarray:
    """What a viewer exports: the header's VOI window, MONOCHROME1 shown inverted."""
    dataset = pydicom.dcmread(pydicom_file("RG1_UNCR.dcm"))
    pixels = apply_voi_lut(dataset.pixel_array, dataset).astype(np.float64)
    low, high = pixels.min(), pixels.max()
    unit = (pixels - low) / (high - low)
    if dataset.PhotometricInterpretation == "MONOCHROME1":
        unit = 1.0 - unit
    return (unit * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def png_bytes() -> bytes:
    """The chest radiograph exported as an 8-bit greyscale PNG."""
    buffer = io.BytesIO()
    Image.fromarray(_chest_xray_8bit()).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def jpeg_bytes() -> bytes:
    """The chest radiograph as an RGB JPEG, as exported by a viewer."""
    buffer = io.BytesIO()
    Image.fromarray(_chest_xray_8bit()).convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def dicom_bytes(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def chest_xray_j2k_bytes() -> bytes:
    """RG1_J2KR.dcm: the same radiograph, JPEG 2000 lossless (the usual archive form)."""
    return pydicom_file("RG1_J2KR.dcm").read_bytes()
