"""Exact pixel count of the convex hull image of one region (integer arithmetic).

``skimage.morphology.convex_hull_image`` takes the hull of the four edge midpoints
``(r +- 1/2, c)``, ``(r, c +- 1/2)`` of every pixel and keeps the pixel centres inside
or on that polygon. Here every coordinate is doubled, so all vertices are integers and
the inside test is exact: per pixel row the hull's left and right boundaries are
interpolated with exact rational arithmetic and rounded inwards.

Only the leftmost and rightmost pixel of each row of the region matter (the other
midpoints lie on segments between theirs), so the input is one ``(row, cmin, cmax)``
entry per occupied row, in increasing row order.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _levels(rows, cmin, cmax, m):
    """Doubled y-levels with the extreme doubled x of the midpoints on each level."""
    ys = np.empty(3 * m, dtype=np.int64)
    xl = np.empty(3 * m, dtype=np.int64)
    xr = np.empty(3 * m, dtype=np.int64)
    k = 0
    for i in range(m):
        r2 = 2 * np.int64(rows[i])
        a2 = 2 * np.int64(cmin[i])
        b2 = 2 * np.int64(cmax[i])
        # level 2r-1 (top midpoints), 2r (side midpoints), 2r+1 (bottom midpoints)
        if k > 0 and ys[k - 1] == r2 - 1:
            if a2 < xl[k - 1]:
                xl[k - 1] = a2
            if b2 > xr[k - 1]:
                xr[k - 1] = b2
        else:
            ys[k] = r2 - 1
            xl[k] = a2
            xr[k] = b2
            k += 1
        ys[k] = r2
        xl[k] = a2 - 1
        xr[k] = b2 + 1
        k += 1
        ys[k] = r2 + 1
        xl[k] = a2
        xr[k] = b2
        k += 1
    return ys, xl, xr, k


@njit(cache=True, nogil=True)
def _chain(ys, xs, k, left):
    """Left (convex) or right (concave) boundary of the hull as a function of y."""
    cy = np.empty(k, dtype=np.int64)
    cx = np.empty(k, dtype=np.int64)
    n = 0
    for i in range(k):
        y = ys[i]
        x = xs[i]
        while n >= 2:
            cross = (cy[n - 1] - cy[n - 2]) * (x - cx[n - 2]) - (cx[n - 1] - cx[n - 2]) * (y - cy[n - 2])
            if (left and cross <= 0) or ((not left) and cross >= 0):
                n -= 1
            else:
                break
        cy[n] = y
        cx[n] = x
        n += 1
    return cy, cx, n


@njit(cache=True, nogil=True)
def hull_pixel_count(rows, cmin, cmax, m):
    """Number of pixels of the convex hull image of a region.

    ``rows`` (increasing), ``cmin`` and ``cmax`` (inclusive) give the extent of each of
    the ``m`` occupied rows of the region.
    """
    if m == 0:
        return 0
    ys, xl, xr, k = _levels(rows, cmin, cmax, m)
    ly, lx, ln = _chain(ys, xl, k, True)
    ry, rx, rn = _chain(ys, xr, k, False)
    total = 0
    i = 0
    j = 0
    r0 = np.int64(rows[0])
    r1 = np.int64(rows[m - 1])
    for r in range(r0, r1 + 1):
        y = 2 * r
        while ly[i + 1] < y:
            i += 1
        while ry[j + 1] < y:
            j += 1
        # left boundary x(y) = lx[i] + (y - ly[i]) * (lx[i+1] - lx[i]) / (ly[i+1] - ly[i])
        den = ly[i + 1] - ly[i]
        num = lx[i] * den + (y - ly[i]) * (lx[i + 1] - lx[i])
        # smallest c with 2c >= num/den  -> ceil(num / (2 den))
        c_lo = -((-num) // (2 * den))
        den = ry[j + 1] - ry[j]
        num = rx[j] * den + (y - ry[j]) * (rx[j + 1] - rx[j])
        c_hi = num // (2 * den)
        if c_hi >= c_lo:
            total += c_hi - c_lo + 1
    return total
