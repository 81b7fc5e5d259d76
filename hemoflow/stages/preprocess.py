"""Input validation, working scale and stain channels.

Everything image-global (background colour, thresholds, pixel size) is measured once by
:func:`hemoflow.stages.calibrate`; the functions here are local: each output pixel depends
only on input pixels within a bounded distance, so a tile analysed with a fixed
:class:`~hemoflow.stages.Calibration` gives the same values as the whole image.

Two channels are derived from optical density ``OD_c = -log(I_c / background_c)``:

* **cell** score ``OD_green - OD_red`` (default) or ``OD_green``: haemoglobin absorbs
  green strongly and red hardly at all, the background neither; the difference also
  cancels grey illumination changes (vignetting, haze);
* **nucleus** score ``OD_red - OD_blue``: Romanowsky/Giemsa-stained chromatin is purple
  (absorbs red, passes blue) whereas haemoglobin and eosinophilic granules are pink/orange
  (absorb green and blue, pass red), so the score is high only on nuclei and platelets.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from hemoflow.errors import UnsupportedImageError

__all__ = [
    "validate_rgb",
    "downsample",
    "optical_density",
    "stain_channels",
    "CELL_CHANNELS",
]


def validate_rgb(rgb, *, contiguous: bool = True) -> np.ndarray:
    """Return ``rgb`` as a C-contiguous ``uint8[H, W, 3]`` array (``contiguous=False``:
    as it lies, e.g. a transposed view of planar channels, without a copy).

    An alpha channel (``H x W x 4``) is dropped. Anything else raises
    :class:`~hemoflow.errors.UnsupportedImageError` naming the shape and dtype.

    >>> validate_rgb(np.zeros((2, 3, 4), np.uint8)).shape
    (2, 3, 3)
    """
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise UnsupportedImageError(
            f"expected an RGB image of shape (H, W, 3), got shape {arr.shape} dtype {arr.dtype}"
        )
    if arr.dtype != np.uint8:
        raise UnsupportedImageError(
            f"expected an 8-bit (uint8) RGB image, got shape {arr.shape} dtype {arr.dtype}"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise UnsupportedImageError(f"empty image: shape {arr.shape} dtype {arr.dtype}")
    return np.ascontiguousarray(arr[..., :3]) if contiguous else arr[..., :3]


def downsample(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Block-average ``rgb`` by an integer ``factor`` (blocks anchored at pixel (0, 0)).

    Partial blocks at the bottom/right edge are averaged over the pixels they hold.
    Returns float32 ``[ceil(H/f), ceil(W/f), C]``.

    >>> downsample(np.arange(16, dtype=np.uint8).reshape(4, 4, 1), 2)[..., 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """
    img = np.asarray(rgb, dtype=np.float32)
    if factor <= 1:
        return img
    h, w = img.shape[:2]
    hp, wp = -(-h // factor), -(-w // factor)
    pad = ((0, hp * factor - h), (0, wp * factor - w)) + ((0, 0),) * (img.ndim - 2)
    s = np.pad(img, pad).reshape(hp, factor, wp, factor, *img.shape[2:]).sum(axis=(1, 3))
    ones = np.pad(np.ones((h, w), np.float32), pad[:2]).reshape(hp, factor, wp, factor)
    n = ones.sum(axis=(1, 3))
    return (s / n.reshape(n.shape + (1,) * (img.ndim - 2))).astype(np.float32)


def optical_density(rgb: np.ndarray, background) -> np.ndarray:
    """``-log(I / background)`` per channel, float32, clipped at 0 from below for noise.

    >>> float(optical_density(np.full((1, 1, 3), 100, np.uint8), (200, 200, 200))[0, 0, 0])
    0.6931...
    """
    bg = np.maximum(np.asarray(background, dtype=np.float32), 1.0)
    img = np.maximum(np.asarray(rgb, dtype=np.float32), 1.0)
    return np.log(bg / img, dtype=np.float32)


CELL_CHANNELS = ("od_green", "od_green_minus_red")


def stain_channels(rgb: np.ndarray, background, *, sigma_px: float = 0.0, cell_channel: str = "od_green_minus_red"):
    """Return ``(cell, nucleus)`` float32 score images (see module docstring).

    ``cell_channel``: ``"od_green"`` or ``"od_green_minus_red"`` (the default: haemoglobin
    absorbs green far more than red, while grey illumination changes and out-of-focus
    haze shift both equally and cancel). ``sigma_px`` > 0 smooths both with a Gaussian
    (truncated at 4 sigma: a local filter).
    """
    if cell_channel not in CELL_CHANNELS:
        raise ValueError(f"cell_channel must be one of {CELL_CHANNELS}, got {cell_channel!r}")
    od = optical_density(rgb, background)
    cell = od[..., 1] if cell_channel == "od_green" else od[..., 1] - od[..., 0]
    nucleus = od[..., 0] - od[..., 2]
    if sigma_px > 0:
        cell = ndi.gaussian_filter(cell, sigma_px, mode="nearest", truncate=4.0)
        nucleus = ndi.gaussian_filter(nucleus, sigma_px, mode="nearest", truncate=4.0)
    return np.ascontiguousarray(cell, np.float32), np.ascontiguousarray(nucleus, np.float32)
