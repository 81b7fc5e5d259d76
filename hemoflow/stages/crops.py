"""Fixed-scale WBC crops for the classifier."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from numba import njit
from scipy import ndimage as ndi

from hemoflow.errors import HemoflowError

__all__ = ["CropSpec", "crop_cells"]


@dataclass(frozen=True)
class CropSpec:
    """Size and scale of the classifier crops.

    Parameters
    ----------
    size : int
        Output side in px (the crop is ``size x size x 3`` uint8).
    mpp : float
        µm per output pixel. The default 0.25 gives a 24 µm field of view at 96 px,
        enough for a large monocyte with a margin.
    """

    size: int = 96
    mpp: float = 0.25

    def __post_init__(self) -> None:
        if not isinstance(self.size, (int, np.integer)) or int(self.size) < 1:
            raise HemoflowError(f"CropSpec.size must be a positive int, got {self.size!r}")
        if not (float(self.mpp) > 0 and np.isfinite(float(self.mpp))):
            raise HemoflowError(f"CropSpec.mpp must be a positive number, got {self.mpp!r}")
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "mpp", float(self.mpp))

    def window_px(self, mpp: float) -> float:
        """Side of the source window in image px for an image of ``mpp`` µm/px."""
        return self.size * self.mpp / float(mpp)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CropSpec":
        return cls(**dict(d))


@functools.lru_cache(maxsize=16)
def _gauss_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) matrix of a 1-D Gaussian filter with ``mode="nearest"`` borders, the same
    kernel as ``scipy.ndimage.gaussian_filter1d(..., truncate=4.0)``."""
    if sigma <= 0.3:
        g = np.eye(n, dtype=np.float32)
        g.setflags(write=False)
        return g
    r = int(4.0 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    g = np.zeros((n, n), np.float64)
    rows = np.arange(n)
    for j, kv in zip(range(-r, r + 1), k):
        np.add.at(g, (rows, np.clip(rows + j, 0, n - 1)), kv)
    g = g.astype(np.float32)
    g.setflags(write=False)  # cached and shared
    return g


@njit(cache=True, nogil=True)
def _bilinear_crops(rgb, iy, ty, ix, tx, bg, out):
    # out[n, a, b] = bilinear sample at rows iy/iy+1 (weight ty of the second) and columns
    # ix/ix+1 (weight tx), in float32 like the matrix route; outside the image: bg
    h, w = rgb.shape[0], rgb.shape[1]
    nc, s = iy.shape
    for n in range(nc):
        for a in range(s):
            y = iy[n, a]
            wy = ty[n, a]
            for b in range(s):
                x = ix[n, b]
                wx = tx[n, b]
                for c in range(3):
                    v00 = np.float32(rgb[y, x, c]) if 0 <= y < h and 0 <= x < w else bg[c]
                    v01 = np.float32(rgb[y, x + 1, c]) if 0 <= y < h and 0 <= x + 1 < w else bg[c]
                    v10 = np.float32(rgb[y + 1, x, c]) if 0 <= y + 1 < h and 0 <= x < w else bg[c]
                    v11 = np.float32(rgb[y + 1, x + 1, c]) if 0 <= y + 1 < h and 0 <= x + 1 < w else bg[c]
                    r0 = (np.float32(1) - wy) * v00 + wy * v10
                    r1 = (np.float32(1) - wy) * v01 + wy * v11
                    v = np.rint((np.float32(1) - wx) * r0 + wx * r1)
                    out[n, a, b, c] = np.uint8(min(max(v, np.float32(0)), np.float32(255)))


def _taps(pos: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Left tap index and weight of the right tap for linear interpolation at ``pos``
    (clamped to the ends like ``mode="nearest"``), as in :func:`_resample_matrix`."""
    p = np.clip(pos, 0, n - 1)
    i0 = np.minimum(np.floor(p).astype(np.int64), n - 2) if n > 1 else np.zeros(len(p), np.int64)
    return i0, (p - i0).astype(np.float32)


def _resample_matrix(pos: np.ndarray, n: int, sigma: float) -> np.ndarray:
    """(len(pos), n) matrix: Gaussian pre-filter, then linear interpolation at ``pos``
    (pixel-centre coordinates, clamped to the ends like ``mode="nearest"``)."""
    i0, t = _taps(pos, n)
    lin = np.zeros((len(pos), n), np.float32)
    rows = np.arange(len(pos))
    lin[rows, i0] = 1 - t
    if n > 1:
        lin[rows, i0 + 1] += t
    return lin @ _gauss_matrix(n, sigma)


def crop_cells(
    rgb: np.ndarray,
    ys,
    xs,
    *,
    mpp: float,
    crop: CropSpec = CropSpec(),
    background=(255, 255, 255),
) -> np.ndarray:
    """Crop a ``crop.window_px(mpp)`` window around each ``(y, x)`` and resize to ``crop.size``.

    Bilinear resampling after a Gaussian anti-alias pre-filter when shrinking; pixels beyond
    the image are the constant ``background`` colour. Each crop depends only on the image
    within its window (plus the pre-filter margin), so tiling does not change it.

    >>> img = np.zeros((10, 10, 3), np.uint8)
    >>> crop_cells(img, [5.0], [5.0], mpp=0.25, crop=CropSpec(size=4, mpp=0.25)).shape
    (1, 4, 4, 3)
    """
    ys = np.asarray(ys, np.float64).ravel()
    xs = np.asarray(xs, np.float64).ravel()
    size = crop.size
    out = np.empty((len(ys), size, size, 3), np.uint8)
    if len(ys) == 0:
        return out
    win = crop.window_px(mpp)
    step = win / size
    sigma = max(0.0, (step - 1.0) / 2.0)
    margin = int(np.ceil(4 * sigma)) + 2
    h, w = rgb.shape[:2]
    bg = np.asarray(background, np.float32).reshape(3)
    # output pixel j covers [cy - win/2 + j*step, ... + step); its centre, in the
    # pixel-centre coordinates of the centroid:
    grid = (np.arange(size) + 0.5) * step - win / 2.0
    if sigma <= 0.3:
        # no pre-filter: plain bilinear sampling, two taps per axis, every crop in one
        # Numba pass (the tap positions are those of the matrix route below)
        iy, ty, ix, tx = [], [], [], []
        for cy, cx in zip(ys, xs):
            y0 = int(np.floor(cy - win / 2.0)) - margin
            x0 = int(np.floor(cx - win / 2.0)) - margin
            y1 = int(np.ceil(cy + win / 2.0)) + margin + 1
            x1 = int(np.ceil(cx + win / 2.0)) + margin + 1
            a, b = _taps(cy + grid - y0, y1 - y0)
            iy.append(a + y0)
            ty.append(b)
            a, b = _taps(cx + grid - x0, x1 - x0)
            ix.append(a + x0)
            tx.append(b)
        _bilinear_crops(rgb[..., :3], np.array(iy), np.array(ty), np.array(ix),  # any layout, no copy
                        np.array(tx), bg, out)
        return out
    for i, (cy, cx) in enumerate(zip(ys, xs)):
        y0 = int(np.floor(cy - win / 2.0)) - margin
        x0 = int(np.floor(cx - win / 2.0)) - margin
        y1 = int(np.ceil(cy + win / 2.0)) + margin + 1
        x1 = int(np.ceil(cx + win / 2.0)) + margin + 1
        patch = np.empty((y1 - y0, x1 - x0, 3), np.float32)
        patch[:] = bg
        sy0, sx0, sy1, sx1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
        if sy1 > sy0 and sx1 > sx0:
            patch[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = rgb[sy0:sy1, sx0:sx1, :3]
        ph, pw = patch.shape[:2]
        # Pre-filter and bilinear sampling are both separable and linear, so the crop is
        # wy @ patch @ wx.T per channel: two small matrix products instead of three
        # filter passes and three map_coordinates calls.
        wy = _resample_matrix(cy + grid - y0, ph, sigma)
        wx = _resample_matrix(cx + grid - x0, pw, sigma)
        t = (wy @ patch.reshape(ph, pw * 3)).reshape(size, pw, 3)  # rows resampled
        v = (wx @ t.transpose(1, 0, 2).reshape(pw, size * 3)).reshape(size, size, 3).transpose(1, 0, 2)
        np.rint(v, out=v)
        np.clip(v, 0, 255, out=v)
        out[i] = v
    return out
