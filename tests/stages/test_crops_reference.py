"""``crop_cells`` samples through separable matrices; it must agree with the scipy
route it replaces (Gaussian pre-filter + bilinear ``map_coordinates``) to one grey level."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from hemoflow.stages.crops import CropSpec, crop_cells


def _scipy_crop(rgb, cy, cx, *, mpp, crop, background):
    win = crop.window_px(mpp)
    step = win / crop.size
    sigma = max(0.0, (step - 1.0) / 2.0)
    margin = int(np.ceil(4 * sigma)) + 2
    h, w = rgb.shape[:2]
    y0, x0 = int(np.floor(cy - win / 2.0)) - margin, int(np.floor(cx - win / 2.0)) - margin
    y1, x1 = int(np.ceil(cy + win / 2.0)) + margin + 1, int(np.ceil(cx + win / 2.0)) + margin + 1
    patch = np.empty((y1 - y0, x1 - x0, 3), np.float32)
    patch[:] = np.asarray(background, np.float32)
    sy0, sx0, sy1, sx1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
    if sy1 > sy0 and sx1 > sx0:
        patch[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    grid = (np.arange(crop.size) + 0.5) * step - win / 2.0
    coords = np.meshgrid(cy + grid - y0, cx + grid - x0, indexing="ij")
    out = np.empty((crop.size, crop.size, 3), np.uint8)
    for c in range(3):
        ch = patch[..., c]
        if sigma > 0.3:
            ch = ndi.gaussian_filter(ch, sigma, mode="nearest", truncate=4.0)
        out[..., c] = np.clip(np.round(ndi.map_coordinates(ch, coords, order=1, mode="nearest")), 0, 255)
    return out


@pytest.mark.parametrize("mpp", [0.1, 0.25, 0.3, 0.5])
def test_matches_scipy_resampling(mpp):
    rng = np.random.default_rng(int(mpp * 100))
    rgb = ndi.uniform_filter(rng.integers(0, 256, (300, 340, 3)).astype(np.float32), (5, 5, 1)).astype(np.uint8)
    crop = CropSpec(size=32, mpp=0.3)
    ys, xs = rng.uniform(-10, 310, 25), rng.uniform(-10, 350, 25)
    got = crop_cells(rgb, ys, xs, mpp=mpp, crop=crop, background=(230, 220, 225))
    for i, (cy, cx) in enumerate(zip(ys, xs)):
        ref = _scipy_crop(rgb, cy, cx, mpp=mpp, crop=crop, background=(230, 220, 225))
        assert np.abs(got[i].astype(int) - ref.astype(int)).max() <= 1
