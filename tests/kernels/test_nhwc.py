"""The NHWC layout kernels against torch's PixelUnshuffle and MaxPool2d."""

import numpy as np
import pytest
import torch

from hemoflow.kernels._nhwc import maxpool2_nhwc, unshuffle2_nhwc


@pytest.mark.parametrize("shape", [(3, 2, 2), (3, 8, 14), (2, 36, 20)])
def test_unshuffle_matches_pixel_unshuffle_in_channels_last(shape):
    src = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    c, h, w = shape
    out = np.full((h // 2, w // 2, 4 * c), 7, np.uint8)
    unshuffle2_nhwc(src, out)
    ref = torch.nn.PixelUnshuffle(2)(torch.from_numpy(src)[None])[0].permute(1, 2, 0)
    assert np.array_equal(out, ref.numpy())


@pytest.mark.parametrize("shape", [(2, 2, 1), (8, 6, 16), (9, 7, 5)])
def test_maxpool_matches_maxpool2d_with_floor(shape):
    src = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    h, w, c = shape
    out = np.zeros((h // 2, w // 2, c), np.uint8)
    maxpool2_nhwc(src, out)
    x = torch.from_numpy(src.astype(np.float32)).permute(2, 0, 1)[None]
    ref = torch.nn.MaxPool2d(2)(x)[0].permute(1, 2, 0).numpy().astype(np.uint8)
    assert np.array_equal(out, ref)


def test_bad_arrays_are_rejected():
    src = np.zeros((3, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="even"):
        unshuffle2_nhwc(np.zeros((3, 5, 4), np.uint8), np.zeros((2, 2, 12), np.uint8))
    with pytest.raises(ValueError, match="expected"):
        unshuffle2_nhwc(src, np.zeros((2, 2, 8), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        unshuffle2_nhwc(src.astype(np.float32), np.zeros((2, 2, 12), np.uint8))
    with pytest.raises(ValueError, match="C-contiguous"):
        maxpool2_nhwc(np.zeros((4, 8, 3), np.uint8)[:, ::2], np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="expected"):
        maxpool2_nhwc(np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2, 2), np.uint8))


def test_interleave_matches_moveaxis():
    from hemoflow.kernels._nhwc import interleave

    planes = np.random.default_rng(1).integers(0, 256, (3, 5, 7), dtype=np.uint8)
    out = interleave(planes)
    assert out.flags.c_contiguous and np.array_equal(out, np.moveaxis(planes, 0, -1))
    assert np.array_equal(interleave(np.moveaxis(np.moveaxis(planes, 0, -1), -1, 0)), out)
