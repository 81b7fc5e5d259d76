"""Layout kernels for small int8 convolution networks run in NHWC (channels-last) order.

- :func:`unshuffle2_nhwc` -- ``torch.nn.PixelUnshuffle(2)`` of planar ``uint8[C, H, W]``
  written straight into channels-last ``[H/2, W/2, 4C]`` (the layout the int8
  convolutions read), instead of an unshuffle followed by a layout copy.
- :func:`maxpool2_nhwc` -- ``MaxPool2d(2)`` (floor) of ``uint8[H, W, C]``. Max-pooling
  commutes with the monotone int8 quantisation, so pooling the stored bytes is exact.
- :func:`interleave` -- planar ``(C, H, W)`` (or a transposed view of it) to a contiguous
  ``(H, W, C)`` copy.

Both write into a caller's array (a view of a quantised tensor's storage), so no
intermediate is allocated.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["interleave", "maxpool2_nhwc", "unshuffle2_nhwc"]


def interleave(planes: np.ndarray) -> np.ndarray:
    """``(c, h, w)`` -> contiguous ``(h, w, c)``; one strided copy per channel is several
    times faster than ``np.ascontiguousarray(np.moveaxis(...))``."""
    out = np.empty(planes.shape[1:] + planes.shape[:1], planes.dtype)
    for i in range(planes.shape[0]):
        out[..., i] = planes[i]
    return out


@njit(cache=True, nogil=True)
def _unshuffle2(src, dst):
    c, h, w = src.shape
    for i in range(h // 2):
        for ci in range(c):
            for di in range(2):
                row = src[ci, 2 * i + di]
                base = ci * 4 + di * 2
                for j in range(w // 2):
                    dst[i, j, base] = row[2 * j]
                    dst[i, j, base + 1] = row[2 * j + 1]


@njit(cache=True, nogil=True)
def _maxpool2(src, dst):
    h, w, c = dst.shape
    for i in range(h):
        r0 = src[2 * i]
        r1 = src[2 * i + 1]
        for j in range(w):
            a0 = r0[2 * j]
            a1 = r0[2 * j + 1]
            b0 = r1[2 * j]
            b1 = r1[2 * j + 1]
            o = dst[i, j]
            for k in range(c):
                m = max(a0[k], a1[k])
                m = max(m, b0[k])
                o[k] = max(m, b1[k])


def _check(a: np.ndarray, name: str, ndim: int) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D uint8 array, got {getattr(a, 'dtype', type(a))} "
                         f"{getattr(a, 'shape', '')}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")


def unshuffle2_nhwc(src: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[i, j, 4c + 2di + dj] = src[c, 2i + di, 2j + dj]`` (PixelUnshuffle(2)
    channel order) for ``src`` uint8[C, H, W] with even H and W, ``out`` uint8[H/2, W/2, 4C]."""
    _check(src, "src", 3)
    _check(out, "out", 3)
    c, h, w = src.shape
    if h % 2 or w % 2:
        raise ValueError(f"src height and width must be even, got {h}x{w}")
    if out.shape != (h // 2, w // 2, 4 * c):
        raise ValueError(f"out has shape {out.shape}, expected {(h // 2, w // 2, 4 * c)}")
    _unshuffle2(src, out)
    return out


def maxpool2_nhwc(src: np.ndarray, out: np.ndarray) -> np.ndarray:
    """2x2 max-pool with stride 2 (trailing odd row/column dropped) of ``src``
    uint8[H, W, C] into ``out`` uint8[H // 2, W // 2, C]."""
    _check(src, "src", 3)
    _check(out, "out", 3)
    h, w, c = src.shape
    if out.shape != (h // 2, w // 2, c):
        raise ValueError(f"out has shape {out.shape}, expected {(h // 2, w // 2, c)}")
    _maxpool2(src, out)
    return out
