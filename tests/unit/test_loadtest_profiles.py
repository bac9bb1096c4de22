"""Arrival schedules: counts, spans, spacing, time compression, seeded Poisson arrivals."""

from __future__ import annotations

import numpy as np
import pytest

from radstream_triton.loadtest import images, profiles


def test_burst_is_50_evenly_spaced_arrivals_within_one_minute():
    offsets = profiles.burst()
    assert len(offsets) == 50
    assert offsets == sorted(offsets)
    assert offsets[0] == 0.0
    assert offsets[-1] < 60.0
    np.testing.assert_allclose(np.diff(offsets), 60.0 / 50)


def test_sustained_is_10_per_minute_for_30_minutes():
    offsets = profiles.sustained()
    assert len(offsets) == 300
    np.testing.assert_allclose(np.diff(offsets), 6.0)
    assert offsets[-1] == pytest.approx(30 * 60 - 6)
    # Every whole minute holds exactly 10 arrivals.
    per_minute = np.bincount(np.floor(np.asarray(offsets) / 60).astype(int))
    assert per_minute.tolist() == [10] * 30


def test_ramp_steps_through_2_5_10_20_per_minute():
    offsets = profiles.ramp()
    assert len(offsets) == 2 + 5 + 10 + 20
    assert offsets == sorted(offsets)
    per_minute = np.bincount(np.floor(np.asarray(offsets) / 60).astype(int))
    assert per_minute.tolist() == [2, 5, 10, 20]


@pytest.mark.parametrize("name", sorted(profiles.PROFILES))
@pytest.mark.parametrize("time_scale", [1.0, 6.0, 60.0])
def test_time_scale_divides_every_offset_and_keeps_the_count(name, time_scale):
    nominal = profiles.schedule(name)
    scaled = profiles.schedule(name, time_scale)
    assert len(scaled) == len(nominal)
    np.testing.assert_allclose(scaled, np.asarray(nominal) / time_scale)
    assert scaled[-1] < profiles.nominal_duration_s(name) / time_scale


def test_time_scale_60_runs_the_one_minute_burst_in_one_second():
    offsets = profiles.burst(60)
    assert len(offsets) == 50
    assert 0.95 < offsets[-1] < 1.0


def test_poisson_arrivals_are_seeded_sorted_and_stay_in_the_window():
    first = profiles.burst(arrivals="poisson", seed=3)
    again = profiles.burst(arrivals="poisson", seed=3)
    other = profiles.burst(arrivals="poisson", seed=4)
    assert first == again
    assert first != other
    assert len(first) == 50
    assert first == sorted(first)
    assert first[0] >= 0.0 and first[-1] < 60.0
    assert first != profiles.burst()


def test_poisson_ramp_keeps_each_step_count():
    offsets = profiles.ramp(arrivals="poisson", seed=1)
    per_minute = np.bincount(np.floor(np.asarray(offsets) / 60).astype(int), minlength=4)
    assert per_minute.tolist() == [2, 5, 10, 20]


@pytest.mark.parametrize("time_scale", [0.0, -1.0])
def test_a_non_positive_time_scale_is_refused(time_scale):
    with pytest.raises(ValueError, match="time_scale"):
        profiles.burst(time_scale)


def test_unknown_profile_and_arrivals_are_refused():
    with pytest.raises(ValueError, match="unknown profile"):
        profiles.schedule("spike")
    with pytest.raises(ValueError, match="arrivals"):
        profiles.burst(arrivals="bursty")  # type: ignore[arg-type]


def test_window_with_no_arrivals_is_empty():
    assert profiles.window(0, 60.0) == []


def test_image_assignment_round_robin_and_seeded_random():
    assert images.assign(7, 3) == [0, 1, 2, 0, 1, 2, 0]
    random = images.assign(200, 4, "random", seed=5)
    assert random == images.assign(200, 4, "random", seed=5)
    assert set(random) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="at least one image"):
        images.assign(3, 0)


def test_builtin_images_are_real_dicom_png_and_jpeg():
    loaded = {image.name: image.payload for image in images.load_images()}
    assert set(loaded) == {"cxr-dicom", "ct-dicom", "cxr-png", "cxr-jpeg"}
    assert loaded["cxr-dicom"][128:132] == b"DICM"
    assert loaded["ct-dicom"][128:132] == b"DICM"
    assert loaded["cxr-png"].startswith(b"\x89PNG\r\n\x1a\n")
    assert loaded["cxr-jpeg"].startswith(b"\xff\xd8\xff")


def test_an_image_name_that_is_neither_builtin_nor_file_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a built-in"):
        images.load_image(str(tmp_path / "missing.dcm"))
    study = tmp_path / "study.dcm"
    study.write_bytes(b"bytes")
    assert images.load_image(str(study)).payload == b"bytes"
