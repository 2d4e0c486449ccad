"""Tests of raygym.data.labels: real arrays, each assertion can fail."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raygym.data.labels import IGNORE_INDEX, LabelValueError, apply_remap, decode_palette

S2_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "s2_ocean_beach_4class"
S2_MAP = {1: 0, 2: 1, 3: 2, 4: 3}


def test_ignore_index_is_255() -> None:
    assert IGNORE_INDEX == 255


# ---------------------------------------------------------------- remap


def test_unknown_values_are_counted_across_count_chunks() -> None:
    """A label larger than one counting chunk (4 Mpx): counts from every chunk add up."""
    from raygym.data.labels import _COUNT_CHUNK

    label = np.ones(_COUNT_CHUNK + 5000, np.uint8)
    label[:3] = 9  # in the first chunk
    label[-7:] = 9  # in the last
    label[-20:-7] = 200
    out, changed = apply_remap(label.reshape(1, -1), S2_MAP, 4, unknown="ignore")
    assert changed == {9: 10, 200: 13}
    assert int((out == IGNORE_INDEX).sum()) == 23 and int((out == 0).sum()) == label.size - 23


def test_remap_mapping_covers_all() -> None:
    label = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    out, changed = apply_remap(label, S2_MAP, 4)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[0, 1], [2, 3]])
    assert changed == {}


def test_remap_identity() -> None:
    label = np.array([[0, 1, 2]], dtype=np.uint8)
    out, changed = apply_remap(label, None, 3)
    np.testing.assert_array_equal(out, label)
    assert changed == {}


def test_remap_error_reports_values_and_counts() -> None:
    label = np.array([[0, 1, 5, 5], [2, 3, 4, 0]], dtype=np.uint8)
    with pytest.raises(LabelValueError) as info:
        apply_remap(label, S2_MAP, 4, unknown="error")
    assert info.value.values == [0, 5]
    assert info.value.counts == [2, 2]


def test_remap_ignore_counts() -> None:
    label = np.array([[0, 1, 5, 5], [2, 3, 4, 0]], dtype=np.uint8)
    out, changed = apply_remap(label, S2_MAP, 4, unknown="ignore")
    np.testing.assert_array_equal(out, [[255, 0, 255, 255], [1, 2, 3, 255]])
    assert changed == {0: 2, 5: 2}


def test_remap_clip_reproduces_s2_rule() -> None:
    # The S2 set's own rule: 0 -> 1 and > 4 -> 4, then 1..4 -> 0..3.
    label = np.array([[0, 1, 2, 3, 4, 5, 9]], dtype=np.uint8)
    out, changed = apply_remap(label, S2_MAP, 4, unknown="clip")
    np.testing.assert_array_equal(out, [[0, 0, 1, 2, 3, 3, 3]])
    assert changed == {0: 1, 5: 1, 9: 1}


def test_remap_identity_clip() -> None:
    label = np.array([[0, 3, 7, 200]], dtype=np.uint8)
    out, changed = apply_remap(label, None, 4, unknown="clip")
    np.testing.assert_array_equal(out, [[0, 3, 3, 3]])
    assert changed == {7: 1, 200: 1}


def test_binary_0_255_mask_is_refused_not_lost() -> None:
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:5, 2:6] = 255
    with pytest.raises(LabelValueError) as info:
        apply_remap(mask, None, 2)
    assert info.value.values == [255]
    assert info.value.counts == [12]
    assert "{0: 0, 255: 1}" in str(info.value)
    out, changed = apply_remap(mask, {0: 0, 255: 1}, 2)
    assert int(out.sum()) == 12 and set(np.unique(out)) == {0, 1}
    assert changed == {}


def test_remap_explicit_mapping_keeps_preexisting_ignore() -> None:
    label = np.array([[0, 1, 255]], dtype=np.uint8)
    out, changed = apply_remap(label, {0: 0, 1: 1}, 2)
    np.testing.assert_array_equal(out, [[0, 1, 255]])
    assert changed == {}


def test_remap_uint16_and_wide_int_labels() -> None:
    label = np.array([[0, 1000, 40000]], dtype=np.uint16)
    out, _ = apply_remap(label, {0: 0, 1000: 1, 40000: 2}, 3)
    np.testing.assert_array_equal(out, [[0, 1, 2]])
    out64, _ = apply_remap(label.astype(np.int64), {0: 0, 1000: 1, 40000: 2}, 3)
    np.testing.assert_array_equal(out64, [[0, 1, 2]])


def test_remap_validates_mapping() -> None:
    label = np.zeros((2, 2), dtype=np.uint8)
    with pytest.raises(ValueError, match="outside classes"):
        apply_remap(label, {0: 5}, 4)
    with pytest.raises(ValueError, match="contiguous"):
        apply_remap(label, {0: 0, 255: 1}, 2, unknown="clip")
    with pytest.raises(TypeError):
        apply_remap(label.astype(np.float32), None, 2)


def test_label_value_error_survives_pickle() -> None:
    # Ray moves exceptions between processes by pickling them.
    err = pickle.loads(pickle.dumps(LabelValueError("bad", [5], [13])))
    assert isinstance(err, LabelValueError) and isinstance(err, ValueError)
    assert err.values == [5] and err.counts == [13] and str(err) == "bad"


@pytest.mark.skipif(not S2_DIR.is_dir(), reason="shared S2 data not present")
def test_remap_real_s2_labels_with_clip() -> None:
    with Image.open(sorted((S2_DIR / "labels").glob("*.jpg"))[0]) as im:
        label = np.asarray(im)
    with pytest.raises(LabelValueError):
        apply_remap(label, S2_MAP, 4)  # JPEG artefacts 0 and 5 are present
    out, changed = apply_remap(label, S2_MAP, 4, unknown="clip")
    assert set(np.unique(out)) <= {0, 1, 2, 3}
    assert set(changed) <= {0, 5} and sum(changed.values()) > 0
    assert sum(changed.values()) < 0.01 * label.size


# ---------------------------------------------------------------- palette


PALETTE = {(0, 0, 255): 0, (255, 255, 255): 1, (230, 200, 120): 2}


def test_decode_palette() -> None:
    rgb = np.array([[[0, 0, 255], [255, 255, 255]], [[230, 200, 120], [0, 0, 255]]], dtype=np.uint8)
    out, changed = decode_palette(rgb, PALETTE)
    np.testing.assert_array_equal(out, [[0, 1], [2, 0]])
    assert out.dtype == np.uint8 and changed == {}


def test_decode_palette_unknown_colours() -> None:
    rgb = np.array([[[0, 0, 255], [1, 2, 3], [1, 2, 3]]], dtype=np.uint8)
    with pytest.raises(LabelValueError) as info:
        decode_palette(rgb, PALETTE)
    assert info.value.values == [(1 << 16) | (2 << 8) | 3]
    assert info.value.counts == [2]
    out, changed = decode_palette(rgb, PALETTE, unknown="ignore")
    np.testing.assert_array_equal(out, [[0, 255, 255]])
    assert changed == {(1, 2, 3): 2}
