"""study_preprocess's decoding logic, without Triton."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pydicom
import pytest
from PIL import Image

from study_decoder import (
    CXR_SIDE,
    SEG_SIDE,
    DecodeLimits,
    ImageRejected,
    decode_dicom,
    letterbox_resize,
    prepare_study,
    sniff_format,
)
from tests.conftest import dicom_bytes, pydicom_file


def _assert_prepared(study, source_format: str) -> None:
    assert study.source_format == source_format
    assert study.cxr_image.shape == (1, CXR_SIDE, CXR_SIDE)
    assert study.seg_image.shape == (1, SEG_SIDE, SEG_SIDE)
    for array in (study.cxr_image, study.seg_image):
        assert array.dtype == np.float32
        assert array.min() >= 0.0 and array.max() <= 1.0
        assert array.std() > 0.05, "a real radiograph must not collapse to a flat image"


def test_chest_xray_dicom_is_decoded_to_both_network_inputs(chest_xray_bytes):
    study = prepare_study(chest_xray_bytes)
    _assert_prepared(study, "dicom")
    assert study.source_shape == (1955, 1841)


def test_ct_slice_uses_the_modality_lut_to_hounsfield_units(ct_bytes):
    dataset = pydicom.dcmread(io.BytesIO(ct_bytes))
    decoded = decode_dicom(ct_bytes, DecodeLimits())
    raw = dataset.pixel_array.astype(np.float64)
    expected = raw * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    # CT_small has no VOI window, so the decoded image is the HU image itself.
    np.testing.assert_allclose(decoded, expected, rtol=1e-6)
    _assert_prepared(prepare_study(ct_bytes), "dicom")


def test_png_and_jpeg_are_decoded(png_bytes, jpeg_bytes):
    _assert_prepared(prepare_study(png_bytes), "png")
    _assert_prepared(prepare_study(jpeg_bytes), "jpeg")


def test_dicom_and_png_of_the_same_radiograph_give_similar_inputs(chest_xray_bytes, png_bytes):
    from_dicom = prepare_study(chest_xray_bytes).cxr_image
    from_png = prepare_study(png_bytes).cxr_image
    correlation = np.corrcoef(from_dicom.ravel(), from_png.ravel())[0, 1]
    assert correlation > 0.95


def _synthetic_dicom(pixels: np.ndarray, photometric: str, **extra: object) -> bytes:
    dataset = pydicom.Dataset()
    dataset.file_meta = pydicom.dataset.FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
    dataset.Modality = "CR"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated = 16
    dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 0
    for key, value in extra.items():
        setattr(dataset, key, value)
    dataset.PixelData = pixels.astype(np.uint16).tobytes()
    return dicom_bytes(dataset)


def test_monochrome1_is_inverted_so_that_dense_tissue_is_bright():
    ramp = np.tile(np.arange(0, 64, dtype=np.uint16) * 100, (64, 1))
    mono2 = decode_dicom(_synthetic_dicom(ramp, "MONOCHROME2"), DecodeLimits())
    mono1 = decode_dicom(_synthetic_dicom(ramp, "MONOCHROME1"), DecodeLimits())
    assert mono2[0, 0] < mono2[0, -1]
    assert mono1[0, 0] > mono1[0, -1]
    np.testing.assert_allclose(mono1, mono2.max() + mono2.min() - mono2)


def test_voi_window_from_the_header_is_applied():
    ramp = np.tile(np.arange(0, 64, dtype=np.uint16) * 100, (64, 1))
    windowed = decode_dicom(_synthetic_dicom(ramp, "MONOCHROME2", WindowCenter=3000, WindowWidth=1000), DecodeLimits())
    # Everything below the window is clamped to one value, everything above to another.
    assert len(np.unique(windowed[:, :20])) == 1
    assert len(np.unique(windowed[:, -20:])) == 1
    assert len(np.unique(windowed[0])) > 5


def test_rgb_dicom_is_converted_to_greyscale():
    payload = pydicom_file("examples_rgb_color.dcm").read_bytes()
    study = prepare_study(payload)
    assert study.cxr_image.shape == (1, CXR_SIDE, CXR_SIDE)


def test_letterbox_keeps_aspect_ratio():
    wide = np.ones((50, 200), dtype=np.float32)
    resized = letterbox_resize(wide, 100)
    assert resized.shape == (100, 100)
    assert resized[0].max() == 0.0 and resized[-1].max() == 0.0  # padding above and below
    assert resized[50].min() == pytest.approx(1.0)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 10))


@pytest.mark.parametrize(
    ("payload_factory", "message"),
    [
        (lambda: b"", "empty payload"),
        (lambda: b"GIF89a" + bytes(300), "unrecognised image format"),
        (lambda: _png_header_only(70000, 10), "exceeds the limit of 16384 pixels per side"),
        (lambda: _png_header_only(12000, 12000), "exceeds the limit of 100000000 pixels"),
        (lambda: b"\x89PNG\r\n\x1a\n" + bytes(20), "PNG could not be decoded"),
        (lambda: b"\xff\xd8\xff\xe0" + bytes(20), "JPEG could not be decoded"),
    ],
)
def test_bad_payloads_are_rejected_with_a_precise_reason(payload_factory, message):
    with pytest.raises(ImageRejected, match=message):
        prepare_study(payload_factory())


def test_dicom_without_pixel_data_is_rejected(chest_xray_bytes):
    dataset = pydicom.dcmread(io.BytesIO(chest_xray_bytes))
    del dataset.PixelData
    with pytest.raises(ImageRejected, match=r"no pixel data \(element PixelData"):
        prepare_study(dicom_bytes(dataset))


def test_truncated_dicom_is_rejected(chest_xray_bytes):
    with pytest.raises(ImageRejected, match="truncated or unreadable"):
        prepare_study(chest_xray_bytes[: len(chest_xray_bytes) // 2])


def test_declared_dicom_size_is_checked_before_decoding():
    payload = _synthetic_dicom(np.zeros((4, 4)), "MONOCHROME2")
    dataset = pydicom.dcmread(io.BytesIO(payload))
    dataset.Rows = 60000
    dataset.Columns = 60000
    with pytest.raises(ImageRejected, match="declared image size 60000x60000 exceeds"):
        prepare_study(dicom_bytes(dataset))


def test_encoded_size_limit_comes_from_the_model_parameters(png_bytes):
    limits = DecodeLimits.from_parameters({"max_encoded_bytes": str(len(png_bytes) - 1)})
    with pytest.raises(ImageRejected, match=f"encoded image is {len(png_bytes)} bytes, over the limit"):
        prepare_study(png_bytes, limits)
    assert prepare_study(png_bytes, DecodeLimits.from_parameters({})).source_format == "png"


@pytest.mark.parametrize("raw", ["ten", "-5", "0"])
def test_bad_limit_parameters_fail_loudly(raw):
    with pytest.raises(ValueError, match="max_side_pixels"):
        DecodeLimits.from_parameters({"max_side_pixels": raw})


def test_format_sniffing(chest_xray_bytes, png_bytes, jpeg_bytes):
    assert sniff_format(chest_xray_bytes) == "dicom"
    assert sniff_format(png_bytes) == "png"
    assert sniff_format(jpeg_bytes) == "jpeg"


def test_decoded_png_matches_pillow(png_bytes):
    reference = np.asarray(Image.open(io.BytesIO(png_bytes)), dtype=np.float32)
    study = prepare_study(png_bytes)
    assert study.source_shape == reference.shape
