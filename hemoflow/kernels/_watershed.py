"""Watershed of a distance map and seeded growth (Numba).

- :func:`dt_watershed` -- union-find flooding from the top, merging basins whose dynamic
  (peak minus saddle) is below ``h``: the h-maxima marker rule without a separate marker
  image.
- :func:`paint_nearest` -- grow labelled seeds by up to a radius, nearest seed wins
  (exact Euclidean distance; cheap for sparse seeds such as nuclei).
- :func:`select_seeds` -- the seed pixels of chosen groups.

Ties are broken by raster order, which a translation of the window preserves.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._label import _find  # the same path-halving union-find root search
from ._label import label
from ._labelops import _box_add, _empty_boxes, label_bboxes
from ._morphology import disk_offsets

__all__ = ["dt_watershed", "paint_nearest", "select_seeds"]


@njit(cache=True, nogil=True)
def _flood_order(flat, comp, ncomp, max_buckets, w):
    """Foreground pixels (``flat > 0``) sorted by connected component, then by decreasing
    level, raster order within a level, as flat indices into the image padded by one pixel
    on every side (``w`` is the unpadded width). Components never interact in the flood, so
    this is the global flood order restricted to each component, and flooding one component
    at a time keeps the work inside its rows (cache-resident).

    One counting sort on the key (component, top - level) when its ``(ncomp + 1) * (top +
    1)`` buckets are at most ``max_buckets``; else two stable counting sorts (by level, then
    by component) with ``top + ncomp`` buckets. Both give the same order."""
    n = flat.shape[0]
    top = 0
    for k in range(n):
        if flat[k] > top:
            top = flat[k]
    nl = top + 1
    if (ncomp + 1) * nl <= max_buckets:
        nb = (ncomp + 1) * nl
        start = np.zeros(nb + 1, np.int64)
        acc = 0
        for k in range(n):
            v = flat[k]
            if v > 0:
                start[comp[k] * nl + (top - v) + 1] += 1
                acc += 1
        for b in range(nb):
            start[b + 1] += start[b]
        order = np.empty(acc, np.int32)
        k = 0
        for i in range(n // w):
            kp = (i + 1) * (w + 2) + 1
            for j in range(w):
                v = flat[k]
                if v > 0:
                    b = comp[k] * nl + (top - v)
                    order[start[b]] = kp
                    start[b] += 1
                k += 1
                kp += 1
        return order
    cnt = np.zeros(top + 2, np.int64)
    for k in range(n):
        if flat[k] > 0:
            cnt[top - flat[k]] += 1
    start = np.zeros(top + 2, np.int64)
    acc = 0
    for lv in range(top + 1):
        start[lv] = acc
        acc += cnt[lv]
    by_level = np.empty(acc, np.int32)
    for k in range(n):
        if flat[k] > 0:
            b = top - flat[k]
            by_level[start[b]] = k
            start[b] += 1
    cs = np.zeros(ncomp + 2, np.int64)
    for t in range(acc):
        cs[comp[by_level[t]]] += 1
    acc2 = 0
    for c in range(ncomp + 1):
        v = cs[c]
        cs[c] = acc2
        acc2 += v
    order = np.empty(acc, np.int32)
    for t in range(acc):
        k = by_level[t]
        c = comp[k]
        i = k // w
        order[cs[c]] = k + 2 * i + w + 3  # (i + 1) * (w + 2) + (k - i * w) + 1
        cs[c] += 1
    return order


@njit(cache=True, nogil=True)
def _dt_watershed(distp, order, h_dyn, min_peak, rel_milli):
    # distp: the distance map padded by one background pixel on every side, so the eight
    # neighbours of a foreground pixel are flat offsets with no bounds checks; ``order``
    # holds padded flat indices (see _flood_order)
    hh, ww = distp.shape
    n = hh * ww
    flat = distp.ravel()
    acc = order.shape[0]
    parent = np.full(n, -1, np.int32)
    peak = np.zeros(n, np.int32)
    roots = np.empty(8, np.int32)
    offs = np.array([-ww - 1, -ww, -ww + 1, -1, 1, ww - 1, ww, ww + 1], np.int64)
    for t in range(acc):
        p = order[t]
        lv = flat[p]
        nr = 0
        best_q = -1
        best_v = -1
        last = -2
        for o in range(8):  # raster order of the neighbours
            q = p + offs[o]
            pq = parent[q]
            if pq < 0:
                continue
            # steepest ascent: the highest processed neighbour (first in raster order)
            if flat[q] > best_v:
                best_v = flat[q]
                best_q = q
            if pq == last:
                continue  # the previous processed neighbour's parent: the same root
            last = pq
            r = _find(parent, q)
            if nr > 0 and roots[nr - 1] == r:
                continue
            seen = False
            for s in range(nr - 1):
                if roots[s] == r:
                    seen = True
                    break
            if not seen:
                roots[nr] = r
                nr += 1
        if nr == 0:
            parent[p] = np.int32(p)
            peak[p] = lv
            continue
        if nr == 1:
            parent[p] = roots[0]
            continue
        main = roots[0]
        for s in range(1, nr):
            r = roots[s]
            if peak[r] > peak[main] or (peak[r] == peak[main] and r < main):
                main = r
        for s in range(nr):
            r = roots[s]
            if r == main:
                continue
            dyn = peak[r] - lv
            if dyn < h_dyn or peak[r] < min_peak or dyn * 1000 < rel_milli * peak[r]:
                parent[r] = main
        # the pixel flows to its steepest-ascent neighbour's basin (after the merges)
        parent[p] = _find(parent, best_q)
    # number the basins in raster order of their first pixel; a root's peak (>= 1) is
    # replaced by minus its number once numbered
    out = np.zeros((hh - 2, ww - 2), np.int32)
    m = 0
    for i in range(1, hh - 1):
        k = i * ww + 1
        for j in range(ww - 2):
            if parent[k] >= 0:
                r = _find(parent, k)
                if peak[r] > 0:
                    m += 1
                    peak[r] = -m
                out[i - 1, j] = -peak[r]
            k += 1
    return out, m


def dt_watershed(dist: np.ndarray, *, h: int, min_peak: int = 0, rel: float = 0.0) -> tuple[np.ndarray, int]:
    """Split the foreground (``dist > 0``) into basins of the distance map ``dist``.

    Pixels are flooded from the highest level down (raster order within a level). When
    basins meet at level ``L``, each one whose peak ``P`` is less than ``h`` above ``L``,
    or less than ``rel * P`` above it (a scale-free depth), or below ``min_peak``, joins
    the deepest of them; the others stay separate cells. Every pixel joins the basin of its
    highest already-flooded neighbour (steepest ascent), so basins cannot leak along a
    level line. Returns ``(labels int32, n)`` numbered in raster
    order of each basin's first pixel.
    """
    dist = np.ascontiguousarray(dist, np.int32)
    if dist.ndim != 2:
        raise ValueError(f"dist must be 2-D, got shape {dist.shape}")
    if dist.size == 0:
        return np.zeros(dist.shape, np.int32), 0
    comp, ncomp = label(dist > 0, connectivity=2)
    # the one-sort path when its buckets (8 bytes each) cost at most the image's pixels
    order = _flood_order(dist.ravel(), comp.ravel(), ncomp, np.int64(dist.size), dist.shape[1])
    return _dt_watershed(np.pad(dist, 1), order, np.int32(h), np.int32(min_peak), np.int64(round(rel * 1000)))


@njit(cache=True, nogil=True)
def _paint_nearest(seeds, flat_idx, offs, r2max):
    # flat_idx: the seed pixels in raster order (sparse seeds: no whole-image passes here)
    h, w = seeds.shape
    out = seeds.copy()
    best = np.full((h, w), np.int32(2**30), np.int32)
    for q in range(flat_idx.shape[0]):
        best[flat_idx[q] // w, flat_idx[q] % w] = 0
    k = offs.shape[0]
    for q in range(flat_idx.shape[0]):
        i = flat_idx[q] // w
        j = flat_idx[q] % w
        lab = seeds[i, j]
        # interior pixels (all 4-neighbours carry the same seed) cannot be nearest
        if (
            i > 0 and i < h - 1 and j > 0 and j < w - 1
            and seeds[i - 1, j] == lab and seeds[i + 1, j] == lab
            and seeds[i, j - 1] == lab and seeds[i, j + 1] == lab
        ):
            continue
        for t in range(k):
            dy = offs[t, 0]
            dx = offs[t, 1]
            ii = i + dy
            jj = j + dx
            if ii < 0 or ii >= h or jj < 0 or jj >= w:
                continue
            d2 = dy * dy + dx * dx
            if d2 <= r2max and d2 < best[ii, jj]:
                best[ii, jj] = d2
                out[ii, jj] = lab
    return out


def paint_nearest(seeds: np.ndarray, radius: float, *, seed_index: np.ndarray | None = None) -> np.ndarray:
    """Grow the labelled ``seeds`` (int32, 0 = none) to every pixel within Euclidean
    ``radius`` of a seed pixel; the nearest seed pixel wins (first in raster order on a tie).
    ``seed_index``: the flat indices of the seed pixels in raster order, when the caller
    has them (default ``np.flatnonzero(seeds)``).
    """
    seeds = np.ascontiguousarray(seeds, np.int32)
    offs = disk_offsets(radius)
    idx = np.flatnonzero(seeds) if seed_index is None else np.asarray(seed_index, np.int64)
    return _paint_nearest(seeds, idx, offs, np.int64(np.floor(radius * radius + 1e-9)))


@njit(cache=True, nogil=True)
def _select_seeds(mask, groups, keep, n):
    h, w = mask.shape
    seeds = np.zeros((h, w), np.int32)
    idx = np.empty(h * w, np.int64)  # untouched beyond the seeds: costs no memory
    boxes = _empty_boxes(n, h, w)
    m = 0
    for i in range(h):
        for j in range(w):
            g = groups[i, j]
            if mask[i, j] and 0 < g <= n and keep[g]:
                seeds[i, j] = g
                idx[m] = i * w + j
                m += 1
                _box_add(boxes, g, i, j)
    return seeds, idx[:m], boxes


def select_seeds(mask: np.ndarray, groups: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels of ``mask`` whose group (``groups``, int labels ``1..n``) has ``keep[g]``
    (bool[n + 1]), in one pass: ``(seeds int32`` = the group there, 0 elsewhere``, flat
    indices of those pixels in raster order, label_bboxes-style boxes int64[n + 1, 4]``)``."""
    mask = np.ascontiguousarray(mask, np.bool_)
    groups = np.ascontiguousarray(groups, np.int32)
    if mask.shape != groups.shape:
        raise ValueError(f"mask {mask.shape} does not match groups {groups.shape}")
    keep = np.ascontiguousarray(keep, np.bool_)
    return _select_seeds(mask, groups, keep, len(keep) - 1)
