"""Decode an encoded study image (DICOM, PNG, JPEG) into the networks' inputs.

Plain Python with no Triton dependency, so it is unit-tested directly; the
Python-backend ``model.py`` beside it is a thin adapter. Every rejection raises
``ImageRejected`` with a message precise enough for the caller to fix the input.

Two paths produce the same inputs (the model parameter ``decode_path`` picks one):

- ``reference``: decode at full resolution, LUTs, percentiles and padding on every
  pixel, then one resize per network. Simple and slow; the tests' oracle.
- ``fast`` (served): reduce first, then do the rest on the reduced image. JPEG 2000
  is decoded at a reduced resolution level (the wavelet's low-pass band: most of the
  codestream is never entropy-decoded), baseline JPEG with the codec's DCT scaling,
  everything else with an integer area reduction (``Image.reduce``), to the
  smallest size whose long side is still at least ``JPEG2000_MIN_SIDE`` (JPEG 2000)
  or ``REDUCED_MIN_SIDE`` (the others); a multi-frame study decodes only its middle
  frame. Modality/VOI LUT, MONOCHROME1 and the percentile window then run on that
  image, and each network's input is one resize of it that keeps the reference's
  letterbox geometry exactly.
"""

from __future__ import annotations

import io
import math
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import pydicom
from numpy.typing import NDArray
from PIL import Image, ImageFile, Jpeg2KImagePlugin, UnidentifiedImageError
from pydicom.encaps import get_frame
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut  # type: ignore[attr-defined]
from pydicom.uid import JPEG2000, JPEG2000Lossless

if TYPE_CHECKING:
    from PIL._imaging import PixelAccess

CXR_SIDE = 224
SEG_SIDE = 256

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"

# Percentiles used for the intensity window when the study carries none: robust
# to the burned-in labels and collimator edges common on radiographs.
WINDOW_PERCENTILES = (0.5, 99.5)

FAST = "fast"
REFERENCE = "reference"
DECODE_PATHS = (FAST, REFERENCE)

# The fast path reduces to the smallest size whose long side is still at least this:
# 2.5x the largest network input, so that the final resize still filters over 2.5+
# reduced pixels. At 2x (512) a 1024-pixel MR (MR2_UNCR) differs from the reference
# by 0.032 at its sharpest edges; at 2.5x every real test image stays under 0.03
# (tests/unit/test_preprocess_fidelity.py).
REDUCED_MIN_SIDE = 640
# A JPEG 2000 codestream is decoded at the smallest resolution level whose long side
# is still at least this (1.5x the largest network input). Each level skipped saves
# about three quarters of the remaining entropy decoding, the bulk of the cost, so
# it is worth going below REDUCED_MIN_SIDE: RG1_J2KR at level 2 (489x461) stays within
# 0.021 (max) and 0.0022 (mean) of the reference and decodes 4x faster than level 1.
JPEG2000_MIN_SIDE = 3 * SEG_SIDE // 2
# An integer-valued image whose value range is wider than this gets its LUT applied
# point by point instead of through a table of every value.
MAX_LUT_TABLE = 1 << 20


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


def decode_path_from_parameters(parameters: dict[str, str]) -> str:
    """``decode_path`` from a Triton config's ``parameters``: ``fast`` (default) or ``reference``."""
    value = parameters.get("decode_path", FAST)
    if value not in DECODE_PATHS:
        raise ValueError(f"model parameter decode_path={value!r} must be one of {', '.join(DECODE_PATHS)}")
    return value


@dataclass
class StageTimer:
    """Milliseconds per stage (decode, reduce, lut, window, resize) of one ``prepare_study``."""

    milliseconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = (time.perf_counter() - started) * 1000.0
            self.milliseconds[name] = self.milliseconds.get(name, 0.0) + elapsed


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


def _parse_dicom(payload: bytes, limits: DecodeLimits) -> pydicom.Dataset:
    """The dataset, its declared size checked against the limits: no pixel decoded yet."""
    try:
        dataset = pydicom.dcmread(io.BytesIO(payload))
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError) as error:
        raise ImageRejected(f"DICOM could not be parsed: {error}") from error
    if "PixelData" not in dataset:
        raise ImageRejected("DICOM has no pixel data (element PixelData (7FE0,0010) is missing)")
    rows, columns = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0))
    _check_dimensions(rows, columns, limits)
    return dataset


def _frames(dataset: pydicom.Dataset) -> int:
    try:
        return int(dataset.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as error:  # what pydicom's own decoder raises on it
        raise ImageRejected(f"DICOM pixel data is truncated or unreadable: {error}") from error


def _pixel_array(dataset: pydicom.Dataset, index: int | None = None) -> NDArray[np.generic]:
    try:
        if index is not None:
            dataset.pixel_array_options(index=index)
        pixels: NDArray[np.generic] = dataset.pixel_array
    except Exception as error:  # pydicom raises several types for damaged pixel data
        raise ImageRejected(f"DICOM pixel data is truncated or unreadable: {error}") from error
    return pixels


def decode_dicom(payload: bytes, limits: DecodeLimits) -> Image2D:
    """Pixel data in presentation space: modality LUT, VOI LUT, MONOCHROME1 inverted."""
    dataset, pixels = _read_dicom_reference(payload, limits)
    return _present_reference(dataset, pixels)


def _read_dicom_reference(payload: bytes, limits: DecodeLimits) -> tuple[pydicom.Dataset, NDArray[np.generic]]:
    """Every frame at full resolution, then the middle one."""
    dataset = _parse_dicom(payload, limits)
    pixels = _pixel_array(dataset)
    frames = _frames(dataset)
    if frames > 1:
        # A multi-frame study is represented by its middle frame.
        pixels = pixels[frames // 2]
    return dataset, pixels


def _present_reference(dataset: pydicom.Dataset, pixels: NDArray[np.generic]) -> Image2D:
    if int(dataset.get("SamplesPerPixel", 1)) == 3:
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


def _check_payload(payload: bytes, limits: DecodeLimits) -> str:
    if len(payload) == 0:
        raise ImageRejected("empty payload: the request carried 0 bytes of image data")
    if len(payload) > limits.max_encoded_bytes:
        raise ImageRejected(
            f"encoded image is {len(payload)} bytes, over the limit of {limits.max_encoded_bytes} bytes"
        )
    return sniff_format(payload)


def _check_single_frame(pixels: NDArray[np.generic]) -> None:
    if pixels.ndim != 2:
        raise ImageRejected(f"expected a single greyscale frame, decoded an array of shape {pixels.shape}")


def prepare_study(
    payload: bytes, limits: DecodeLimits | None = None, path: str = FAST, timer: StageTimer | None = None
) -> PreparedStudy:
    """The networks' inputs from an encoded study, by the ``fast`` or the ``reference`` path."""
    limits = limits or DecodeLimits()
    timer = timer or StageTimer()
    if path == FAST:
        return _prepare_fast(payload, limits, timer)
    if path == REFERENCE:
        return prepare_study_reference(payload, limits, timer)
    raise ValueError(f"unknown decode path {path!r}: expected one of {', '.join(DECODE_PATHS)}")


def prepare_study_reference(payload: bytes, limits: DecodeLimits, timer: StageTimer | None = None) -> PreparedStudy:
    """Full resolution throughout: the oracle the fast path is tested against."""
    timer = timer or StageTimer()
    source_format = _check_payload(payload, limits)
    if source_format == "dicom":
        with timer.stage("decode"):
            dataset, raw = _read_dicom_reference(payload, limits)
        with timer.stage("lut"):
            pixels = _present_reference(dataset, raw)
    else:
        with timer.stage("decode"):
            pixels = decode_raster(payload, limits, source_format)
    _check_single_frame(pixels)
    with timer.stage("window"):
        unit = window_to_unit_range(pixels)
    with timer.stage("resize"):
        cxr, seg = letterbox_resize(unit, CXR_SIDE), letterbox_resize(unit, SEG_SIDE)
    return PreparedStudy(
        cxr_image=cxr[np.newaxis],
        seg_image=seg[np.newaxis],
        source_format=source_format,
        source_shape=(int(pixels.shape[0]), int(pixels.shape[1])),
    )


# --- the fast path -----------------------------------------------------------------


@dataclass(frozen=True)
class Reduced:
    """A reduced image and where its pixels sit on the full-resolution grid.

    Pixel ``j`` of ``pixels`` is centred at full-resolution coordinate
    ``j * factor + phase`` (rows and columns alike): ``factor / 2`` for an area
    reduction, ``0.5`` for a JPEG 2000 resolution level (its low-pass samples sit on
    the even samples of the level above).
    """

    pixels: NDArray[np.generic]
    factor: int
    phase: float
    full_shape: tuple[int, int]


def area_factor(shape: tuple[int, ...], min_side: int = REDUCED_MIN_SIDE) -> int:
    """The integer area reduction that keeps the long side at or above ``min_side``."""
    return max(1, max(shape[0], shape[1]) // min_side)


def area_reduce(image: Image2D, factor: int) -> Image2D:
    """Mean of each ``factor`` x ``factor`` block (Pillow's ``Image.reduce``; the last
    row and column average the pixels that exist)."""
    if factor == 1:
        return image
    source = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    reduced: Image2D = np.asarray(source.reduce(factor))
    return reduced


def _compose(inner: Reduced, factor: int) -> Reduced:
    """``inner`` area-reduced by ``factor`` more: where the new pixels sit."""
    return Reduced(
        pixels=inner.pixels,
        factor=inner.factor * factor,
        phase=inner.phase + (factor - 1) * inner.factor / 2.0,
        full_shape=inner.full_shape,
    )


@dataclass(frozen=True)
class _AxisPlacement:
    """One axis of a reduced image on the letterboxed square, in canvas pixels."""

    origin: int  # canvas index of the reduced image's first pixel
    start: float  # canvas coordinate where the square starts
    end: float  # ... and ends
    length: int  # canvas pixels
    first_weight: float  # share of the first / last pixel's block that is image, not padding
    last_weight: float


def _place_axis(full: int, count: int, square: int, factor: int, phase: float) -> _AxisPlacement:
    offset = (square - full) // 2
    k = float(factor)
    # Full coordinate y sits at canvas coordinate (y - offset - phase) / k + origin + 0.5.
    origin = max(0, math.ceil((offset + phase) / k - 0.5))
    start = origin + 0.5 - (offset + phase) / k
    end = start + square / k
    first_weight = last_weight = 1.0
    if offset + full == square:
        # The image ends where the square does: nothing beyond it, as in the reference.
        length = origin + count
        end = min(end, float(length))
    else:
        length = max(math.ceil(end), origin + count)
        last_centre = (count - 1) * k + phase
        last_weight = min(1.0, max(0.0, (full - (last_centre - k / 2.0)) / k))
    if offset > 0:
        first_weight = min(1.0, max(0.0, (phase + k / 2.0) / k))
    return _AxisPlacement(origin, start, end, length, first_weight, last_weight)


def letterbox_resize_reduced(image: Image2D, reduced: Reduced, side: int) -> Image2D:
    """What ``letterbox_resize`` gives on the full image, computed from a reduced one.

    The full image is padded to a square and resized to ``side``; here the reduced
    image goes onto a zero canvas at the matching place and Pillow resizes exactly
    the box that the full square covers (``Image.resize(box=...)``). A reduced pixel
    on the image's edge whose block reaches into the padding is weighted by the share
    of its block that is image (the padding is zero), as the full-resolution
    resize would see it.
    """
    rows, columns = reduced.full_shape
    square = max(rows, columns)
    along_y = _place_axis(rows, image.shape[0], square, reduced.factor, reduced.phase)
    along_x = _place_axis(columns, image.shape[1], square, reduced.factor, reduced.phase)
    canvas = np.zeros((along_y.length, along_x.length), dtype=np.float32)
    placed = canvas[along_y.origin : along_y.origin + image.shape[0], along_x.origin : along_x.origin + image.shape[1]]
    placed[...] = image
    placed[0, :] *= along_y.first_weight
    placed[-1, :] *= along_y.last_weight
    placed[:, 0] *= along_x.first_weight
    placed[:, -1] *= along_x.last_weight
    box = (along_x.start, along_y.start, along_x.end, along_y.end)
    resized = Image.fromarray(canvas, mode="F").resize((side, side), Image.Resampling.BILINEAR, box=box)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0).astype(np.float32)


def _prepare_fast(payload: bytes, limits: DecodeLimits, timer: StageTimer) -> PreparedStudy:
    source_format = _check_payload(payload, limits)
    if source_format == "dicom":
        grey = _fast_dicom(payload, limits, timer)
    else:
        grey = _fast_raster(payload, limits, source_format, timer)
    with timer.stage("window"):
        unit = window_to_unit_range(np.asarray(grey.pixels, dtype=np.float32))
    with timer.stage("resize"):
        cxr = letterbox_resize_reduced(unit, grey, CXR_SIDE)
        seg = letterbox_resize_reduced(unit, grey, SEG_SIDE)
    return PreparedStudy(
        cxr_image=cxr[np.newaxis],
        seg_image=seg[np.newaxis],
        source_format=source_format,
        source_shape=grey.full_shape,
    )


def _fast_dicom(payload: bytes, limits: DecodeLimits, timer: StageTimer) -> Reduced:
    with timer.stage("decode"):
        dataset = _parse_dicom(payload, limits)
        frames = _frames(dataset)
        # A multi-frame study is represented by its middle frame: decode only that one.
        index = frames // 2 if frames > 1 else None
        decoded = _decode_jpeg2000_reduced(dataset, index)
        if decoded is None:
            pixels = _pixel_array(dataset, index)
            decoded = Reduced(pixels, 1, 0.5, (int(pixels.shape[0]), int(pixels.shape[1])))
    if int(dataset.get("SamplesPerPixel", 1)) == 3:
        with timer.stage("lut"):
            grey = _luma(np.asarray(decoded.pixels, dtype=np.float32))
        _check_single_frame(grey)
        factor = area_factor(grey.shape)
        with timer.stage("reduce"):
            return replace(_compose(decoded, factor), pixels=area_reduce(grey, factor))
    _check_single_frame(decoded.pixels)
    factor = area_factor(decoded.pixels.shape)
    if factor == 1 and decoded.factor == 1:
        # Nothing to reduce: the reference's own LUT code on the decoded values.
        with timer.stage("lut"):
            return replace(decoded, pixels=_present_reference(dataset, decoded.pixels))
    with timer.stage("reduce"):
        reduced = area_reduce(np.asarray(decoded.pixels, dtype=np.float32), factor)
    integer = np.issubdtype(decoded.pixels.dtype, np.integer)
    with timer.stage("lut"):
        image = _present_reduced(dataset, reduced, decoded.pixels.dtype if integer else None)
    return replace(_compose(decoded, factor), pixels=image)


def _present_reduced(dataset: pydicom.Dataset, image: Image2D, integer_dtype: np.dtype[np.generic] | None) -> Image2D:
    """Modality LUT, VOI LUT and MONOCHROME1 on a reduced (so no longer integer) image.

    Rescale and window are applied to it directly (pydicom's functions are point
    operations); a LUT given as a table (Modality or VOI LUT Sequence) is indexed by
    stored values, so it is tabulated over the image's integer range and
    interpolated.
    """
    tabulated = "ModalityLUTSequence" in dataset or "VOILUTSequence" in dataset
    low, high = math.floor(float(image.min())), math.ceil(float(image.max()))
    if tabulated and integer_dtype is not None and high - low <= MAX_LUT_TABLE:
        values = np.arange(low, high + 1).astype(integer_dtype)
        modality = np.asarray(apply_modality_lut(values, dataset), dtype=np.float64)
        table = np.asarray(apply_voi_lut(modality, dataset), dtype=np.float64)
        presented: Image2D = np.interp(image, values.astype(np.float64), table).astype(np.float32)
    else:
        modality = np.asarray(apply_modality_lut(image, dataset), dtype=np.float64)
        presented = np.asarray(apply_voi_lut(modality, dataset), dtype=np.float32)
    if str(dataset.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        presented = (presented.max() + presented.min() - presented).astype(np.float32)
    return presented


# JPEG 2000 (ISO/IEC 15444-1 Annex A) main-header markers.
J2K_SOC, J2K_SIZ, J2K_COD, J2K_COC, J2K_SOT = 0xFF4F, 0xFF51, 0xFF52, 0xFF53, 0xFF90


@dataclass(frozen=True)
class Jpeg2000Header:
    width: int
    height: int
    components: int
    precision: int
    signed: bool
    decomposition_levels: int


def read_jpeg2000_header(codestream: bytes) -> Jpeg2000Header | None:
    """SIZ and COD/COC of a raw codestream's main header; None if it is not one."""
    if len(codestream) < 4 or struct.unpack(">H", codestream[:2])[0] != J2K_SOC:
        return None
    position, size, levels = 2, None, []
    while position + 4 <= len(codestream):
        marker, length = struct.unpack(">HH", codestream[position : position + 4])
        body = codestream[position + 4 : position + 2 + length]
        if marker == J2K_SOT or length < 2:
            break
        if marker == J2K_SIZ and len(body) >= 39:
            x1, y1, x0, y0 = struct.unpack(">IIII", body[2:18])
            components = struct.unpack(">H", body[34:36])[0]
            ssiz = body[36]
            size = (x1 - x0, y1 - y0, components, (ssiz & 0x7F) + 1, bool(ssiz & 0x80))
            if x0 or y0:
                return None  # an image offset changes where the low-pass samples sit
        elif marker == J2K_COD and len(body) >= 6:
            levels.append(body[5])  # Scod, progression, layers(2), MCT, then levels (SPcod)
        elif marker == J2K_COC and len(body) >= 3:
            # Component index is 1 byte with < 257 components; then Scoc, then levels.
            levels.append(body[2] if size is None or size[2] < 257 else body[3])
        position += 2 + length
    if size is None or not levels:
        return None
    return Jpeg2000Header(size[0], size[1], size[2], size[3], size[4], min(levels))


class _ReducedJpeg2000(Jpeg2KImagePlugin.Jpeg2KImageFile):
    """Pillow's JPEG 2000 reader, with the reduced size OpenJPEG actually decodes.

    Pillow 11.0 sizes a reduced image as ``int((size + 2**(r-1)) / 2**r)``; OpenJPEG
    decodes ``ceil(size / 2**r)`` (``opj_int_ceildivpow2``), so an odd-sized image
    (RG1: 1841 wide) fails at ``reduce >= 2`` with "broken data stream".
    """

    def load(self) -> PixelAccess | None:
        if self.tile and self._reduce:
            power = 1 << self._reduce
            self._size = (-(-self.size[0] // power), -(-self.size[1] // power))
            tile = self.tile[0]
            assert isinstance(tile.args, tuple)
            args = (tile.args[0], self._reduce, self.layers, tile.args[3], tile.args[4])
            self.tile = [ImageFile._Tile(tile.codec_name, (0, 0, *self.size), tile.offset, args)]
        return ImageFile.ImageFile.load(self)


def jpeg2000_reduce_levels(header: Jpeg2000Header, min_side: int = JPEG2000_MIN_SIDE) -> int:
    """Resolution levels to skip: as many as keep the long side >= ``min_side``, never
    more than the codestream's decomposition levels."""
    levels = 0
    while levels < header.decomposition_levels:
        next_side = -(-max(header.width, header.height) // (1 << (levels + 1)))
        if next_side < min_side:
            break
        levels += 1
    return levels


def _decode_jpeg2000_reduced(dataset: pydicom.Dataset, index: int | None) -> Reduced | None:
    """One frame of a JPEG 2000 DICOM at a reduced resolution level, as stored values.

    None (decode the usual way) unless the codestream is plain greyscale that agrees
    with the DICOM header (size, bits, sign) and a level can be skipped.
    """
    if dataset.file_meta.get("TransferSyntaxUID") not in (JPEG2000, JPEG2000Lossless):
        return None
    if int(dataset.get("SamplesPerPixel", 1)) != 1:
        return None
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    try:
        frame = get_frame(dataset.PixelData, index or 0, number_of_frames=_frames(dataset))
    except Exception:  # damaged encapsulation: pydicom's decoder reports it precisely
        return None
    header = read_jpeg2000_header(frame)
    if header is None or (header.width, header.height, header.components) != (columns, rows, 1):
        return None
    signed = int(dataset.get("PixelRepresentation", 0)) == 1
    if header.precision != int(dataset.BitsStored) or header.signed != signed or header.precision > 16:
        return None
    levels = jpeg2000_reduce_levels(header)
    if levels == 0:
        return None
    try:
        with _ReducedJpeg2000(io.BytesIO(frame)) as image:
            image.reduce = levels
            image.load()
            decoded = np.asarray(image)
            out_bits = 8 if image.mode == "L" else 16
    except (OSError, ValueError, SyntaxError):
        return None  # the full decode reports a damaged stream with the usual message
    # Pillow scales samples to the mode's bits and offsets signed ones to unsigned.
    values = decoded.astype(np.int32) >> (out_bits - header.precision)
    # The 5/3 and 9/7 low-pass filters have negative taps: next to a hard edge the
    # reduced samples over- and undershoot, and OpenJPEG clamps them to the sample
    # range. A clamped sample is no longer a linear filter of the image (MR2_J2KR:
    # 0.057 from the reference at its background edge), so an image with any sample
    # at either bound is decoded at full resolution instead.
    if int(values.min()) <= 0 or int(values.max()) >= (1 << header.precision) - 1:
        return None
    if signed:
        values -= 1 << (header.precision - 1)
    dtype = np.dtype(np.int16 if signed else np.uint16)
    return Reduced(values.astype(dtype), 1 << levels, 0.5, (rows, columns))


def _fast_raster(payload: bytes, limits: DecodeLimits, expected_format: str, timer: StageTimer) -> Reduced:
    try:
        with timer.stage("decode"), Image.open(io.BytesIO(payload)) as image:
            columns, rows = image.size
            _check_dimensions(rows, columns, limits)
            scale = 1
            if image.format == "JPEG":
                # The codec's DCT scaling (1/2, 1/4, 1/8): decode straight to the reduced size.
                wanted = max(1, area_factor((rows, columns)))
                drafted = image.draft("L", (max(1, columns // wanted), max(1, rows // wanted)))
                if drafted is not None:
                    scale = round(columns / drafted[1][2])
            image.load()
            grey = image if image.mode in ("L", "I", "I;16", "F") else image.convert("L")
            pixels: Image2D = np.asarray(grey, dtype=np.float32)
    except ImageRejected:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageRejected(f"{expected_format.upper()} could not be decoded: {error}") from error
    except Image.DecompressionBombError as error:
        raise ImageRejected(f"{expected_format.upper()} is too large: {error}") from error
    _check_single_frame(pixels)
    decoded = Reduced(pixels, scale, scale / 2.0, (rows, columns))
    factor = area_factor(pixels.shape)
    with timer.stage("reduce"):
        return replace(_compose(decoded, factor), pixels=area_reduce(pixels, factor))
