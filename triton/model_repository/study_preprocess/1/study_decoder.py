"""Decode an encoded study image (DICOM, PNG, JPEG) into the networks' inputs.

Plain Python with no Triton dependency, so it is unit-tested directly; the
Python-backend ``model.py`` beside it is a thin adapter. Every rejection raises
``ImageRejected`` with a message precise enough for the caller to fix the input.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pydicom
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut  # type: ignore[attr-defined]

CXR_SIDE = 224
SEG_SIDE = 256

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"

# Percentiles used for the intensity window when the study carries none: robust
# to the burned-in labels and collimator edges common on radiographs.
WINDOW_PERCENTILES = (0.5, 99.5)


Image2D = NDArray[np.float32]


class ImageRejected(ValueError):
    """The payload is not a usable study image; the message says why."""


@dataclass(frozen=True)
class DecodeLimits:
    max_encoded_bytes: int = 32 * 1024 * 1024
    max_side_pixels: int = 16384
    max_total_pixels: int = 100_000_000

    @classmethod
    def from_parameters(cls, parameters: dict[str, str]) -> DecodeLimits:
        """Limits from a Triton config's ``parameters`` (string values)."""
        defaults = cls()
        values = {}
        for name in ("max_encoded_bytes", "max_side_pixels", "max_total_pixels"):
            raw = parameters.get(name, str(getattr(defaults, name)))
            try:
                values[name] = int(raw)
            except ValueError as error:
                raise ValueError(f"model parameter {name}={raw!r} is not an integer") from error
            if values[name] <= 0:
                raise ValueError(f"model parameter {name}={raw!r} must be positive")
        return cls(**values)


@dataclass(frozen=True)
class PreparedStudy:
    cxr_image: Image2D  # float32 [1, 224, 224] in [0, 1]
    seg_image: Image2D  # float32 [1, 256, 256] in [0, 1]
    source_format: str
    source_shape: tuple[int, int]


def sniff_format(payload: bytes) -> str:
    if payload[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == DICOM_MAGIC:
        return "dicom"
    if payload.startswith(PNG_MAGIC):
        return "png"
    if payload.startswith(JPEG_MAGIC):
        return "jpeg"
    raise ImageRejected(
        f"unrecognised image format: expected DICOM Part 10 ('DICM' at byte 128), PNG or JPEG; "
        f"first bytes are {payload[:8].hex()}"
    )


def _check_dimensions(rows: int, columns: int, limits: DecodeLimits) -> None:
    if rows <= 0 or columns <= 0:
        raise ImageRejected(f"declared image size {columns}x{rows} is empty")
    if max(rows, columns) > limits.max_side_pixels:
        raise ImageRejected(
            f"declared image size {columns}x{rows} exceeds the limit of " f"{limits.max_side_pixels} pixels per side"
        )
    if rows * columns > limits.max_total_pixels:
        raise ImageRejected(
            f"declared image size {columns}x{rows} ({rows * columns} pixels) exceeds the limit "
            f"of {limits.max_total_pixels} pixels"
        )


def decode_dicom(payload: bytes, limits: DecodeLimits) -> Image2D:
    """Pixel data in presentation space: modality LUT, VOI LUT, MONOCHROME1 inverted."""
    try:
        dataset = pydicom.dcmread(io.BytesIO(payload))
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError) as error:
        raise ImageRejected(f"DICOM could not be parsed: {error}") from error
    if "PixelData" not in dataset:
        raise ImageRejected("DICOM has no pixel data (element PixelData (7FE0,0010) is missing)")
    rows, columns = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0))
    _check_dimensions(rows, columns, limits)
    try:
        pixels = dataset.pixel_array
    except Exception as error:  # pydicom raises several types for damaged pixel data
        raise ImageRejected(f"DICOM pixel data is truncated or unreadable: {error}") from error

    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    samples = int(dataset.get("SamplesPerPixel", 1))
    if frames > 1:
        # A multi-frame study is represented by its middle frame.
        pixels = pixels[frames // 2]
    if samples == 3:
        return _luma(np.asarray(pixels, dtype=np.float32))

    modality = np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float64)
    image: Image2D = np.asarray(apply_voi_lut(modality, dataset), dtype=np.float32)
    if str(dataset.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        # MONOCHROME1 displays low values as white; flip so that bone is bright.
        image = (image.max() + image.min() - image).astype(np.float32)
    return image


def _luma(rgb: Image2D) -> Image2D:
    return np.asarray(rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114, dtype=np.float32)


def decode_raster(payload: bytes, limits: DecodeLimits, expected_format: str) -> Image2D:
    try:
        with Image.open(io.BytesIO(payload)) as image:
            columns, rows = image.size
            _check_dimensions(rows, columns, limits)
            image.load()
            grey = image if image.mode in ("L", "I", "I;16", "F") else image.convert("L")
            pixels: Image2D = np.asarray(grey, dtype=np.float32)
            return pixels
    except ImageRejected:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageRejected(f"{expected_format.upper()} could not be decoded: {error}") from error
    except Image.DecompressionBombError as error:
        raise ImageRejected(f"{expected_format.upper()} is too large: {error}") from error


def window_to_unit_range(image: Image2D) -> Image2D:
    """Scale intensities to [0, 1] between robust percentiles."""
    if not np.all(np.isfinite(image)):
        raise ImageRejected("image contains non-finite pixel values")
    low, high = np.percentile(image, WINDOW_PERCENTILES)
    if high <= low:
        return np.zeros_like(image, dtype=np.float32)
    scaled: Image2D = np.clip((image - low) / (high - low), 0.0, 1.0).astype(np.float32)
    return scaled


def letterbox_resize(image: Image2D, side: int) -> Image2D:
    """Pad to a square (keeping the aspect ratio), then resize to ``side``."""
    rows, columns = image.shape
    square = max(rows, columns)
    padded = np.zeros((square, square), dtype=np.float32)
    top, left = (square - rows) // 2, (square - columns) // 2
    padded[top : top + rows, left : left + columns] = image
    resized = Image.fromarray(padded, mode="F").resize((side, side), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0).astype(np.float32)


def prepare_study(payload: bytes, limits: DecodeLimits | None = None) -> PreparedStudy:
    limits = limits or DecodeLimits()
    if len(payload) == 0:
        raise ImageRejected("empty payload: the request carried 0 bytes of image data")
    if len(payload) > limits.max_encoded_bytes:
        raise ImageRejected(
            f"encoded image is {len(payload)} bytes, over the limit of {limits.max_encoded_bytes} bytes"
        )
    source_format = sniff_format(payload)
    if source_format == "dicom":
        pixels = decode_dicom(payload, limits)
    else:
        pixels = decode_raster(payload, limits, source_format)
    if pixels.ndim != 2:
        raise ImageRejected(f"expected a single greyscale frame, decoded an array of shape {pixels.shape}")
    unit = window_to_unit_range(pixels)
    return PreparedStudy(
        cxr_image=letterbox_resize(unit, CXR_SIDE)[np.newaxis],
        seg_image=letterbox_resize(unit, SEG_SIDE)[np.newaxis],
        source_format=source_format,
        source_shape=(int(pixels.shape[0]), int(pixels.shape[1])),
    )
