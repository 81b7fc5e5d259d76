import numpy as np
import pytest

from hemoflow.errors import HemoflowError, UnsupportedImageError
from hemoflow.stages import analyze_field, calibrate
from hemoflow.stages.preprocess import downsample, optical_density, stain_channels, validate_rgb


def test_validate_drops_alpha():
    out = validate_rgb(np.full((2, 2, 4), 7, np.uint8))
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8 and out.flags.c_contiguous


@pytest.mark.parametrize(
    "arr, words",
    [
        (np.zeros((4, 5), np.uint8), ["(4, 5)", "uint8"]),
        (np.zeros((4, 5, 3), np.uint16), ["(4, 5, 3)", "uint16"]),
        (np.zeros((4, 5, 3), np.float32), ["float32"]),
        (np.zeros((4, 5, 2), np.uint8), ["(4, 5, 2)"]),
        (np.zeros((2, 4, 5, 3), np.uint8), ["(2, 4, 5, 3)"]),
    ],
)
def test_unsupported_images_name_shape_and_dtype(arr, words):
    for fn in (validate_rgb, lambda a: analyze_field(a, mpp=0.25), lambda a: calibrate(a)):
        with pytest.raises(UnsupportedImageError) as e:
            fn(arr)
        for w in words:
            assert w in str(e.value)
        assert isinstance(e.value, TypeError) and isinstance(e.value, HemoflowError)


def test_downsample_literal():
    a = np.array([[0, 2, 4], [2, 4, 6], [8, 8, 9]], np.uint8)[..., None]
    out = downsample(a, 2)[..., 0]
    np.testing.assert_allclose(out, [[2.0, 5.0], [8.0, 9.0]])
    assert downsample(a, 1).shape == a.shape


def test_optical_density_and_channels_literal():
    rgb = np.array([[[100, 50, 200], [200, 200, 200]]], np.uint8)
    od = optical_density(rgb, (200, 200, 200))
    np.testing.assert_allclose(od[0, 0], [np.log(2), np.log(4), 0.0], rtol=1e-6)
    np.testing.assert_allclose(od[0, 1], 0.0, atol=1e-7)
    cell, nuc = stain_channels(rgb, (200, 200, 200))
    np.testing.assert_allclose(cell[0, 0], np.log(4) - np.log(2), rtol=1e-6)
    np.testing.assert_allclose(nuc[0, 0], np.log(2), rtol=1e-6)
    cell_g, _ = stain_channels(rgb, (200, 200, 200), cell_channel="od_green")
    np.testing.assert_allclose(cell_g[0, 0], np.log(4), rtol=1e-6)
