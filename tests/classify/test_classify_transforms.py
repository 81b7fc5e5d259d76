"""Pre-processing, augmentation and metrics on tiny literal inputs."""

from __future__ import annotations

import numpy as np
import pytest

from hemoflow.classify.metrics import classification_metrics, format_metrics
from hemoflow.classify.transforms import augment_cell, center_crop_pad, prepare_cell_image, resample_to_mpp
from hemoflow.errors import UnsupportedImageError


def test_center_crop_and_pad():
    img = np.arange(5 * 5 * 3, dtype=np.uint8).reshape(5, 5, 3)
    np.testing.assert_array_equal(center_crop_pad(img, 3), img[1:4, 1:4])
    out = center_crop_pad(img[:2, :2], 4, fill=(9, 9, 9))
    assert out.shape == (4, 4, 3)
    np.testing.assert_array_equal(out[1:3, 1:3], img[:2, :2])
    assert (out[0] == 9).all() and (out[:, 3] == 9).all()


def test_resample_and_prepare_shapes():
    img = np.full((360, 363, 3), 128, np.uint8)
    assert resample_to_mpp(img, 0.1, 0.3).shape == (120, 121, 3)
    assert resample_to_mpp(img, 0.3, 0.3) is img
    out = prepare_cell_image(img, mpp=0.1, size=96, dst_mpp=0.3)
    assert out.shape == (96, 96, 3) and out.dtype == np.uint8 and (out == 128).all()
    small = prepare_cell_image(np.full((20, 20, 3), 7, np.uint8), mpp=0.3, size=96, dst_mpp=0.3)
    assert (small == 7).all()  # padded with the border colour
    with pytest.raises(UnsupportedImageError):
        prepare_cell_image(np.zeros((10, 10), np.uint8), mpp=0.1, size=96, dst_mpp=0.3)


def test_augment_is_seeded_and_keeps_shape():
    rng0 = np.random.default_rng(0)
    img = rng0.integers(0, 256, size=(128, 128, 3), dtype=np.uint8)
    a = augment_cell(img, src_mpp=0.28, dst_mpp=0.3, size=96, rng=np.random.default_rng(5))
    b = augment_cell(img, src_mpp=0.28, dst_mpp=0.3, size=96, rng=np.random.default_rng(5))
    c = augment_cell(img, src_mpp=0.28, dst_mpp=0.3, size=96, rng=np.random.default_rng(6))
    assert a.shape == (96, 96, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # a source much smaller than the field of view is padded, not an error
    tiny = augment_cell(img[:20, :20], src_mpp=0.3, dst_mpp=0.3, size=96, rng=np.random.default_rng(1))
    assert tiny.shape == (96, 96, 3)


def test_metrics_literal():
    m = classification_metrics(["a", "a", "b", "c"], ["a", "b", "b", "c"], classes=("a", "b", "c", "d"))
    assert m["accuracy"] == 0.75
    assert m["recall"] == {"a": 0.5, "b": 1.0, "c": 1.0}
    assert m["confusion"] == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    # F1: a = 2/3, b = 2/3, c = 1 -> macro 0.7778 (d has no support and is left out)
    assert m["macro_f1"] == pytest.approx(0.7778, abs=1e-4)
    assert "accuracy=0.7500" in format_metrics(m)


def test_od_stain_jitter_is_seeded_and_off_by_default():
    from hemoflow.classify.transforms import AugmentParams

    img = np.random.default_rng(0).integers(0, 256, size=(128, 128, 3), dtype=np.uint8)
    kw = dict(src_mpp=0.28, dst_mpp=0.3, size=96)
    off = augment_cell(img, rng=np.random.default_rng(5), **kw)
    np.testing.assert_array_equal(off, augment_cell(img, rng=np.random.default_rng(5), params=AugmentParams(), **kw))
    p = AugmentParams(od_scale=0.2, od_shift=0.05)
    a = augment_cell(img, rng=np.random.default_rng(5), params=p, **kw)
    b = augment_cell(img, rng=np.random.default_rng(5), params=p, **kw)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (96, 96, 3) and a.dtype == np.uint8 and not np.array_equal(a, off)
