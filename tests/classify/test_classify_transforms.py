"""Pre-processing and metrics on tiny literal inputs."""

from __future__ import annotations

import numpy as np
import pytest

from hemoflow.classify.metrics import classification_metrics, format_metrics
from hemoflow.classify.transforms import center_crop_pad, prepare_cell_image, resample_to_mpp
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


def test_metrics_literal():
    m = classification_metrics(["a", "a", "b", "c"], ["a", "b", "b", "c"], classes=("a", "b", "c", "d"))
    assert m["accuracy"] == 0.75
    assert m["recall"] == {"a": 0.5, "b": 1.0, "c": 1.0}
    assert m["confusion"] == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    # F1: a = 2/3, b = 2/3, c = 1 -> macro 0.7778 (d has no support and is left out)
    assert m["macro_f1"] == pytest.approx(0.7778, abs=1e-4)
    assert "accuracy=0.7500" in format_metrics(m)
