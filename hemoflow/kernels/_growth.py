"""Labels grown into the background and density summed per grown label (Numba).

- :func:`grow_labels` -- each background pixel within a radius takes its nearest label
  (chamfer distance).
- :func:`grown_grid_sum` -- a coarse grid's values (the red-cell density) summed per
  label over its grown region.
- :func:`label_grid_sum` -- the same without growth.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["grow_labels", "grown_grid_sum", "label_grid_sum"]


@njit(cache=True, nogil=True)
def _chamfer_passes(out, d):
    # two-pass 3-4 chamfer distance (units of 1/3 px) carrying the nearest label along;
    # d is 0 on labelled pixels, large elsewhere; both arrays are updated in place
    h, w = out.shape
    for i in range(h):
        for j in range(w):
            if d[i, j] == 0:
                continue
            best = d[i, j]
            b = out[i, j]
            if j > 0 and d[i, j - 1] + 3 < best:
                best = d[i, j - 1] + 3
                b = out[i, j - 1]
            if i > 0:
                if d[i - 1, j] + 3 < best:
                    best = d[i - 1, j] + 3
                    b = out[i - 1, j]
                if j > 0 and d[i - 1, j - 1] + 4 < best:
                    best = d[i - 1, j - 1] + 4
                    b = out[i - 1, j - 1]
                if j < w - 1 and d[i - 1, j + 1] + 4 < best:
                    best = d[i - 1, j + 1] + 4
                    b = out[i - 1, j + 1]
            d[i, j] = best
            out[i, j] = b
    for i in range(h - 1, -1, -1):
        for j in range(w - 1, -1, -1):
            if d[i, j] == 0:
                continue
            best = d[i, j]
            b = out[i, j]
            if j < w - 1 and d[i, j + 1] + 3 < best:
                best = d[i, j + 1] + 3
                b = out[i, j + 1]
            if i < h - 1:
                if d[i + 1, j] + 3 < best:
                    best = d[i + 1, j] + 3
                    b = out[i + 1, j]
                if j < w - 1 and d[i + 1, j + 1] + 4 < best:
                    best = d[i + 1, j + 1] + 4
                    b = out[i + 1, j + 1]
                if j > 0 and d[i + 1, j - 1] + 4 < best:
                    best = d[i + 1, j - 1] + 4
                    b = out[i + 1, j - 1]
            d[i, j] = best
            out[i, j] = b


@njit(cache=True, nogil=True)
def _grow_chamfer(lab, dmax):
    h, w = lab.shape
    big = np.int32(2**30)
    d = np.empty((h, w), np.int32)
    out = lab.copy()
    for i in range(h):
        for j in range(w):
            d[i, j] = 0 if lab[i, j] > 0 else big
    _chamfer_passes(out, d)
    for i in range(h):
        for j in range(w):
            if d[i, j] > dmax:
                out[i, j] = 0
    return out


@njit(cache=True, nogil=True)
def _grown_grid_sum(lab, keep, exclude, use_exclude, grid, n, cell, dmax):
    # _chamfer_passes with the seeding folded into the first pass and the sum into the
    # second. Distances saturate at dmax + 1 (int16): pixels beyond dmax are never summed,
    # and distances only grow along a path, so every pixel within dmax gets the same
    # distance and label as without the cap. Each pixel is final when the second pass
    # leaves it, so it is summed there (in reverse raster order). The neighbour steps
    # repeat _chamfer_passes' on purpose: shared through an inlined helper returning
    # (distance, label) they ran at half the speed on 2048^2 labels.
    h, w = lab.shape
    far = np.int16(dmax + 1)
    d = np.empty((h, w), np.int16)
    out = np.empty((h, w), np.int32)
    for i in range(h):
        for j in range(w):
            v = lab[i, j]
            if 0 < v <= n and keep[v]:
                out[i, j] = v
                d[i, j] = 0
                continue
            best = far
            b = 0
            if j > 0 and d[i, j - 1] + 3 < best:
                best = d[i, j - 1] + 3
                b = out[i, j - 1]
            if i > 0:
                if d[i - 1, j] + 3 < best:
                    best = d[i - 1, j] + 3
                    b = out[i - 1, j]
                if j > 0 and d[i - 1, j - 1] + 4 < best:
                    best = d[i - 1, j - 1] + 4
                    b = out[i - 1, j - 1]
                if j < w - 1 and d[i - 1, j + 1] + 4 < best:
                    best = d[i - 1, j + 1] + 4
                    b = out[i - 1, j + 1]
            d[i, j] = best
            out[i, j] = b
    acc = np.zeros(n + 1, np.float64)
    for i in range(h - 1, -1, -1):
        gi = i // cell
        for j in range(w - 1, -1, -1):
            if d[i, j] == 0:
                if not (use_exclude and exclude[i, j]):
                    acc[out[i, j]] += grid[gi, j // cell]
                continue
            best = d[i, j]
            b = out[i, j]
            if j < w - 1 and d[i, j + 1] + 3 < best:
                best = d[i, j + 1] + 3
                b = out[i, j + 1]
            if i < h - 1:
                if d[i + 1, j] + 3 < best:
                    best = d[i + 1, j] + 3
                    b = out[i + 1, j]
                if j < w - 1 and d[i + 1, j + 1] + 4 < best:
                    best = d[i + 1, j + 1] + 4
                    b = out[i + 1, j + 1]
                if j > 0 and d[i + 1, j - 1] + 4 < best:
                    best = d[i + 1, j - 1] + 4
                    b = out[i + 1, j - 1]
            d[i, j] = best
            out[i, j] = b
            if best <= dmax and b > 0 and not (use_exclude and exclude[i, j]):
                acc[b] += grid[gi, j // cell]
    return acc


def grown_grid_sum(labels: np.ndarray, radius: float, grid: np.ndarray, n: int, cell: int, *,
                   keep: np.ndarray | None = None, exclude: np.ndarray | None = None) -> np.ndarray:
    """``label_grid_sum(grow_labels(labels', radius), grid, n, cell)`` in one kernel, where
    ``labels'`` keeps only the labels ``v`` in ``1..n`` with ``keep[v]`` (bool[n + 1];
    default all) and pixels of ``exclude`` (bool, labels' shape) count for no label after
    growing."""
    labels = np.ascontiguousarray(labels, np.int32)
    grid = _covering_grid(grid, labels.shape, cell)
    keep = np.ones(int(n) + 1, np.bool_) if keep is None else np.ascontiguousarray(keep, np.bool_)
    if len(keep) != int(n) + 1:
        raise ValueError(f"keep has {len(keep)} entries, not n + 1 = {int(n) + 1}")
    use = exclude is not None
    ex = np.ascontiguousarray(exclude, np.bool_) if use else np.zeros((1, 1), np.bool_)
    if use and ex.shape != labels.shape:
        raise ValueError(f"exclude {ex.shape} does not match labels {labels.shape}")
    # distances are int16 in units of 1/3 px: a reach beyond 10,000 px is 10,000 px
    dmax = min(math.floor(3.0 * radius + 1e-9), 30000)
    return _grown_grid_sum(labels, keep, ex, use, grid, int(n), int(cell), np.int32(dmax))


def grow_labels(labels: np.ndarray, radius: float) -> np.ndarray:
    """``labels`` with every background pixel within ``radius`` of a label given the
    nearest label. Distances are 3-4 chamfer distances (within 6 % of Euclidean), so
    ties and pixels right at ``radius`` may go either way; two raster passes."""
    labels = np.ascontiguousarray(labels, np.int32)
    return _grow_chamfer(labels, np.int32(math.floor(3.0 * radius + 1e-9)))


@njit(cache=True, nogil=True)
def _label_grid_sum(lab, grid, n, cell):
    out = np.zeros(n + 1, np.float64)
    h, w = lab.shape
    for i in range(h):
        gi = i // cell
        for j in range(w):
            v = lab[i, j]
            if v > 0:
                out[v] += grid[gi, j // cell]
    return out


def label_grid_sum(labels: np.ndarray, grid: np.ndarray, n: int, cell: int) -> np.ndarray:
    """``float64[n + 1]``: for each label, the sum over its pixels of ``grid[i // cell,
    j // cell]`` (a coarse map read at full resolution without upsampling it)."""
    labels = np.ascontiguousarray(labels, np.int32)
    return _label_grid_sum(labels, _covering_grid(grid, labels.shape, cell), int(n), int(cell))


def _covering_grid(grid: np.ndarray, shape: tuple[int, int], cell: int) -> np.ndarray:
    """``grid`` as contiguous float32, checked to cover an array of ``shape`` at ``cell``."""
    grid = np.ascontiguousarray(grid, np.float32)
    if grid.shape[0] < -(-shape[0] // cell) or grid.shape[1] < -(-shape[1] // cell):
        raise ValueError(f"grid {grid.shape} does not cover labels {shape} at cell {cell}")
    return grid
