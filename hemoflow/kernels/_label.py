"""Connected-component labelling of 2-D masks (run-based two-pass union-find).

Pass 1 scans each row for runs of foreground pixels and unions every run with the runs of
the previous row it touches (4- or 8-connectivity). The union-find keeps the smallest run
index as the root; runs are created in raster order, so the root of a component is the run
holding its first pixel in raster order. Numbering the roots in index order therefore
reproduces ``skimage.measure.label`` exactly. Pass 2 paints the runs into the output.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._validate import as_mask, parse_connectivity

__all__ = ["label", "label_with_sizes"]


@njit(cache=True, nogil=True, inline="always")
def _find(parent, i):
    while parent[i] != i:
        p = parent[parent[i]]
        parent[i] = p
        i = p
    return i


@njit(cache=True, nogil=True)
def _grow(a, n):
    b = np.empty(max(2 * a.shape[0], n), dtype=a.dtype)
    b[: a.shape[0]] = a
    return b


@njit(cache=True, nogil=True)
def _scan_row(row, thr, above, d, rs, re, parent, n, prev_lo, prev_hi):
    """Append the runs of one row (capacity is ensured by the caller); return new n."""
    w = row.shape[0]
    j = prev_lo
    c = 0
    while c < w:
        if above:
            while c < w and not (row[c] > thr):
                c += 1
        else:
            while c < w and not (row[c] <= thr):
                c += 1
        if c >= w:
            break
        s = c
        if above:
            while c < w and row[c] > thr:
                c += 1
        else:
            while c < w and row[c] <= thr:
                c += 1
        e = c
        rs[n] = s
        re[n] = e
        parent[n] = n
        # skip previous-row runs entirely left of this one
        while j < prev_hi and re[j] + d <= s:
            j += 1
        k = j
        root = n
        while k < prev_hi and rs[k] < e + d:
            rk = _find(parent, k)
            if rk != root:
                if rk < root:
                    parent[root] = rk
                    root = rk
                else:
                    parent[rk] = root
            k += 1
        if k > j:
            j = k - 1
        n += 1
    return n


@njit(cache=True, nogil=True)
def _scan_runs(img, thr, above, conn8):
    """Find foreground runs row by row and union touching runs.

    Foreground is ``img > thr`` when ``above`` else ``img <= thr``. Returns
    ``(row_ptr, run_start, run_end, parent, n_runs)``: the runs of row ``r`` are
    ``row_ptr[r]:row_ptr[r + 1]``, ``run_end`` is exclusive, ``parent`` a union-find forest
    whose roots are the smallest run index of each component (parent[i] <= i always).
    A previous-row run ``[ps, pe)`` touches the run ``[s, e)`` when ``ps < e + d`` and
    ``pe > s - d``, with ``d = 1`` for 8-connectivity and 0 for 4-connectivity.
    """
    h, w = img.shape
    per_row = (w + 1) // 2  # most runs one row can hold
    cap = 4 * h + per_row + 64
    rs = np.empty(cap, dtype=np.int32)
    re = np.empty(cap, dtype=np.int32)
    parent = np.empty(cap, dtype=np.int32)
    row_ptr = np.zeros(h + 1, dtype=np.int64)
    n = 0
    d = 1 if conn8 else 0
    prev_lo = 0
    for r in range(h):
        if n + per_row > rs.shape[0]:
            rs = _grow(rs, n + per_row)
            re = _grow(re, n + per_row)
            parent = _grow(parent, n + per_row)
        m = _scan_row(img[r], thr, above, d, rs, re, parent, n, prev_lo, n)
        prev_lo = n
        n = m
        row_ptr[r + 1] = n
    return row_ptr, rs, re, parent, n


@njit(cache=True, nogil=True)
def _resolve(parent, n):
    """Final consecutive label (1-based, raster order of first pixel) of every run."""
    lab = np.empty(n, dtype=np.int32)
    count = 0
    for i in range(n):
        p = parent[i]
        if p == i:
            count += 1
            lab[i] = count
        else:
            lab[i] = lab[p]  # p < i: already final, same component
    return lab, count


@njit(cache=True, nogil=True)
def _paint(row_ptr, rs, re, runlab, out):
    """Write the run labels into ``out`` (allocated by numpy: it asks the OS for huge
    pages, which makes first touch of a large image several times cheaper than memory
    allocated inside a compiled function)."""
    h, w = out.shape
    for r in range(h):
        row = out[r]
        c = 0
        for i in range(row_ptr[r], row_ptr[r + 1]):
            s = rs[i]
            e = re[i]
            row[c:s] = 0  # slice fills compile to tight (memset-like) loops
            row[s:e] = runlab[i]
            c = e
        row[c:w] = 0
    return out


@njit(cache=True, nogil=True)
def _label_kernel(img, thr, above, conn8, out):
    row_ptr, rs, re, parent, n = _scan_runs(img, thr, above, conn8)
    runlab, count = _resolve(parent, n)
    _paint(row_ptr, rs, re, runlab, out)
    return count


@njit(cache=True, nogil=True)
def _label_sizes_kernel(img, thr, above, conn8, out):
    row_ptr, rs, re, parent, n = _scan_runs(img, thr, above, conn8)
    runlab, count = _resolve(parent, n)
    _paint(row_ptr, rs, re, runlab, out)
    sizes = np.zeros(count + 1, dtype=np.int64)
    total = 0
    for i in range(n):
        sizes[runlab[i]] += re[i] - rs[i]
        total += re[i] - rs[i]
    sizes[0] = img.size - total
    return count, sizes


def label_with_sizes(mask: np.ndarray, connectivity: int = 2) -> tuple[np.ndarray, int, np.ndarray]:
    """:func:`label` plus the pixel count of each label ``0..n`` (int64[n + 1], entry 0
    the background), summed over the runs the labelling already has instead of a pass over
    the label image.

    >>> import numpy as np
    >>> _, n, sizes = label_with_sizes(np.array([[1, 1, 0], [0, 0, 1]], bool), connectivity=1)
    >>> n, sizes.tolist()
    (2, [3, 2, 1])
    """
    conn = parse_connectivity(connectivity)
    m = as_mask(mask)
    out = np.empty(m.shape, dtype=np.int32)
    n, sizes = _label_sizes_kernel(m, np.uint8(0), True, conn == 2, out)
    return out, int(n), sizes


def label(mask: np.ndarray, connectivity: int = 2) -> tuple[np.ndarray, int]:
    """Label the connected components of a 2-D boolean mask.

    Parameters
    ----------
    mask : (H, W) ndarray of bool
        Foreground mask. Integer arrays are accepted and read as ``mask != 0`` (unlike
        :func:`skimage.measure.label`, values are not labelled separately).
    connectivity : {1, 2}
        1: 4-neighbourhood, 2: 8-neighbourhood (default), as in scikit-image.

    Returns
    -------
    labels : (H, W) ndarray of int32
        0 for background, ``1..n`` numbered in raster order of each component's first
        pixel, identical to ``skimage.measure.label(mask, connectivity=connectivity)``.
    n : int
        Number of components.

    Examples
    --------
    >>> import numpy as np
    >>> labels, n = label(np.array([[1, 0, 1], [0, 1, 0]], bool), connectivity=1)
    >>> n
    3
    >>> labels.tolist()
    [[1, 0, 2], [0, 3, 0]]
    """
    conn = parse_connectivity(connectivity)
    m = as_mask(mask)
    out = np.empty(m.shape, dtype=np.int32)
    n = _label_kernel(m, np.uint8(0), True, conn == 2, out)
    return out, int(n)
