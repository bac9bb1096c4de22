"""The real images the load tests send, and which request gets which.

Built-in images (all real radiology data shipped by pydicom and pydicom-data):

- ``cxr-dicom``: RG1_UNCR.dcm, a CR chest radiograph, 1955x1841, 16-bit (about 7 MB);
- ``ct-dicom``: CT_small.dcm, a 128x128 CT slice (about 39 kB);
- ``cxr-png``: RG1 exported as an 8-bit greyscale PNG (header VOI window,
  MONOCHROME1 shown inverted), as a viewer would export it;
- ``cxr-jpeg``: the same export as an RGB JPEG, quality 90.

Any other name is read as a file path, so a cluster can be loaded with its own studies.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

Order = Literal["round-robin", "random"]
ORDERS: tuple[Order, ...] = ("round-robin", "random")


@dataclass(frozen=True)
class StudyImage:
    """One encoded image (DICOM, PNG or JPEG bytes) and the name reports use for it."""

    name: str
    payload: bytes

    def __repr__(self) -> str:
        return f"StudyImage({self.name!r}, {len(self.payload)} bytes)"


def pydicom_test_file(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        raise FileNotFoundError(f"{name} not found: install pydicom-data")
    return Path(str(path))


@functools.cache
def cxr_dicom() -> bytes:
    return pydicom_test_file("RG1_UNCR.dcm").read_bytes()


@functools.cache
def ct_dicom() -> bytes:
    return pydicom_test_file("CT_small.dcm").read_bytes()


@functools.cache
def _cxr_8bit() -> npt.NDArray[np.uint8]:
    import pydicom
    from pydicom.pixels.processing import apply_voi_lut

    dataset = pydicom.dcmread(pydicom_test_file("RG1_UNCR.dcm"))
    pixels = np.asarray(apply_voi_lut(dataset.pixel_array, dataset), dtype=np.float64)
    low, high = float(pixels.min()), float(pixels.max())
    unit = (pixels - low) / (high - low)
    if dataset.PhotometricInterpretation == "MONOCHROME1":
        unit = 1.0 - unit
    return (unit * 255).astype(np.uint8)


@functools.cache
def cxr_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(_cxr_8bit()).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


@functools.cache
def cxr_jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(_cxr_8bit()).convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


BUILTIN: dict[str, Callable[[], bytes]] = {
    "cxr-dicom": cxr_dicom,
    "ct-dicom": ct_dicom,
    "cxr-png": cxr_png,
    "cxr-jpeg": cxr_jpeg,
}
DEFAULT_IMAGES: tuple[str, ...] = tuple(BUILTIN)


def load_image(name: str) -> StudyImage:
    """A built-in image by name, or the bytes of the file at ``name``."""
    if name in BUILTIN:
        return StudyImage(name, BUILTIN[name]())
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"image {name!r} is neither a built-in ({', '.join(BUILTIN)}) nor a file")
    return StudyImage(path.name, path.read_bytes())


def load_images(names: Sequence[str] = DEFAULT_IMAGES) -> list[StudyImage]:
    if not names:
        raise ValueError("at least one image is needed")
    return [load_image(name) for name in names]


def assign(count: int, images: int, order: Order = "round-robin", seed: int = 0) -> list[int]:
    """Which image (index into the image list) request ``i`` sends, for ``count`` requests.

    ``round-robin`` cycles through the images in order; ``random`` draws each request's
    image uniformly with ``numpy.random.default_rng(seed)``.
    """
    if images < 1:
        raise ValueError("at least one image is needed")
    if order == "round-robin":
        return [i % images for i in range(count)]
    if order == "random":
        return [int(i) for i in np.random.default_rng(seed).integers(0, images, size=count)]
    raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
