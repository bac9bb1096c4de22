"""The fast preprocessing path against the full-resolution reference path (the oracle).

Every DICOM that pydicom and pydicom-data ship (CR, CT, MR, US, NM; uncompressed, JPEG
2000 lossless and lossy, JPEG baseline/extended/lossless, JPEG-LS, RLE, deflated,
big-endian, multi-frame, palette, RGB/YBR) plus the PNG and JPEG exports of the chest
radiograph: both paths accept or reject the same files with the same message, and
accepted files give network inputs within the issue's tolerances.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.encaps import get_frame

import study_decoder
from study_decoder import (
    FAST,
    REFERENCE,
    DecodeLimits,
    ImageRejected,
    StageTimer,
    decode_path_from_parameters,
    jpeg2000_reduce_levels,
    prepare_study,
    read_jpeg2000_header,
)
from tests.conftest import MODEL_REPOSITORY, dicom_bytes, pydicom_file

MAX_ABS = 0.03
MEAN_ABS = 0.005


def _all_dicom_files() -> list[Path]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns that it cannot download its optional extras
        files = {Path(path).name: Path(path) for path in get_testdata_files("*.dcm")}
    return [files[name] for name in sorted(files)]


DICOM_FILES = _all_dicom_files()
# What the fidelity criterion must cover (the issue's list); checked to be present.
REQUIRED = {
    "RG1_UNCR.dcm": "CR uncompressed",
    "RG1_J2KR.dcm": "CR JPEG 2000 lossless",
    "RG1_J2KI.dcm": "CR JPEG 2000 lossy",
    "RG3_J2KR.dcm": "CR JPEG 2000 lossless, square",
    "CT_small.dcm": "CT",
    "693_J2KR.dcm": "CT JPEG 2000 signed",
    "MR2_J2KR.dcm": "MR JPEG 2000",
    "MR_small_RLE.dcm": "MR RLE",
    "MR_small_jpeg_ls_lossless.dcm": "MR JPEG-LS",
    "JPEG-LL.dcm": "NM JPEG lossless",
    "JPGLosslessP14SV1_1s_1f_8b.dcm": "US JPEG lossless 8-bit",
    "SC_rgb_jpeg.dcm": "JPEG baseline RGB",
    "emri_small_jpeg_2k_lossless.dcm": "multi-frame JPEG 2000",
    "color3d_jpeg_baseline.dcm": "multi-frame JPEG baseline, 120 frames",
    "emri_small_RLE.dcm": "multi-frame RLE",
    "mlut_18.dcm": "Modality LUT Sequence",
    "vlut_04.dcm": "VOI LUT Sequence",
}


def _outcome(payload: bytes, path: str) -> study_decoder.PreparedStudy | str:
    try:
        return prepare_study(payload, path=path)
    except ImageRejected as error:
        return f"rejected: {error}"


def _assert_close(fast: study_decoder.PreparedStudy, reference: study_decoder.PreparedStudy, name: str) -> None:
    assert fast.source_format == reference.source_format
    assert fast.source_shape == reference.source_shape
    for field in ("cxr_image", "seg_image"):
        got, want = getattr(fast, field), getattr(reference, field)
        assert got.shape == want.shape and got.dtype == np.float32
        difference = np.abs(got - want)
        assert difference.max() <= MAX_ABS, f"{name} {field}: max |fast - reference| = {difference.max():.4f}"
        assert difference.mean() <= MEAN_ABS, f"{name} {field}: mean |fast - reference| = {difference.mean():.5f}"


def test_the_test_data_holds_every_encoding_the_issue_names():
    names = {path.name for path in DICOM_FILES}
    assert set(REQUIRED) <= names, sorted(set(REQUIRED) - names)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("path", DICOM_FILES, ids=[path.name for path in DICOM_FILES])
def test_fast_path_matches_the_reference_on_every_shipped_dicom(path):
    payload = path.read_bytes()
    reference, fast = _outcome(payload, REFERENCE), _outcome(payload, FAST)
    if isinstance(reference, str) or isinstance(fast, str):
        assert fast == reference
    else:
        _assert_close(fast, reference, path.name)


@pytest.mark.parametrize("image", ["png_bytes", "jpeg_bytes"])
def test_fast_path_matches_the_reference_on_png_and_jpeg(image, request):
    payload = request.getfixturevalue(image)
    _assert_close(prepare_study(payload, path=FAST), prepare_study(payload, path=REFERENCE), image)


def test_luts_and_window_run_on_the_reduced_image(chest_xray_bytes, monkeypatch):
    """RG1 is 1955x1841: the fast path's modality LUT and percentiles see a third of that."""
    seen: list[tuple[int, ...]] = []
    modality_lut, percentile = study_decoder.apply_modality_lut, np.percentile

    def record_lut(array, dataset):
        seen.append(("lut", *np.shape(array)))
        return modality_lut(array, dataset)

    def record_percentile(array, q):
        seen.append(("percentile", *np.shape(array)))
        return percentile(array, q)

    monkeypatch.setattr(study_decoder, "apply_modality_lut", record_lut)
    monkeypatch.setattr(study_decoder.np, "percentile", record_percentile)
    prepare_study(chest_xray_bytes)
    assert seen == [("lut", 652, 614), ("percentile", 652, 614)]


def test_jpeg2000_is_decoded_at_a_reduced_resolution_level():
    dataset = pydicom.dcmread(pydicom_file("RG1_J2KR.dcm"))
    reduced = study_decoder._decode_jpeg2000_reduced(dataset, None)
    assert reduced is not None
    # Two levels skipped (1955 / 4 = 489 >= 384): the ceiling of an odd size, as OpenJPEG decodes it.
    assert reduced.factor == 4 and reduced.pixels.shape == (489, 461)
    # The low-pass band sits on the samples of the full image whose indices are multiples of 4.
    full = dataset.pixel_array.astype(np.float64)
    assert np.abs(reduced.pixels.astype(np.float64) - full[::4, ::4]).mean() < 0.01 * float(full.max())


def test_jpeg2000_header_gives_the_decomposition_levels():
    dataset = pydicom.dcmread(pydicom_file("RG1_J2KR.dcm"))
    header = read_jpeg2000_header(get_frame(dataset.PixelData, 0, number_of_frames=1))
    assert header is not None
    assert (header.width, header.height, header.components) == (1841, 1955, 1)
    assert (header.precision, header.signed, header.decomposition_levels) == (15, False, 5)
    assert jpeg2000_reduce_levels(header) == 2  # 489 >= 384 > 245
    assert jpeg2000_reduce_levels(header, min_side=100) == 4
    assert jpeg2000_reduce_levels(header, min_side=1) == 5  # never more than the codestream has
    assert read_jpeg2000_header(b"\x89PNG\r\n\x1a\n") is None


def test_reduced_jpeg2000_of_an_odd_size_decodes_beyond_level_one():
    """Pillow 11.0 rounds the reduced size where OpenJPEG takes the ceiling (1841 / 4)."""
    dataset = pydicom.dcmread(pydicom_file("RG1_J2KR.dcm"))
    frame = get_frame(dataset.PixelData, 0, number_of_frames=1)
    with study_decoder._ReducedJpeg2000(io.BytesIO(frame)) as image:
        image.reduce = 2
        image.load()
        assert image.size == (461, 489)


def test_jpeg2000_with_clamped_low_pass_samples_falls_back_to_full_resolution():
    """RG3 has raw 0 (collimator) beside bright anatomy: reduced samples there are clamped."""
    dataset = pydicom.dcmread(pydicom_file("RG3_J2KR.dcm"))
    assert study_decoder._decode_jpeg2000_reduced(dataset, None) is None
    payload = pydicom_file("RG3_J2KR.dcm").read_bytes()
    _assert_close(prepare_study(payload, path=FAST), prepare_study(payload, path=REFERENCE), "RG3_J2KR")


@pytest.mark.parametrize("path", [FAST, REFERENCE])
def test_declared_size_is_rejected_before_any_pixel_is_decoded(path, monkeypatch):
    dataset = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    dataset.Rows = 60000
    dataset.Columns = 60000

    def no_decode(*args, **kwargs):
        raise AssertionError("pixel data decoded before the declared size was checked")

    monkeypatch.setattr(study_decoder, "_pixel_array", no_decode)
    monkeypatch.setattr(study_decoder, "_decode_jpeg2000_reduced", no_decode)
    with pytest.raises(ImageRejected, match="declared image size 60000x60000 exceeds the limit of 16384"):
        prepare_study(dicom_bytes(dataset), DecodeLimits(), path=path)


def test_stage_timer_records_every_stage(chest_xray_bytes):
    for path, stages in (
        (FAST, {"decode", "reduce", "lut", "window", "resize"}),
        (REFERENCE, {"decode", "lut", "window", "resize"}),
    ):
        timer = StageTimer()
        prepare_study(chest_xray_bytes, path=path, timer=timer)
        assert set(timer.milliseconds) == stages
        assert all(value >= 0 for value in timer.milliseconds.values())


def test_decode_path_parameter():
    assert decode_path_from_parameters({}) == FAST
    assert decode_path_from_parameters({"decode_path": "reference"}) == REFERENCE
    with pytest.raises(ValueError, match="decode_path='quick' must be one of fast, reference"):
        decode_path_from_parameters({"decode_path": "quick"})
    with pytest.raises(ValueError, match="unknown decode path"):
        prepare_study(b"x", path="quick")


def test_the_served_config_selects_the_fast_path():
    from radstream_triton.cpu_repository import load_config

    config = load_config(MODEL_REPOSITORY / "study_preprocess" / "config.pbtxt")
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    assert decode_path_from_parameters(parameters) == FAST
