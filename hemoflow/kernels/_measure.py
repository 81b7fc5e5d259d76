"""One-pass accumulation of per-region moments, extents, perimeter and hull rows.

The label image is read once, row by row, as runs of equal nonzero label. Per run the
kernel adds the closed-form sums of the run's coordinates (area, first and second
moments in exact int64 arithmetic, relative to the region's first pixel so the numbers
stay small), the bounding box, and the run's extent to the region's per-row extents
(the only input the convex hull needs). Per pixel it adds the perimeter weight and the
intensity, when asked for.

The perimeter reproduces ``skimage.measure.perimeter(region_image, 4)``: a pixel of
region ``L`` is a border pixel when one of its 4-neighbours is not ``L`` (or outside the
image); each border pixel is weighted by the pattern of border pixels of ``L`` among its
8 neighbours, with skimage's table (code = 1 + 2 * n_edge + 10 * n_diagonal).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._hull import hull_pixel_count

_SQ2 = math.sqrt(2.0)


def _perimeter_weights() -> np.ndarray:
    w = np.zeros(50, dtype=np.float64)
    w[[5, 7, 15, 17, 25, 27]] = 1.0
    w[[21, 33]] = _SQ2
    w[[13, 23]] = (1.0 + _SQ2) / 2.0
    return w


PERIMETER_WEIGHTS = _perimeter_weights()


@njit(cache=True, nogil=True, inline="always")
def _sum_sq(n):
    """sum_{x=0}^{n} x**2 for any integer n (0 for n = -1)."""
    return n * (n + 1) * (2 * n + 1) // 6


@njit(cache=True, nogil=True)
def _border_row(lab, r, out):
    """out[1 + c] = label of (r, c) if it is a border pixel of its region, else 0.

    A border pixel has a 4-neighbour with another label or outside the image. ``out``
    has one padding zero on each side, so readers need no bounds checks.
    """
    h, w = lab.shape
    row = lab[r]
    if r == 0 or r == h - 1:
        for c in range(w):
            out[1 + c] = row[c]
        return
    up = lab[r - 1]
    dn = lab[r + 1]
    out[1] = row[0]
    out[w] = row[w - 1]
    for c in range(1, w - 1):
        v = row[c]
        b = (row[c - 1] != v) | (row[c + 1] != v) | (up[c] != v) | (dn[c] != v)
        out[1 + c] = v if b else 0


@njit(cache=True, nogil=True)
def _grow32(a, n):
    b = np.empty(max(2 * a.shape[0], n), dtype=np.int32)
    b[: a.shape[0]] = a
    return b


@njit(cache=True, nogil=True)
def _hull_areas(want_hull, m, h, e_row, e_min, e_max, e_next, head):
    """Convex hull pixel count of every region from its linked list of row extents."""
    hull = np.zeros(m, dtype=np.int64)
    if not want_hull:
        return hull
    rows = np.empty(max(h, 1), dtype=np.int32)
    cmin = np.empty(max(h, 1), dtype=np.int32)
    cmax = np.empty(max(h, 1), dtype=np.int32)
    for v in range(1, m):
        k = 0
        i = head[v]
        while i >= 0:
            rows[k] = e_row[i]
            cmin[k] = e_min[i]
            cmax[k] = e_max[i]
            k += 1
            i = e_next[i]
        hull[v] = hull_pixel_count(rows, cmin, cmax, k)
    return hull


@njit(cache=True, nogil=True, inline="always")
def _add_run(
    v, r, s, e, area, origin, sums, bbox,
    want_hull, e_row, e_min, e_max, e_next, head, tail, last_row, n_e,
):
    """Add the run ``[s, e]`` (inclusive) of row ``r`` to region ``v``; return n_e."""
    n = np.int64(e - s + 1)
    if area[v] == 0:
        origin[v, 0] = r
        origin[v, 1] = s
        bbox[v, 0] = r
        bbox[v, 1] = s
        bbox[v, 2] = r + 1
        bbox[v, 3] = e + 1
    else:
        if s < bbox[v, 1]:
            bbox[v, 1] = s
        bbox[v, 2] = r + 1
        if e + 1 > bbox[v, 3]:
            bbox[v, 3] = e + 1
    area[v] += n
    dr = np.int64(r) - origin[v, 0]
    a = np.int64(s) - origin[v, 1]
    b = np.int64(e) - origin[v, 1]
    sx = (a + b) * n // 2
    sums[v, 0] += n * dr
    sums[v, 1] += sx
    sums[v, 2] += n * dr * dr
    sums[v, 3] += _sum_sq(b) - _sum_sq(a - 1)
    sums[v, 4] += dr * sx
    if want_hull:
        if last_row[v] == r:
            e_max[tail[v]] = e  # runs come left to right
        else:
            e_row[n_e] = r
            e_min[n_e] = s
            e_max[n_e] = e
            e_next[n_e] = -1
            if tail[v] >= 0:
                e_next[tail[v]] = n_e
            else:
                head[v] = n_e
            tail[v] = n_e
            last_row[v] = r
            n_e += 1
    return n_e


@njit(cache=True, nogil=True)
def _measure_row(
    lab, r, inten, use_intensity, want_perimeter, want_hull, weights,
    area, origin, sums, bbox, perim, isum,
    e_row, e_min, e_max, e_next, head, tail, last_row, n_e,
    bprev, bcur, bnext,
):
    """Accumulate the runs of row ``r``; return the new number of hull entries."""
    h, w = lab.shape
    row = lab[r]
    nch = isum.shape[1]
    c = 0
    while c < w:
        v = row[c]
        if v == 0:
            c += 1
            continue
        s = c
        c += 1
        while c < w and row[c] == v:
            c += 1
        e = c - 1  # inclusive
        n_e = _add_run(
            v, r, s, e, area, origin, sums, bbox,
            want_hull, e_row, e_min, e_max, e_next, head, tail, last_row, n_e,
        )

        if want_perimeter:
            acc = 0.0
            for p in range(s + 1, e + 2):  # padded index of x = p - 1
                if bcur[p] != v:
                    continue
                n4 = (bcur[p - 1] == v) + (bcur[p + 1] == v) + (bprev[p] == v) + (bnext[p] == v)
                nd = (bprev[p - 1] == v) + (bprev[p + 1] == v) + (bnext[p - 1] == v) + (bnext[p + 1] == v)
                acc += weights[1 + 2 * n4 + 10 * nd]
            perim[v] += acc

        if use_intensity:
            for x in range(s, e + 1):
                for ch in range(nch):
                    isum[v, ch] += inten[r, x, ch]
    return n_e


@njit(cache=True, nogil=True)
def measure_kernel(lab, nlab, inten, use_intensity, want_perimeter, want_hull, weights):
    """Accumulate the statistics of labels ``1..nlab`` of an int32 label image.

    ``inten`` is (H, W, C) when ``use_intensity`` (any real dtype), else ignored.
    Returns ``(area, origin, sums, bbox, perimeter, hull_area, intensity_sum)`` where
    ``origin[L] = (row, col)`` of the first pixel of L, ``sums[L] = (S_r, S_c, S_rr,
    S_cc, S_rc)`` relative to the origin and ``bbox[L] = (r0, c0, r1, c1)`` (exclusive
    ends, as skimage).
    """
    h, w = lab.shape
    m = nlab + 1
    area = np.zeros(m, dtype=np.int64)
    origin = np.zeros((m, 2), dtype=np.int64)
    sums = np.zeros((m, 5), dtype=np.int64)
    bbox = np.zeros((m, 4), dtype=np.int64)
    perim = np.zeros(m, dtype=np.float64)
    nch = inten.shape[2] if use_intensity else 1
    isum = np.zeros((m, nch), dtype=np.float64)

    # per-region linked list of (row, cmin, cmax), one entry per occupied row
    per_row = (w + 1) // 2  # most new entries one row can add
    cap = 4 * h + per_row + 64 if want_hull else 1
    e_row = np.empty(cap, dtype=np.int32)
    e_min = np.empty(cap, dtype=np.int32)
    e_max = np.empty(cap, dtype=np.int32)
    e_next = np.empty(cap, dtype=np.int32)
    mh = m if want_hull else 1
    head = np.full(mh, -1, dtype=np.int32)
    tail = np.full(mh, -1, dtype=np.int32)
    last_row = np.full(mh, -1, dtype=np.int32)
    n_e = 0

    # padded rings of border labels for rows r-1, r, r+1 (zeros off-image)
    bprev = np.zeros(w + 2, dtype=np.int32)
    bcur = np.zeros(w + 2, dtype=np.int32)
    bnext = np.zeros(w + 2, dtype=np.int32)
    if want_perimeter and h > 0:
        _border_row(lab, 0, bcur)
        if h > 1:
            _border_row(lab, 1, bnext)

    for r in range(h):
        if want_hull and n_e + per_row > e_row.shape[0]:
            e_row = _grow32(e_row, n_e + per_row)
            e_min = _grow32(e_min, n_e + per_row)
            e_max = _grow32(e_max, n_e + per_row)
            e_next = _grow32(e_next, n_e + per_row)
        n_e = _measure_row(
            lab, r, inten, use_intensity, want_perimeter, want_hull, weights,
            area, origin, sums, bbox, perim, isum,
            e_row, e_min, e_max, e_next, head, tail, last_row, n_e,
            bprev, bcur, bnext,
        )
        if want_perimeter:
            tmp = bprev
            bprev = bcur
            bcur = bnext
            bnext = tmp
            if r + 2 < h:
                _border_row(lab, r + 2, bnext)
            else:
                bnext[:] = 0

    hull = _hull_areas(want_hull, m, h, e_row, e_min, e_max, e_next, head)
    return area, origin, sums, bbox, perim, hull, isum


@njit(cache=True, nogil=True)
def _fill_mask_row(row_ptr, rs, re, r, out):
    """out[1 + c] = 1 on the runs of row r (out is zero-padded by one on each side)."""
    out[:] = 0
    for i in range(row_ptr[r], row_ptr[r + 1]):
        out[1 + rs[i] : 1 + re[i]] = 1


@njit(cache=True, nogil=True)
def _mask_border_row(up, mid, dn, out):
    """Border flags of a padded binary row given padded neighbours (zeros off-image)."""
    w = mid.shape[0] - 2
    for x in range(1, w + 1):
        if mid[x] == 0:
            out[x] = 0
        else:
            out[x] = 1 if (mid[x - 1] == 0 or mid[x + 1] == 0 or up[x] == 0 or dn[x] == 0) else 0


@njit(cache=True, nogil=True)
def _runs_measure_row(
    r, row_ptr, rs, re, runlab, inten, use_intensity, want_perimeter, want_hull, weights,
    area, origin, sums, bbox, perim, isum,
    e_row, e_min, e_max, e_next, head, tail, last_row, n_e,
    bprev, bcur, bnext,
):
    nch = isum.shape[1]
    for i in range(row_ptr[r], row_ptr[r + 1]):
        v = runlab[i]
        s = rs[i]
        e = re[i] - 1
        n_e = _add_run(
            v, r, s, e, area, origin, sums, bbox,
            want_hull, e_row, e_min, e_max, e_next, head, tail, last_row, n_e,
        )
        if want_perimeter:
            acc = 0.0
            for x in range(s + 1, e + 2):  # padded index
                if bcur[x] == 0:
                    continue
                n4 = bcur[x - 1] + bcur[x + 1] + bprev[x] + bnext[x]
                nd = bprev[x - 1] + bprev[x + 1] + bnext[x - 1] + bnext[x + 1]
                acc += weights[1 + 2 * n4 + 10 * nd]
            perim[v] += acc
        if use_intensity:
            for x in range(s, e + 1):
                for ch in range(nch):
                    isum[v, ch] += inten[r, x, ch]
    return n_e


@njit(cache=True, nogil=True)
def measure_runs_kernel(
    row_ptr, rs, re, runlab, nlab, h, w, inten, use_intensity, want_perimeter, want_hull, weights
):
    """As :func:`measure_kernel`, from the runs of an 8-connected labelling.

    With 8-connectivity every foreground 8-neighbour of a pixel belongs to its component,
    so the perimeter weights can be read off the binary mask (rebuilt row by row from the
    runs) instead of a label image.
    """
    m = nlab + 1
    area = np.zeros(m, dtype=np.int64)
    origin = np.zeros((m, 2), dtype=np.int64)
    sums = np.zeros((m, 5), dtype=np.int64)
    bbox = np.zeros((m, 4), dtype=np.int64)
    perim = np.zeros(m, dtype=np.float64)
    nch = inten.shape[2] if use_intensity else 1
    isum = np.zeros((m, nch), dtype=np.float64)
    per_row = (w + 1) // 2
    cap = 4 * h + per_row + 64 if want_hull else 1
    e_row = np.empty(cap, dtype=np.int32)
    e_min = np.empty(cap, dtype=np.int32)
    e_max = np.empty(cap, dtype=np.int32)
    e_next = np.empty(cap, dtype=np.int32)
    mh = m if want_hull else 1
    head = np.full(mh, -1, dtype=np.int32)
    tail = np.full(mh, -1, dtype=np.int32)
    last_row = np.full(mh, -1, dtype=np.int32)
    n_e = 0

    # padded rings: mask rows r, r+1, r+2 and border rows r-1, r, r+1
    m0 = np.zeros(w + 2, dtype=np.uint8)
    m1 = np.zeros(w + 2, dtype=np.uint8)
    m2 = np.zeros(w + 2, dtype=np.uint8)
    zero = np.zeros(w + 2, dtype=np.uint8)
    bprev = np.zeros(w + 2, dtype=np.uint8)
    bcur = np.zeros(w + 2, dtype=np.uint8)
    bnext = np.zeros(w + 2, dtype=np.uint8)
    if want_perimeter and h > 0:
        _fill_mask_row(row_ptr, rs, re, 0, m0)
        if h > 1:
            _fill_mask_row(row_ptr, rs, re, 1, m1)
        _mask_border_row(zero, m0, m1 if h > 1 else zero, bcur)
        if h > 1:
            if h > 2:
                _fill_mask_row(row_ptr, rs, re, 2, m2)
            _mask_border_row(m0, m1, m2 if h > 2 else zero, bnext)

    for r in range(h):
        if want_hull and n_e + per_row > e_row.shape[0]:
            e_row = _grow32(e_row, n_e + per_row)
            e_min = _grow32(e_min, n_e + per_row)
            e_max = _grow32(e_max, n_e + per_row)
            e_next = _grow32(e_next, n_e + per_row)
        n_e = _runs_measure_row(
            r, row_ptr, rs, re, runlab, inten, use_intensity, want_perimeter, want_hull, weights,
            area, origin, sums, bbox, perim, isum,
            e_row, e_min, e_max, e_next, head, tail, last_row, n_e,
            bprev, bcur, bnext,
        )
        if want_perimeter:
            # advance: mask rows become r+1, r+2, r+3; border rows r, r+1, r+2
            tmp = m0
            m0 = m1
            m1 = m2
            m2 = tmp
            if r + 3 < h:
                _fill_mask_row(row_ptr, rs, re, r + 3, m2)
            else:
                m2[:] = 0
            tmp = bprev
            bprev = bcur
            bcur = bnext
            bnext = tmp
            if r + 2 < h:
                _mask_border_row(m0, m1, m2, bnext)
            else:
                bnext[:] = 0

    hull = _hull_areas(want_hull, m, h, e_row, e_min, e_max, e_next, head)
    return area, origin, sums, bbox, perim, hull, isum
