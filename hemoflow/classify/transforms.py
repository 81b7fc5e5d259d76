"""Pre-processing shared by training and inference.

Every cell image, whatever its source, is brought to the model's pixel size
(``io.mpp``) and centre-cropped (or padded) to ``io.input_size``: the same field of view
in µm as the pipeline's crops. (Training augmentation is
:class:`hemoflow.training.augment.BatchAugment`.)
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from hemoflow.errors import UnsupportedImageError

__all__ = ["resample_to_mpp", "center_crop_pad", "prepare_cell_image"]


def _check_rgb(img: np.ndarray) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        got = f"{getattr(img, 'dtype', type(img).__name__)}{list(getattr(img, 'shape', []))}"
        raise UnsupportedImageError(f"expected a uint8[H,W,3] RGB image, got {got}")
    return img


def border_colour(img: np.ndarray) -> tuple[int, int, int]:
    """Median colour of the 1-px border: the background used for padding."""
    edge = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]], axis=0)
    return tuple(int(v) for v in np.median(edge, axis=0))  # type: ignore[return-value]


def resample_to_mpp(
    img: np.ndarray, src_mpp: float, dst_mpp: float, *, resample: int = Image.Resampling.BILINEAR
) -> np.ndarray:
    """Resize ``img`` from ``src_mpp`` to ``dst_mpp`` µm/px (PIL, antialiased)."""
    _check_rgb(img)
    f = float(src_mpp) / float(dst_mpp)
    h, w = img.shape[:2]
    nh, nw = max(1, round(h * f)), max(1, round(w * f))
    if (nh, nw) == (h, w):
        return img
    return np.asarray(Image.fromarray(img).resize((nw, nh), resample=resample))


def center_crop_pad(img: np.ndarray, size: int, *, fill: tuple[int, int, int] | None = None) -> np.ndarray:
    """Centre-crop ``img`` to ``size`` x ``size``, padding with ``fill`` (default: border colour)."""
    h, w = img.shape[:2]
    if h >= size and w >= size:
        y0, x0 = (h - size) // 2, (w - size) // 2
        return np.ascontiguousarray(img[y0 : y0 + size, x0 : x0 + size])
    out = np.empty((size, size, 3), np.uint8)
    out[:] = border_colour(img) if fill is None else fill
    ch, cw = min(h, size), min(w, size)
    sy, sx = (h - ch) // 2, (w - cw) // 2
    dy, dx = (size - ch) // 2, (size - cw) // 2
    out[dy : dy + ch, dx : dx + cw] = img[sy : sy + ch, sx : sx + cw]
    return out


def prepare_cell_image(img: np.ndarray, *, mpp: float, size: int, dst_mpp: float) -> np.ndarray:
    """A centred single-cell image at ``mpp`` -> uint8 [size,size,3] crop at ``dst_mpp``.

    >>> import numpy as np
    >>> prepare_cell_image(np.zeros((360, 363, 3), np.uint8), mpp=0.1, size=96, dst_mpp=0.3).shape
    (96, 96, 3)
    """
    return center_crop_pad(resample_to_mpp(_check_rgb(img), mpp, dst_mpp), size)
