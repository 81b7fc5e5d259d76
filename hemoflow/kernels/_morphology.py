"""Binary morphology with a small disk (Numba).

- :func:`disk_offsets` -- the offsets of a disk of a given radius.
- :func:`erode_disk`, :func:`dilate_disk` -- erosion and dilation by that disk (a
  radius-1 disk is the 4-connected cross, done without offsets).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["disk_offsets", "erode_disk", "dilate_disk"]


def disk_offsets(radius: float) -> np.ndarray:
    """``int64[k, 2]`` offsets ``(dy, dx)`` of the disk ``dy^2 + dx^2 <= radius^2``."""
    r = max(int(np.floor(radius)), 0)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    m = (yy * yy + xx * xx) <= radius * radius + 1e-9
    return np.ascontiguousarray(np.stack([yy[m], xx[m]], axis=1).astype(np.int64))


@njit(cache=True, nogil=True)
def _erode(mask, offs):
    h, w = mask.shape
    out = np.zeros((h, w), np.bool_)
    k = offs.shape[0]
    for i in range(h):
        for j in range(w):
            if not mask[i, j]:
                continue
            ok = True
            for t in range(k):
                ii = i + offs[t, 0]
                jj = j + offs[t, 1]
                if ii < 0 or ii >= h or jj < 0 or jj >= w:
                    continue
                if not mask[ii, jj]:
                    ok = False
                    break
            out[i, j] = ok
    return out


@njit(cache=True, nogil=True)
def _dilate(mask, offs):
    h, w = mask.shape
    out = mask.copy()
    k = offs.shape[0]
    for i in range(h):
        for j in range(w):
            if not mask[i, j]:
                continue
            inner = (
                i > 0 and i < h - 1 and j > 0 and j < w - 1
                and mask[i - 1, j] and mask[i + 1, j] and mask[i, j - 1] and mask[i, j + 1]
            )
            if inner:
                continue
            for t in range(k):
                ii = i + offs[t, 0]
                jj = j + offs[t, 1]
                if 0 <= ii < h and 0 <= jj < w:
                    out[ii, jj] = True
    return out


def _is_cross(radius: float) -> bool:
    # the disk is the 5-pixel cross for 1 <= radius < sqrt(2) (disk_offsets' rounding)
    return 1.0 - 1e-9 <= radius and radius * radius + 1e-9 < 2.0


def _cross(mask: np.ndarray, erode: bool) -> np.ndarray:
    """Erosion / dilation by the 5-pixel cross as four shifted whole-array ANDs / ORs
    (branch-free, vectorised; the commonest case at the working scale)."""
    out = mask.copy()
    op = np.logical_and if erode else np.logical_or
    op(out[1:], mask[:-1], out=out[1:])
    op(out[:-1], mask[1:], out=out[:-1])
    op(out[:, 1:], mask[:, :-1], out=out[:, 1:])
    op(out[:, :-1], mask[:, 1:], out=out[:, :-1])
    return out


def erode_disk(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary erosion by a disk; pixels beyond the array count as foreground."""
    mask = np.ascontiguousarray(mask, np.bool_)
    if _is_cross(radius):
        return _cross(mask, erode=True)
    return _erode(mask, disk_offsets(radius))


def dilate_disk(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary dilation by a disk (painted from the mask's boundary pixels)."""
    mask = np.ascontiguousarray(mask, np.bool_)
    if _is_cross(radius):
        return _cross(mask, erode=False)
    return _dilate(mask, disk_offsets(radius))
